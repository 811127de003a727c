"""ListNewVersions against moto S3: pagination, versions, checkpoint, S3 events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.settings import load_settings
from lambdas.listing import list_new_versions
from lambdas.records import BadRecord, ImageVersion, Prediction
from lambdas.steps import ListNewVersionsRequest as ListRequest
from lambdas.stores import ImageSource, PredictionStore, RunStateStore
from tests.conftest import upload

pytestmark = pytest.mark.integration


def listing(engine: Any, request: ListRequest, page_size: int = 1000, checkpoint: str | None = None) -> dict:
    settings = load_settings()
    source = ImageSource(engine.client("s3"), page_size=page_size)
    predictions = PredictionStore(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)
    return list_new_versions(request, settings, source, predictions, checkpoint).to_dict()


def manifest(engine: Any, result: dict) -> list[dict]:
    body = engine.client("s3").get_object(Bucket=result["manifest_bucket"], Key=result["manifest_key"])["Body"]
    return list(json.loads(body.read()))


def test_all_pages_are_read_and_batched(engine: Any) -> None:
    for n in range(37):
        upload(engine, f"incoming/img-{n:03d}.png", b"x")
    upload(engine, "elsewhere/not-an-upload.png", b"x")
    result = listing(engine, ListRequest(run_id="r1"), page_size=5)
    batches = manifest(engine, result)
    assert result["images"] == 37 and result["batches"] == 3  # batch size 16
    assert [len(b["items"]) for b in batches] == [16, 16, 5]
    assert all(i["key"].startswith("incoming/") for b in batches for i in b["items"])


def test_two_versions_of_one_key_are_two_images(engine: Any) -> None:
    first = upload(engine, "incoming/same.png", b"one")
    second = upload(engine, "incoming/same.png", b"two")
    items = [i for b in manifest(engine, listing(engine, ListRequest(run_id="r1"))) for i in b["items"]]
    assert sorted(i["version_id"] for i in items) == sorted([first, second])


def test_versions_already_scored_are_not_listed_again(engine: Any) -> None:
    for n in range(3):
        upload(engine, f"incoming/{n}.png", b"x")
    items = [ImageVersion.from_dict(i) for b in manifest(engine, listing(engine, ListRequest("r1")))
             for i in b["items"]]
    predictions = PredictionStore(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)
    predictions.write([Prediction(items[0], "a", 1.0, {"a": 1.0}, "v1", "r1", "b", "2026-01-01")])
    again = listing(engine, ListRequest("r2"))
    assert again["images"] == 2 and again["already_done"] == 1


def test_the_checkpoint_keeps_old_history_out(engine: Any) -> None:
    upload(engine, "incoming/old.png", b"x")
    first = listing(engine, ListRequest("r1"))
    assert first["images"] == 1 and first["checkpoint"]["last_modified"]
    # A checkpoint far in the future of the old upload: nothing before it (less the overlap) is listed.
    later = "2099-01-01T00:00:00+00:00"
    assert listing(engine, ListRequest("r2"), checkpoint=later)["images"] == 0
    state = RunStateStore(engine.client("dynamodb"), engine.state_table)
    assert state.advance_checkpoint("scope", later, "r1") is True
    assert state.advance_checkpoint("scope", "2098-01-01T00:00:00+00:00", "r0") is False  # never back
    assert state.checkpoint("scope") == later


def s3_event(bucket: str, key: str, version: str | None) -> dict:
    obj = {"key": key, "size": 3}
    if version:
        obj["version-id"] = version
    event = {"detail-type": "Object Created", "source": "aws.s3",
             "detail": {"bucket": {"name": bucket}, "object": obj}}
    return {"messageId": "m", "body": json.dumps(event)}


def test_s3_events_name_the_versions_and_bad_records_are_set_aside(engine: Any) -> None:
    bucket = engine.config.bucket
    version = upload(engine, "incoming/event.png", b"x")
    gone = upload(engine, "incoming/gone.png", b"x")
    engine.client("s3").delete_object(Bucket=bucket, Key="incoming/gone.png", VersionId=gone)
    records = [
        s3_event(bucket, "incoming/event.png", version),
        s3_event(bucket, "incoming/event.png", version),  # delivered twice
        s3_event(bucket, "incoming/gone.png", gone),
        s3_event(bucket, "incoming/noversion.png", None),
        {"body": "not json"},
        s3_event("another-bucket", "incoming/x.png", "v"),
    ]
    request = ListRequest.from_event({"run_id": "r1", "input": {"mode": "score", "events": records}})
    result = listing(engine, request)
    items = [i for b in manifest(engine, result) for i in b["items"]]
    assert [(i["key"], i["version_id"]) for i in items] == [("incoming/event.png", version)]
    notes = "\n".join(result["notes"])
    assert "deleted before it was scored" in notes
    assert "has no version-id: is versioning on?" in notes
    assert "record 4: not an S3 Object Created event" in notes
    assert "outside s3://" in notes
    assert result["checkpoint"] is None  # an event-started run leaves the checkpoint alone


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({}, "needs an object with 'run_id'"),
        ({"run_id": "r", "input": ["score"]}, "must be a JSON object"),
        ({"run_id": "r", "input": {"prefix": 3}}, "'prefix' must be a string"),
        ({"run_id": "r", "input": {"events": "nope"}}, "'events' must be a list"),
    ],
)
def test_wrong_events_are_rejected_clearly(event: dict, message: str) -> None:
    with pytest.raises(BadRecord, match=message):
        ListRequest.from_event(event)
