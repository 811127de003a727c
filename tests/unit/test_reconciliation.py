"""ReconcileBatches on the in-memory stores: batches without a result become failure records, page by
page, with the failed child's error where the ResultWriter reported it; a streamed manifest parses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.batch_reconciliation import ReconcileRequest, iter_json_array, manifest_pages, reconcile_batches
from lambdas.fakes import InMemoryFailureStore, InMemoryImageSource, InMemoryPredictionStore, InMemoryRunStateStore
from lambdas.records import Batch, ImageVersion, Prediction
from lambdas.stores import COUNTED, FAILED

pytestmark = pytest.mark.unit

BUCKET = "images"
RUN = "run-1"


def image(n: int) -> ImageVersion:
    return ImageVersion(BUCKET, f"incoming/ü-{n:05d}.png", f"v{n}", "2026-11-20T10:00:00+00:00", 10)


def manifest(batches: int, size: int = 2) -> list[dict[str, Any]]:
    return [Batch(f"{RUN}-{b:05d}", [image(b * size + i) for i in range(size)]).to_dict() for b in range(batches)]


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_a_json_array_streams_element_by_element_whatever_the_chunks(chunk: int) -> None:
    value = [{"a": "é€𝄞", "n": [1, 2.5, None, True]}, 12345, "x,]y", [], {}, -0.5e3, 678]
    data = json.dumps(value, ensure_ascii=False).encode()
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    assert list(iter_json_array(chunks, "test")) == value


@pytest.mark.parametrize(("text", "error"), [("{}", "is not a JSON array"), ('[{"a": 1}, {"b"', "ends before")])
def test_a_manifest_that_is_not_a_whole_array_is_refused_by_name(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        list(iter_json_array([text.encode()], "s3://images/runs/x/manifest.json"))


def test_the_manifest_is_read_a_page_of_batches_at_a_time() -> None:
    source: Any = InMemoryImageSource()
    source.write_json(BUCKET, "runs/run-1/manifest.json", manifest(250))
    pages = list(manifest_pages(source, BUCKET, "runs/run-1/manifest.json"))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert pages[2][-1].batch_id == f"{RUN}-00249" and pages[2][-1].items[1] == image(499)


def stores() -> tuple[Any, Any, Any, Any]:
    """The in-memory image source, prediction, failure and run-state stores (duck-typed as the real ones)."""
    return InMemoryImageSource(), InMemoryPredictionStore(), InMemoryFailureStore(), InMemoryRunStateStore()


def test_batches_without_a_result_become_failure_records_and_the_others_are_left_alone() -> None:
    source, predictions, failures, state = stores()
    source.write_json(BUCKET, "runs/run-1/manifest.json", manifest(250))
    for b in range(250):
        if b not in (7, 120, 249):
            state.put_batch_result(RUN, f"{RUN}-{b:05d}", {"batch_id": f"{RUN}-{b:05d}", "counted": 2})
    # Batch 120's child counted its first image before it died: that one is done, not failed.
    counted = Prediction(image(240), "3", 0.9, {"3": 0.9}, "v1", RUN, f"{RUN}-00120", "2026-11-20")
    predictions.write([counted])

    request = ReconcileRequest.from_event({"run_id": RUN, "manifest_bucket": BUCKET,
                                           "manifest_key": "runs/run-1/manifest.json",
                                           "classify": {"MapRunArn": "arn:map", "ResultWriterDetails": {}}})
    result = reconcile_batches(request, source, predictions, failures, state)
    assert result == {"run_id": RUN, "batches_without_result": 3, "items_recorded": 5, "map_failed": False}

    recorded = {f["image_id"]: f for f in failures.for_run(RUN)}
    expected = {image(n).image_id for n in (14, 15, 241, 498, 499)}
    assert set(recorded) == expected
    assert all(f["reason"].startswith("the batch's child execution failed: it ended without a result")
               for f in recorded.values())
    ledger = predictions.ledger([image(n).image_id for n in (14, 240, 241)])
    assert ledger == {image(14).image_id: {FAILED}, image(240).image_id: {COUNTED}, image(241).image_id: {FAILED}}
    reconciled = {r["batch_id"]: r for r in state.batch_results(RUN) if r.get("reconciled")}
    assert set(reconciled) == {f"{RUN}-00007", f"{RUN}-00120", f"{RUN}-00249"}
    assert (reconciled[f"{RUN}-00120"]["failed"], reconciled[f"{RUN}-00120"]["scored"]) == (1, 1)

    # A second reconciliation (a retried step) finds every batch with a result and writes nothing.
    again = reconcile_batches(request, source, predictions, failures, state)
    assert again["batches_without_result"] == 0 and len(failures.for_run(RUN)) == 5


def test_the_failed_childs_own_error_is_the_reason_when_the_result_writer_reported_it() -> None:
    source, predictions, failures, state = stores()
    source.write_json(BUCKET, "runs/run-1/manifest.json", manifest(2))
    failed_input = {"run_id": RUN, "batch": manifest(2)[1]}
    source.write_json(BUCKET, "runs/run-1/classify-results/m/FAILED_0.json", [
        {"Status": "TIMED_OUT", "Input": json.dumps(failed_input), "Error": "States.Timeout",
         "Cause": "The child execution ran past the EXPRESS limit of 300 s"}])
    source.write_json(BUCKET, "runs/run-1/classify-results/m/manifest.json", {
        "DestinationBucket": BUCKET, "MapRunArn": "arn:map",
        "ResultFiles": {"FAILED": [{"Key": "runs/run-1/classify-results/m/FAILED_0.json", "Size": 1}],
                        "PENDING": [], "SUCCEEDED": []}})
    state.put_batch_result(RUN, f"{RUN}-00000", {"batch_id": f"{RUN}-00000"})
    request = ReconcileRequest(RUN, BUCKET, "runs/run-1/manifest.json", {
        "MapRunArn": "arn:map",
        "ResultWriterDetails": {"Bucket": BUCKET, "Key": "runs/run-1/classify-results/m/manifest.json"}})
    reconcile_batches(request, source, predictions, failures, state)
    reasons = {f["reason"] for f in failures.for_run(RUN)}
    assert reasons == {"the batch's child execution failed: States.Timeout: "
                       "The child execution ran past the EXPRESS limit of 300 s"}


def test_a_failed_map_is_reported_and_every_unfinished_batch_recorded() -> None:
    source, predictions, failures, state = stores()
    source.write_json(BUCKET, "runs/run-1/manifest.json", manifest(3, size=1))
    request = ReconcileRequest.from_event({
        "run_id": RUN, "manifest_bucket": BUCKET, "manifest_key": "runs/run-1/manifest.json",
        "classify": {"Error": "States.ExceedToleratedFailureThreshold", "Cause": "3 of 3 children failed"}})
    result = reconcile_batches(request, source, predictions, failures, state)
    assert result["map_failed"] is True and result["items_recorded"] == 3
    assert {f["reason"] for f in failures.for_run(RUN)} == {
        "the batch's child execution failed: the Classify map failed "
        "(States.ExceedToleratedFailureThreshold: 3 of 3 children failed)"}


def test_a_request_without_its_manifest_is_refused_by_name() -> None:
    from lambdas.records import BadRecord

    with pytest.raises(BadRecord, match="manifest_bucket, manifest_key"):
        ReconcileRequest.from_event({"run_id": RUN})
