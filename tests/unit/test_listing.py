"""ListNewVersions on the in-memory stores: upload events into the ingest ledger, its pending
versions into batches, and what was counted or failed before left out; and the reconciliation sweep."""

from __future__ import annotations

import json

import pytest

from engine.s3_events import object_created
from lambdas.ingest_fakes import InMemoryIngestLedger, InMemoryReconciliationState, InMemoryUploadEventQueue
from lambdas.listing import list_new_versions
from lambdas.reconciliation import ReconcileRequest, reconcile_versions
from lambdas.records import BadRecord, Failure, ImageVersion, Prediction
from lambdas.steps import ListNewVersionsRequest as ListRequest
from lambdas.steps import ObjectRef
from tests.unit.conftest import BUCKET, World, png

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def ingest(world: World) -> tuple[InMemoryIngestLedger, InMemoryUploadEventQueue]:
    world.ingest = (InMemoryIngestLedger(), InMemoryUploadEventQueue())  # type: ignore[attr-defined]
    return world.ingest  # type: ignore[attr-defined,no-any-return]


def arrive(world: World, key: str, data: bytes, last_modified: str | None = None) -> ImageVersion:
    """An upload, and its Object Created event on the ingest queue, as EventBridge delivers it."""
    version = world.upload(key, data, last_modified)
    world.ingest[1].send(json.dumps(object_created(BUCKET, key, version.version_id)))  # type: ignore[attr-defined]
    return version


def listed(world: World, request: ListRequest) -> dict:
    ledger, queue = world.ingest  # type: ignore[attr-defined]
    return list_new_versions(request, world.settings, world.source, world.predictions, ledger, queue).to_dict()


def test_new_versions_are_written_as_a_manifest_of_batches(world: World) -> None:
    for n in range(3):
        arrive(world, f"incoming/{n}.png", png(10 * n))
    world.upload("elsewhere/x.png", png(1))
    result = listed(world, ListRequest(run_id="run-1"))
    assert (result["batches"], result["images"], result["already_done"], result["notes"]) == (2, 3, 0, [])
    assert result["manifest_key"] == "runs/run-1/manifest.json"
    assert result["max_concurrency"] == world.settings.max_concurrency
    batches = world.manifest(result)
    assert [b["batch_id"] for b in batches] == ["run-1-00000", "run-1-00001"]
    assert [i["key"] for b in batches for i in b["items"]] == ["incoming/0.png", "incoming/1.png", "incoming/2.png"]


def test_a_version_stays_in_the_ledger_until_it_is_counted_or_failed(world: World) -> None:
    a = arrive(world, "incoming/a.png", png(1))
    arrive(world, "incoming/b.png", png(1))
    assert listed(world, ListRequest(run_id="run-1"))["images"] == 2
    assert listed(world, ListRequest(run_id="run-2"))["images"] == 2  # listed is not scored: listed again
    world.predictions.write([Prediction(a, "dark", 0.9, {"dark": 0.9, "light": 0.1}, "v1", "run-1", "b0",
                                        a.capture_date(world.settings.zone))])
    third = listed(world, ListRequest(run_id="run-3"))
    assert (third["images"], third["already_done"]) == (1, 1)
    assert [e["key"] for e in world.ingest[0].all_entries()] == ["incoming/b.png"]  # type: ignore[attr-defined]


def test_a_duplicated_event_is_one_version_and_a_late_one_is_scored_by_the_next_run(world: World) -> None:
    ledger, queue = world.ingest  # type: ignore[attr-defined]
    arrive(world, "incoming/a.png", png(1))
    [body] = list(queue.waiting.values())
    queue.send(body)
    assert listed(world, ListRequest(run_id="run-1"))["images"] == 1
    late = world.upload("incoming/late.png", png(1), "2026-01-01T00:00:00+00:00")  # its event is not in yet
    assert [i["key"] for b in world.manifest(listed(world, ListRequest(run_id="run-2"))) for i in b["items"]] == [
        "incoming/a.png"]
    queue.send(json.dumps(object_created(BUCKET, late.key, late.version_id)))
    keys = [i["key"] for b in world.manifest(listed(world, ListRequest(run_id="run-3"))) for i in b["items"]]
    assert keys == ["incoming/late.png", "incoming/a.png"]  # oldest capture first, however late it came


def _score(world: World, result: dict, run_id: str) -> None:
    """What the slice's Map does: every version of its manifest counted by `run_id`."""
    world.predictions.write([
        Prediction(ImageVersion.from_dict(item), "dark", 0.9, {"dark": 0.9, "light": 0.1}, "v1", run_id,
                   batch["batch_id"], "2026-01-01")
        for batch in world.manifest(result) for item in batch["items"]])


def _next_slice(run_id: str, previous: dict, **run_input: object) -> ListRequest:
    return ListRequest.from_event({"run_id": run_id, "input": {"mode": "score", **run_input, "listing": previous}})


def test_a_run_drains_the_ledger_a_slice_at_a_time(world: World) -> None:
    from dataclasses import replace

    world.settings = replace(world.settings, max_images_per_run=3, batch_size=2)
    for n in range(7):
        arrive(world, f"incoming/{n}.png", png(n))
    first = listed(world, ListRequest(run_id="run-1"))
    assert (first["slice"], first["slices"], first["more"], first["images"]) == (1, 3, True, 3)
    assert len(world.ingest[0].all_entries()) == 7  # type: ignore[attr-defined]
    _score(world, first, "run-1")
    second = listed(world, _next_slice("run-1", first))
    # The first slice's versions leave the ledger as this run's own, not as done before by another run.
    assert (second["slice"], second["more"], second["images"], second["already_done"]) == (2, True, 3, 0)
    assert second["manifest_key"] == "runs/run-1/manifest-0002.json"
    assert [b["batch_id"] for b in world.manifest(second)] == ["run-1-00002", "run-1-00003"]  # ids run on
    assert (second["run_batches"], second["run_images"]) == (4, 6)
    _score(world, second, "run-1")
    third = listed(world, _next_slice("run-1", second))
    assert (third["slice"], third["slices"], third["more"], third["images"], third["run_images"]) == (3, 3, False, 1, 7)
    keys = {i["key"] for r in (first, second, third) for b in world.manifest(r) for i in b["items"]}
    assert keys == {f"incoming/{n}.png" for n in range(7)}  # each version in one slice


