"""RecordBatchFailure and AggregateDailyCounts on the in-memory stores."""

from __future__ import annotations

import json

import pytest

from lambdas.counting import aggregate_daily_counts
from lambdas.failures import describe_error, record_batch_failure
from lambdas.records import Batch, Failure, Prediction
from lambdas.steps import AggregateDailyCountsRequest, RecordBatchFailureRequest
from tests.unit.conftest import World, png

pytestmark = pytest.mark.unit


def predict(world: World, image, label: str, run: str = "run-1") -> Prediction:  # type: ignore[no-untyped-def]
    return Prediction(image, label, 0.8, {label: 0.8}, "v1", run, "b0", image.capture_date(world.settings.zone))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"Error": "RuntimeError", "Cause": json.dumps({"errorType": "MemoryError", "errorMessage": "out"})},
         ("MemoryError", "out")),
        ({"Error": "States.Timeout", "Cause": "the task timed out"}, ("States.Timeout", "the task timed out")),
        ({"Error": "States.Timeout"}, ("States.Timeout", "States.Timeout")),
        ({}, ("UnknownError", "UnknownError")),
        ("just text", ("UnknownError", "just text")),
    ],
)
def test_the_catch_output_is_described(error: object, expected: tuple[str, str]) -> None:
    assert describe_error(error) == expected


def test_a_failed_batch_records_its_items_except_those_already_counted(world: World) -> None:
    items = [world.upload(f"incoming/{n}.png", png(n)) for n in range(3)]
    world.predictions.write([predict(world, items[0], "dark")])  # written before the batch crashed
    error = {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 60.00 seconds"}
    result = record_batch_failure(RecordBatchFailureRequest("run-1", Batch("b7", items), error), world.predictions,
                                  world.failures, world.state).to_dict()
    assert result == {"batch_id": "b7", "scored": 1, "counted": 0, "duplicates": 0, "failed": 2, "dates": [],
                      "error": "Sandbox.Timedout: Task timed out after 60.00 seconds"}
    rows = world.failures.for_run("run-1")
    assert sorted(r["image_id"] for r in rows) == sorted(i.image_id for i in items[1:])
    assert rows[0]["stage"] == "batch" and rows[0]["reason"].startswith("the classify batch failed after its retries")
    stored = world.state.batch_results("run-1")
    assert len(stored) == 1 and {k: stored[0][k] for k in result} == result


def test_aggregation_rolls_up_the_days_of_the_run(world: World) -> None:
    a = world.upload("incoming/a.png", png(1), "2026-11-20T10:00:00+00:00")
    b = world.upload("incoming/b.png", png(1), "2026-11-20T11:00:00+00:00")
    c = world.upload("incoming/c.png", png(1), "2026-11-21T09:00:00+00:00")
    world.predictions.write([predict(world, a, "dark"), predict(world, b, "light"), predict(world, c, "dark")])
    world.state.put_batch_result("run-1", "b0", {"counted": 2, "written": 2, "duplicates": 0, "images": 2,
                                                 "dates": ["2026-11-20"]})
    world.state.put_batch_result("run-1", "b1", {"counted": 1, "written": 1, "duplicates": 0, "images": 1,
                                                 "dates": ["2026-11-21"]})
    checkpoint = {"scope": "images/incoming/", "last_modified": "2026-11-21T09:00:00+00:00"}
    request = AggregateDailyCountsRequest("run-1", "score", checkpoint, (), 4, slices=2)
    summary = aggregate_daily_counts(request, world.predictions, world.failures, world.state).to_dict()
    assert summary == {
        "run_id": "run-1", "mode": "score", "batches": 2, "images_scored": 3, "predictions_written": 3,
        "already_scored": 4, "images_failed": 0,
        "daily_counts": {"2026-11-20": {"dark": 1, "light": 1}, "2026-11-21": {"dark": 1}}, "slices": 2,
    }
    assert world.predictions.rollups() == summary["daily_counts"]
    # The nightly listing drains the ingest ledger and keeps no time checkpoint: none is written.
    assert world.state.checkpoint("images/incoming/") is None


def test_a_run_with_failures_says_how_to_replay_and_keeps_its_notes(world: World) -> None:
    image = world.upload("incoming/a.png", b"")
    world.failures.record([Failure(image, "decode", "empty", "BadImage", "run-1", "b0")])
    world.state.put_batch_result("run-1", "b0", {"counted": 0, "written": 0, "duplicates": 0, "dates": []})
    request = AggregateDailyCountsRequest("run-1", "replay", None, ("a note",), 0)
    summary = aggregate_daily_counts(request, world.predictions, world.failures, world.state).to_dict()
    assert summary["images_failed"] == 1 and summary["replay"] == "batchinfer replay run-1"
    assert summary["notes"] == ["a note"] and summary["daily_counts"] == {}
    assert world.state.checkpoint("images/incoming/") is None


def test_a_retried_batch_is_not_counted_as_already_scored(world: World) -> None:
    # The retry found 2 of its own earlier writes (duplicates) and counted them as this run's work.
    world.state.put_batch_result("run-1", "b0", {"counted": 2, "written": 0, "duplicates": 2, "dates": []})
    world.state.put_batch_result("run-1", "b1", {"counted": 0, "written": 0, "duplicates": 3, "dates": []})
    request = AggregateDailyCountsRequest("run-1", "score", None, (), 0)
    summary = aggregate_daily_counts(request, world.predictions, world.failures, world.state).to_dict()
    assert (summary["images_scored"], summary["already_scored"]) == (2, 3)
