"""ListNewVersions and ReconcileVersions against moto: the ingest ledger, versions, S3 events, the sweep."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import pytest

from contract.resource_spec import INGEST_LEDGER
from contract.settings import load_settings
from engine.s3_events import object_created, sqs_record
from lambdas.ingest_stores import IngestLedger, ReconciliationState, UploadEventQueue
from lambdas.listing import list_new_versions
from lambdas.reconciliation import ReconcileRequest, reconcile_versions
from lambdas.records import BadRecord, ImageVersion, Prediction
from lambdas.steps import ListNewVersionsRequest as ListRequest
from lambdas.stores import ImageSource, PredictionStore
from tests.conftest import upload

pytestmark = pytest.mark.integration


def predictions_of(engine: Any) -> PredictionStore:
    return PredictionStore(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)


def ledger_of(engine: Any) -> IngestLedger:
    return IngestLedger(engine.client("dynamodb"), engine.table(INGEST_LEDGER))


def listing(engine: Any, request: ListRequest) -> dict:
    settings = load_settings()
    uploads = UploadEventQueue(engine.client("sqs"), settings.ingest_queue_url)
    return list_new_versions(request, settings, ImageSource(engine.client("s3")), predictions_of(engine),
                             ledger_of(engine), uploads).to_dict()


def _tick(ticks: Iterator[int]) -> float:
    return float(next(ticks))


def reconcile(engine: Any, run_id: str, page_size: int = 1000, budget_pages: int | None = None) -> dict:
    """A whole sweep, invocation after invocation as the state machine loops, each of budget_pages pages."""
    settings = load_settings()
    sweeps = ReconciliationState(engine.client("dynamodb"), engine.state_table)
    previous: dict = {}
    while True:
        ticks = itertools.count()  # a clock that advances one second a read: budget_pages pages a call
        clock = partial(_tick, ticks) if budget_pages else partial(float, 0)
        request = ReconcileRequest.from_event({"run_id": run_id, "input": {"reconciliation": previous or None}})
        step_settings = settings if not budget_pages else replace(settings, reconcile_budget_seconds=budget_pages)
        source = ImageSource(engine.client("s3"), page_size=page_size)
        previous = reconcile_versions(request, step_settings, source, predictions_of(engine),
                                      ledger_of(engine), sweeps, clock=clock)
        if previous["done"]:
            return previous


def manifest(engine: Any, result: dict) -> list[dict]:
    body = engine.client("s3").get_object(Bucket=result["manifest_bucket"], Key=result["manifest_key"])["Body"]
    return list(json.loads(body.read()))


def test_all_pages_are_read_and_batched(engine: Any) -> None:
    for n in range(37):
        upload(engine, f"incoming/img-{n:03d}.png", b"x")
    upload(engine, "elsewhere/not-an-upload.png", b"x")
    result = listing(engine, ListRequest(run_id="r1"))
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


def test_the_ledger_forgets_a_version_once_it_is_counted(engine: Any) -> None:
    for n in range(3):
        upload(engine, f"incoming/{n}.png", b"x")
    first = listing(engine, ListRequest("r1"))
    assert first["images"] == 3 and len(ledger_of(engine).all_entries()) == 3
    # Listed is not scored: a run that dies after listing loses nothing, the next lists them again.
    assert listing(engine, ListRequest("r2"))["images"] == 3
    items = [ImageVersion.from_dict(i) for b in manifest(engine, first) for i in b["items"]]
    predictions_of(engine).write([Prediction(i, "a", 1.0, {"a": 1.0}, "v1", "r1", "b", "2026-01-01") for i in items])
    third = listing(engine, ListRequest("r3"))
    assert (third["images"], third["already_done"]) == (0, 3)
    assert ledger_of(engine).all_entries() == []


def test_a_duplicated_event_lists_its_version_once(engine: Any) -> None:
    version = upload(engine, "incoming/twice.png", b"x")
    sqs, url = engine.client("sqs"), load_settings().ingest_queue_url
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    sqs.send_message(QueueUrl=url, MessageBody=message["Body"])  # SQS and EventBridge deliver at least once
    items = [i for b in manifest(engine, listing(engine, ListRequest("r1"))) for i in b["items"]]
    assert [i["version_id"] for i in items] == [version]


def test_the_run_cap_makes_a_slice_and_leaves_the_rest_for_the_next(engine: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHINFER_MAX_IMAGES_PER_RUN", "4")
    versions = {upload(engine, f"incoming/{n}.png", b"x") for n in range(10)}
    first = listing(engine, ListRequest("r1"))
    # 10 waiting at 4 a slice: this one, and about two more (DynamoDB's item count of the ledger).
    assert (first["images"], first["slice"], first["slices"], first["more"]) == (4, 1, 3, True)
    assert len(ledger_of(engine).all_entries()) == 10  # none lost, none scored yet
    assert {e["version_id"] for e in ledger_of(engine).all_entries()} == versions


def purge_ingest_queue(engine: Any) -> None:
    """The upload events lost: as if EventBridge or the queue had dropped them."""
    engine.client("sqs").purge_queue(QueueUrl=load_settings().ingest_queue_url)


def test_the_sweep_finds_versions_no_event_announced_and_resumes_from_its_cursor(engine: Any) -> None:
    lost = {upload(engine, f"incoming/lost-{n}.png", b"x") for n in range(7)}
    purge_ingest_queue(engine)
    assert listing(engine, ListRequest("r1"))["images"] == 0  # the ledger never heard of them

    sweep = reconcile(engine, "sweep-1", page_size=2, budget_pages=1)  # 4 invocations of one page
    assert sweep["done"] and sweep["pages"] == 4 and sweep["recorded"] == 7
    found = listing(engine, ListRequest("r2"))
    assert {i["version_id"] for b in manifest(engine, found) for i in b["items"]} == lost


def test_a_sweep_looks_up_only_versions_newer_than_the_last_sweep(engine: Any) -> None:
    for n in range(5):
        upload(engine, f"incoming/old-{n}.png", b"x")
    purge_ingest_queue(engine)
    assert reconcile(engine, "sweep-1")["recorded"] == 5
    ledger = ledger_of(engine)
    ledger.remove([e["image_id"] for e in ledger.all_entries()])
    # A sweep that started an overlap and more after them does not look at them again.
    sweeps = ReconciliationState(engine.client("dynamodb"), engine.state_table)
    assert sweeps.record_sweep(f"{engine.config.bucket}/incoming/", "2099-01-01T00:00:00+00:00", "later")
    assert not sweeps.record_sweep(f"{engine.config.bucket}/incoming/", "2098-01-01T00:00:00+00:00", "older")
    assert reconcile(engine, "sweep-2")["recorded"] == 0


def s3_event(bucket: str, key: str, version: str | None) -> dict:
    """An SQS record holding the EventBridge event S3 sends for an upload, as AWS shapes it."""
    return sqs_record(object_created(bucket, key, version))


def test_an_event_that_lacks_what_s3_always_sends_is_rejected_with_the_field() -> None:
    from lambdas.steps import parse_s3_events

    event = json.loads(s3_event("b", "incoming/a.png", "v1")["body"])
    del event["detail"]["bucket"]
    objects, rejected = parse_s3_events([event, s3_event("b", "incoming/b.png", "v2")])
    assert [o.key for o in objects] == ["incoming/b.png"]
    assert rejected == ["record 0: not an S3 Object Created event (detail.bucket: field required)"]


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
    assert result["checkpoint"] is None


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