def test_max_images_ends_the_run_and_leaves_the_rest_in_the_ledger(world: World) -> None:
    from dataclasses import replace

    world.settings = replace(world.settings, max_images_per_run=3)
    for n in range(7):
        arrive(world, f"incoming/{n}.png", png(n))
    first = listed(world, _next_slice("run-1", None, max_images=4))  # type: ignore[arg-type]
    assert (first["images"], first["more"]) == (3, True)
    _score(world, first, "run-1")
    second = listed(world, _next_slice("run-1", first, max_images=4))
    assert (second["images"], second["more"], second["run_images"]) == (1, False, 4)
    assert "max_images of 4" in second["notes"][-1]
    assert len(world.ingest[0].all_entries()) == 4  # type: ignore[attr-defined]  # 1 unscored of slice 2, 3 waiting
    with pytest.raises(BadRecord, match="max_images"):
        ListRequest.from_event({"run_id": "r", "input": {"max_images": 0}})


def test_the_sweep_finds_versions_without_an_event_and_resumes_from_its_cursor(world: World) -> None:
    from dataclasses import replace

    ledger, _ = world.ingest  # type: ignore[attr-defined]
    sweeps = InMemoryReconciliationState()
    counted = world.upload("incoming/counted.png", png(1))
    world.predictions.write([Prediction(counted, "dark", 0.9, {"dark": 0.9, "light": 0.1}, "v1", "run-0", "b0",
                                        counted.capture_date(world.settings.zone))])
    silent = {world.upload(f"incoming/silent-{n}.png", png(n)).version_id for n in range(4)}
    world.source.page_size = 2
    ticks = iter(range(1000))
    settings = replace(world.settings, reconcile_budget_seconds=1)  # one page per invocation
    previous: dict = {}
    invocations = 0
    while not previous.get("done"):
        request = ReconcileRequest.from_event({"run_id": "sweep-1", "input": {"reconciliation": previous or None}})
        previous = reconcile_versions(request, settings, world.source, world.predictions, ledger, sweeps,
                                      clock=lambda: float(next(ticks)))
        invocations += 1
    assert invocations == 3 and previous["pages"] == 3 and previous["recorded"] == 4
    assert sweeps.swept_since(f"{BUCKET}/incoming/") == previous["started_at"]
    found = listed(world, ListRequest(run_id="run-1"))
    assert {i["version_id"] for b in world.manifest(found) for i in b["items"]} == silent


def test_counted_versions_are_already_done_and_failed_ones_are_left_for_replay(world: World) -> None:
    counted = arrive(world, "incoming/counted.png", png(1))
    failed = arrive(world, "incoming/failed.png", png(1))
    arrive(world, "incoming/new.png", png(1))
    world.predictions.write([Prediction(counted, "dark", 0.9, {"dark": 0.9, "light": 0.1}, "v1", "run-0", "b0",
                                        counted.capture_date(world.settings.zone))])
    world.predictions.mark_failed([Failure(failed, "decode", "bad", "BadImage", "run-0", "b0")])
    result = listed(world, ListRequest(run_id="run-1"))
    assert [i["key"] for b in world.manifest(result) for i in b["items"]] == ["incoming/new.png"]
    assert result["already_done"] == 1
    assert result["notes"] == ["1 version(s) that failed in an earlier run were left out: "
                               "`batchinfer replay RUN` retries a run's failures"]


def test_a_new_version_of_a_counted_key_is_new(world: World) -> None:
    first = arrive(world, "incoming/a.png", png(1))
    world.predictions.write([Prediction(first, "dark", 0.9, {"dark": 0.9, "light": 0.1}, "v1", "run-0", "b0",
                                        first.capture_date(world.settings.zone))])
    second = arrive(world, "incoming/a.png", png(200))
    result = listed(world, ListRequest(run_id="run-1"))
    assert [i["version_id"] for b in world.manifest(result) for i in b["items"]] == [second.version_id]


def test_an_event_started_run_looks_up_its_objects(world: World) -> None:
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
    arrive(world, "incoming/cam1/a.png", png(1))
    arrive(world, "incoming/cam2/b.png", png(1))
    result = listed(world, ListRequest(run_id="run-1", prefix="incoming/cam2/"))
    assert [i["key"] for b in world.manifest(result) for i in b["items"]] == ["incoming/cam2/b.png"]
    assert len(world.ingest[0].all_entries()) == 2  # type: ignore[attr-defined]  # cam1 waits for its own run


def test_an_s3_request_backs_off_while_s3_says_slow_down(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from lambdas import stores

    monkeypatch.setattr(stores, "_backoff", lambda attempt: None)
    answers = iter([ClientError({"Error": {"Code": "503"}}, "HeadObject"),
                    ClientError({"Error": {"Code": "SlowDown"}}, "HeadObject"), {"ok": True}])

    def head_object(**_: object) -> object:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert stores._s3_call(head_object, Bucket="b", Key="k") == {"ok": True}
    with pytest.raises(ClientError, match="AccessDenied"):  # anything else is not retried
        stores._s3_call(lambda **_: (_ for _ in ()).throw(ClientError({"Error": {"Code": "AccessDenied"}}, "Get")))
