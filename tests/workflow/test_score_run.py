"""The real definition on the embedded engine with the real TensorFlow model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import lambda_bridge
from lambdas.stores import FailureStore
from tests.conftest import counted_rows, output_of, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.workflow

BAD = {
    "incoming/not-an-image.jpg": b"GIF89a? no, just text",
    "incoming/empty.png": b"",
    "incoming/half.png": None,  # the first half of a real PNG
}


def seed(engine: Any, digits: list[Any], count: int) -> dict[str, str]:
    versions = {}
    for digit in digits[:count]:
        key = f"incoming/{digit.index:04d}.png"
        versions[upload(engine, key, digit.png, digit.label)] = digit.label
    for key, body in BAD.items():
        upload(engine, key, body if body is not None else digits[0].png[: len(digits[0].png) // 2])
    return versions


def test_score_run_end_to_end(scoring_engine: Any, held_out_digits: list[Any]) -> None:
    engine = scoring_engine
    truth = seed(engine, held_out_digits, 52)
    # The same key uploaded again is a new version, and a second image.
    truth[upload(engine, "incoming/0000-again.png", held_out_digits[60].png)] = held_out_digits[60].label
    truth[upload(engine, "incoming/0000-again.png", held_out_digits[61].png)] = held_out_digits[61].label

    description = engine.run({"mode": "score"})
    assert description["status"] == "SUCCEEDED", description
    summary = output_of(description)
    assert summary["images_scored"] == 54 and summary["images_failed"] == 3
    assert summary["replay"] == f"batchinfer replay {summary['run_id']}"

    rows = prediction_rows(engine)
    assert sorted(r["version_id"] for r in rows) == sorted(truth)  # one row per good image version
    for row in rows:
        assert row["image_uri"].startswith(f"s3://{engine.config.bucket}/incoming/")
        assert f"versionId={row['version_id']}" in row["image_uri"]
        assert row["date"] == row["captured_at"][:10]  # UTC, from S3 LastModified
        assert row["model_version"] == "v1" and row["run_id"] == summary["run_id"]
        assert set(row["probabilities"]) == {str(d) for d in range(10)}
        assert abs(sum(row["probabilities"].values()) - 1.0) < 1e-3
        assert row["confidence"] == max(row["probabilities"].values())
        assert row["predicted_class"] == max(row["probabilities"], key=row["probabilities"].get)
        assert row["prediction_id"]
    accuracy = sum(r["predicted_class"] == truth[r["version_id"]] for r in rows) / len(rows)
    assert accuracy >= 0.9

    assert stored_counts(engine) == recount(engine) == summary["daily_counts"]
    assert len(counted_rows(engine)) == 54

    failures = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run(summary["run_id"])
    reasons = {f["image"]["key"]: f["reason"] for f in failures}
    assert reasons == {
        "incoming/not-an-image.jpg": "not an image: the bytes are in no format Pillow can read",
        "incoming/empty.png": "the object is empty (0 bytes)",
        "incoming/half.png": reasons["incoming/half.png"],
    }
    assert reasons["incoming/half.png"].startswith("the image data is truncated or corrupt")

    # A second run over the same bucket scores nothing new and leaves the counts as they were.
    counts_before, rows_before = stored_counts(engine), len(prediction_rows(engine))
    second = engine.run({"mode": "score"})
    assert second["status"] == "SUCCEEDED"
    assert output_of(second)["images_scored"] == 0 and output_of(second)["batches"] == 0
    assert stored_counts(engine) == counts_before and len(prediction_rows(engine)) == rows_before


def test_a_batch_whose_function_keeps_failing_is_recorded_and_the_run_goes_on(
    scoring_engine: Any, held_out_digits: list[Any]
) -> None:
    engine = scoring_engine
    seed(engine, held_out_digits, 20)  # 23 objects: batches of 16 and 7
    attempts: list[str] = []

    def crash_second_batch(function: str, event: Any) -> None:
        if function.endswith("ClassifyBatch") and event["batch"]["batch_id"].endswith("-00001"):
            attempts.append(event["batch"]["batch_id"])
            raise RuntimeError("the container ran out of memory")

    lambda_bridge.set_fault_hook(crash_second_batch)
    try:
        description = engine.run({"mode": "score"})
    finally:
        lambda_bridge.set_fault_hook(None)
    assert description["status"] == "SUCCEEDED"
    assert len(attempts) == 3  # the first try and two retries, then Catch
    summary = output_of(description)
    assert summary["images_scored"] == 16 and summary["images_failed"] == 7
    failures = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run(summary["run_id"])
    assert {f["stage"] for f in failures} == {"batch"}
    assert all("RuntimeError: the container ran out of memory" in f["reason"] for f in failures)
    assert stored_counts(engine) == recount(engine)


def test_an_event_batch_with_no_s3_event_scores_nothing_and_says_why(scoring_engine: Any) -> None:
    description = scoring_engine.run(["not", {"body": "{}"}])
    assert description["status"] == "SUCCEEDED"
    notes = output_of(description)["notes"]
    assert notes[0].startswith("record 0: not an S3 Object Created event")
    assert notes[1].startswith("record 1: not an S3 Object Created event (detail-type is None")


@pytest.mark.parametrize("run_input", [{"mode": "bogus"}, {"no_mode": True}, "score", 42, None])
def test_malformed_input_fails_the_run_with_a_clear_error(engine: Any, run_input: Any) -> None:
    description = engine.run(run_input)
    assert description["status"] == "FAILED"
    assert description["error"] in ("BadInput", "BadRecord")
    assert "mode" in description["cause"] or "event" in description["cause"]


def test_the_time_zone_dates_the_predictions(held_out_digits: list[Any], demo_model: Any) -> None:
    from demo import digits
    from engine.local_engine import LocalConfig, LocalEngine
    from lambdas.model_registry import ModelRegistry

    with LocalEngine(LocalConfig(name="tz", time_zone="Pacific/Kiritimati")) as engine:  # UTC+14
        registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
        registry.promote("v1")
        upload(engine, "incoming/a.png", held_out_digits[0].png)
        assert engine.run({"mode": "score"})["status"] == "SUCCEEDED"
        (row,) = prediction_rows(engine)
        from datetime import datetime
        from zoneinfo import ZoneInfo

        local = datetime.fromisoformat(row["captured_at"]).astimezone(ZoneInfo("Pacific/Kiritimati"))
        assert row["date"] == local.date().isoformat()
        assert json.dumps(stored_counts(engine)).count(row["date"]) == 1
