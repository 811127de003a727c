"""ListNewVersions on the in-memory stores: new versions into batches, the checkpoint, and what
was counted or failed before left out."""

from __future__ import annotations

import pytest

from lambdas.listing import list_new_versions
from lambdas.records import Failure, Prediction
from lambdas.steps import ListNewVersionsRequest as ListRequest
from lambdas.steps import ObjectRef
from tests.unit.conftest import BUCKET, World, png

pytestmark = pytest.mark.unit


def listed(world: World, request: ListRequest, checkpoint: str | None = None) -> dict:
    return list_new_versions(request, world.settings, world.source, world.predictions, checkpoint).to_dict()


def test_new_versions_are_written_as_a_manifest_of_batches(world: World) -> None:
    for n in range(3):
        world.upload(f"incoming/{n}.png", png(10 * n))
    world.upload("elsewhere/x.png", png(1))
    result = listed(world, ListRequest(run_id="run-1"))
    assert (result["batches"], result["images"], result["already_done"], result["notes"]) == (2, 3, 0, [])
    assert result["manifest_key"] == "runs/run-1/manifest.json" and result["max_concurrency"] == 4
    batches = world.manifest(result)
    assert [b["batch_id"] for b in batches] == ["run-1-00000", "run-1-00001"]
    assert [i["key"] for b in batches for i in b["items"]] == ["incoming/0.png", "incoming/1.png", "incoming/2.png"]


def test_the_checkpoint_is_the_newest_version_seen(world: World) -> None:
    world.upload("incoming/a.png", png(1), "2026-11-20T10:00:00+00:00")
    world.upload("incoming/b.png", png(1), "2026-11-20T12:00:00+00:00")
    result = listed(world, ListRequest(run_id="run-1"))
    assert result["checkpoint"] == {"scope": f"{BUCKET}/incoming/", "last_modified": "2026-11-20T12:00:00+00:00"}


def test_versions_older_than_the_checkpoint_and_its_overlap_are_not_looked_at(world: World) -> None:
    world.upload("incoming/old.png", png(1), "2026-11-20T08:00:00+00:00")  # 4 h before: outside the overlap
    world.upload("incoming/late.png", png(1), "2026-11-20T11:30:00+00:00")  # 30 min before: inside it
    world.upload("incoming/new.png", png(1), "2026-11-20T13:00:00+00:00")
    result = listed(world, ListRequest(run_id="run-2"), checkpoint="2026-11-20T12:00:00+00:00")
    assert sorted(i["key"] for b in world.manifest(result) for i in b["items"]) == [
        "incoming/late.png", "incoming/new.png"]
    assert result["checkpoint"]["last_modified"] == "2026-11-20T13:00:00+00:00"


def test_a_checkpoint_never_moves_back_when_nothing_is_new(world: World) -> None:
    result = listed(world, ListRequest(run_id="run-2"), checkpoint="2026-11-20T12:00:00+00:00")
    assert result["images"] == 0 and result["checkpoint"]["last_modified"] == "2026-11-20T12:00:00+00:00"


def test_counted_versions_are_already_done_and_failed_ones_are_left_for_replay(world: World) -> None:
    counted = world.upload("incoming/counted.png", png(1))
    failed = world.upload("incoming/failed.png", png(1))
    world.upload("incoming/new.png", png(1))
    world.predictions.write([Prediction(counted, "dark", 0.9, {"dark": 0.9, "light": 0.1}, "v1", "run-0", "b0",
                                        counted.capture_date(world.settings.zone))])
    world.predictions.mark_failed([Failure(failed, "decode", "bad", "BadImage", "run-0", "b0")])
    result = listed(world, ListRequest(run_id="run-1"))
    assert [i["key"] for b in world.manifest(result) for i in b["items"]] == ["incoming/new.png"]
    assert result["already_done"] == 1
    assert result["notes"] == ["1 version(s) that failed in an earlier run were left out: "
                               "`batchinfer replay RUN` retries a run's failures"]


def test_a_new_version_of_a_counted_key_is_new(world: World) -> None:
    first = world.upload("incoming/a.png", png(1))
    world.predictions.write([Prediction(first, "dark", 0.9, {"dark": 0.9, "light": 0.1}, "v1", "run-0", "b0",
                                        first.capture_date(world.settings.zone))])
    second = world.upload("incoming/a.png", png(200))
    result = listed(world, ListRequest(run_id="run-1"))
    assert [i["version_id"] for b in world.manifest(result) for i in b["items"]] == [second.version_id]


def test_an_event_started_run_looks_up_its_objects_and_leaves_the_checkpoint(world: World) -> None:
    kept = world.upload("incoming/a.png", png(1))
    gone = world.upload("incoming/b.png", png(1))
    world.source.delete_version(BUCKET, "incoming/b.png", gone.version_id)
    request = ListRequest(run_id="run-1", objects=(
        ObjectRef(BUCKET, "incoming/a.png", kept.version_id),
        ObjectRef(BUCKET, "incoming/b.png", gone.version_id),
        ObjectRef("other-bucket", "incoming/c.png", "v"),
    ), rejected_events=("record 3: not an S3 Object Created event (bad)",))
    result = listed(world, request)
    assert [i["version_id"] for b in world.manifest(result) for i in b["items"]] == [kept.version_id]
    assert result["checkpoint"] is None
    assert result["notes"] == [
        "record 3: not an S3 Object Created event (bad)",
        f"s3://other-bucket/incoming/c.png: outside s3://{BUCKET}/incoming/, ignored",
        f"s3://{BUCKET}/incoming/b.png version {gone.version_id}: deleted before it was scored",
    ]


def test_a_prefix_in_the_request_narrows_the_listing(world: World) -> None:
    world.upload("incoming/cam1/a.png", png(1))
    world.upload("incoming/cam2/b.png", png(1))
    result = listed(world, ListRequest(run_id="run-1", prefix="incoming/cam2/"))
    assert [i["key"] for b in world.manifest(result) for i in b["items"]] == ["incoming/cam2/b.png"]
    assert result["checkpoint"]["scope"] == f"{BUCKET}/incoming/cam2/"
