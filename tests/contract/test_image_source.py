"""ImageSource's contract, on moto (a versioned bucket) and on the in-memory fake: versions,
reads of a given version, what is gone or too large, JSON documents."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.records import ImageVersion
from lambdas.stores import ImageTooLarge, ObjectUnreadable
from tests.contract.conftest import BACKENDS, BUCKET


class Side:
    """The source under test, and a way to upload to it as a camera would."""

    def __init__(self, source: Any, upload: Any, delete: Any):
        self.source, self.upload, self.delete = source, upload, delete


@pytest.fixture(params=BACKENDS)
def side(request: pytest.FixtureRequest) -> Side:
    if request.param == "fake":
        from lambdas.fakes import InMemoryImageSource

        fake = InMemoryImageSource()

        def put_fake(key: str, data: bytes) -> str:
            return fake.put(BUCKET, key, data).version_id

        return Side(fake, put_fake, lambda key, version: fake.delete_version(BUCKET, key, version))
    from lambdas.stores import ImageSource

    aws = request.getfixturevalue("moto_aws")

    def put_s3(key: str, data: bytes) -> str:
        return str(aws.s3.put_object(Bucket=BUCKET, Key=key, Body=data)["VersionId"])

    return Side(ImageSource(aws.s3), put_s3,
                lambda key, version: aws.s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version))


def test_every_version_is_listed_with_its_size(side: Side) -> None:
    first = side.upload("incoming/a.png", b"one")
    second = side.upload("incoming/a.png", b"three")
    side.upload("incoming/b.png", b"xx")
    side.upload("elsewhere/c.png", b"x")
    listed = list(side.source.list_versions(BUCKET, "incoming/"))
    assert [(v.key, v.size) for v in listed] == [("incoming/a.png", 5), ("incoming/a.png", 3), ("incoming/b.png", 2)]
    assert {v.version_id for v in listed[:2]} == {first, second}
    assert all(v.captured_at().tzinfo is not None for v in listed)


def test_a_version_is_read_as_it_was(side: Side) -> None:
    first = side.upload("incoming/a.png", b"first")
    side.upload("incoming/a.png", b"second")
    version = next(v for v in side.source.list_versions(BUCKET, "incoming/") if v.version_id == first)
    assert side.source.read(version, 100) == b"first"
    assert side.source.read_object(BUCKET, "incoming/a.png") == b"second"


def test_a_deleted_version_is_unreadable_and_not_found(side: Side) -> None:
    version_id = side.upload("incoming/a.png", b"gone soon")
    side.upload("incoming/a.png", b"stays")
    image = ImageVersion(BUCKET, "incoming/a.png", version_id, "2026-11-20T10:00:00+00:00")
    side.delete("incoming/a.png", version_id)
    with pytest.raises(ObjectUnreadable) as raised:
        side.source.read(image, 100)
    assert raised.value.code in ("NoSuchVersion", "NoSuchKey", "404")
    assert "deleted before it was scored" in str(raised.value)
    assert side.source.head(BUCKET, "incoming/a.png", version_id) is None


def test_head_finds_a_version_or_the_latest(side: Side) -> None:
    first = side.upload("incoming/a.png", b"1")
    second = side.upload("incoming/a.png", b"22")
    named = side.source.head(BUCKET, "incoming/a.png", first)
    latest = side.source.head(BUCKET, "incoming/a.png")
    assert (named.version_id, named.size) == (first, 1)
    assert (latest.version_id, latest.size) == (second, 2)
    assert side.source.head(BUCKET, "incoming/none.png") is None


def test_an_object_above_the_limit_is_refused(side: Side) -> None:
    side.upload("incoming/big.png", b"x" * 100)
    image = next(side.source.list_versions(BUCKET, "incoming/"))
    with pytest.raises(ImageTooLarge, match="100 bytes, above the limit of 10 bytes"):
        side.source.read(image, 10)


def test_json_documents_round_trip_and_objects_are_listed(side: Side) -> None:
    side.source.write_json(BUCKET, "runs/r1/manifest.json", [{"batch_id": "b0", "items": []}])
    side.source.write_text(BUCKET, "runs/r1/notes.jsonl", '{"a": 1}\n', "application/x-ndjson")
    assert side.source.read_json(BUCKET, "runs/r1/manifest.json") == [{"batch_id": "b0", "items": []}]
    assert json.loads(side.source.read_object(BUCKET, "runs/r1/notes.jsonl")) == {"a": 1}
    assert [key for key, _ in side.source.list_objects(BUCKET, "runs/")] == ["runs/r1/manifest.json",
                                                                           "runs/r1/notes.jsonl"]


def test_folders_under_a_prefix(side: Side) -> None:
    for key in ("labels/cat/1.png", "labels/cat/2.png", "labels/dog/1.png", "labels/loose.png"):
        side.upload(key, b"x")
    assert sorted(side.source.list_folders(BUCKET, "labels/")) == ["cat", "dog"]
