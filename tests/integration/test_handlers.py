"""Each Lambda handler, called as Lambda calls it, against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.settings import SettingsError
from engine.lambda_bridge import LambdaContext
from inference_image import handler as classify_handler
from lambdas.handlers import aggregate_daily_counts, list_new_versions, record_batch_failure
from lambdas.records import BadRecord
from lambdas.stores import FailureStore, PredictionStore
from tests.conftest import png_bytes, stored_counts, upload

pytestmark = pytest.mark.integration


def context(name: str) -> LambdaContext:
    return LambdaContext(name, 1024, f"arn:aws:lambda:us-east-1:1:function:{name}", 60)


def listed_batch(engine: Any) -> dict[str, Any]:
    result = list_new_versions.handler({"run_id": "run-1", "input": {"mode": "score"}}, context("list"))
    body = engine.client("s3").get_object(Bucket=result["manifest_bucket"], Key=result["manifest_key"])["Body"]
    batches = json.loads(body.read())
    assert len(batches) == 1
    return dict(batches[0])


def test_list_classify_aggregate(scoring_engine: Any, held_out_digits: list[Any]) -> None:
    engine = scoring_engine
    for digit in held_out_digits[:5]:
        upload(engine, f"incoming/{digit.index}.png", digit.png, digit.label)
    upload(engine, "incoming/broken.png", b"\x89PNG\r\n\x1a\n garbage")
    batch = listed_batch(engine)

    result = classify_handler.handler({"run_id": "run-1", "batch": batch}, context("classify"))
    assert (result["scored"], result["failed"], result["counted"], result["model_version"]) == (5, 1, 5, "v1")
    assert "truncated or corrupt" in result["failures"][0]["reason"]
    again = classify_handler.handler({"run_id": "run-1", "batch": batch}, context("classify"))  # a retry
    assert (again["written"], again["counted"], again["duplicates"]) == (0, 5, 5)

    summary = aggregate_daily_counts.handler({"run_id": "run-1", "mode": "score"}, context("aggregate"))
    assert summary["images_failed"] == 1 and summary["replay"] == "batchinfer replay run-1"
    assert summary["images_scored"] == 5
    assert sum(n for day in stored_counts(engine).values() for n in day.values()) == 5


def test_record_batch_failure_records_each_unscored_item(scoring_engine: Any) -> None:
    engine = scoring_engine
    for n in range(3):
        upload(engine, f"incoming/{n}.png", png_bytes())
    batch = listed_batch(engine)
    error = {"Error": "RuntimeError", "Cause": json.dumps({"errorType": "RuntimeError",
                                                           "errorMessage": "out of memory"})}
    result = record_batch_failure.handler({"run_id": "run-1", "batch": batch, "error": error}, context("r"))
    assert result["failed"] == 3
    rows = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run("run-1")
    assert {r["stage"] for r in rows} == {"batch"}
    assert all("RuntimeError: out of memory" in r["reason"] for r in rows)
    store = PredictionStore(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)
    assert all(kinds == {"FAILED"} for kinds in store.ledger([r["image_id"] for r in rows]).values())


@pytest.mark.parametrize(
    ("handler", "event", "message"),
    [
        (classify_handler.handler, {"run_id": "r"}, "needs an object with 'run_id' and 'batch'"),
        (classify_handler.handler, {"run_id": "r", "batch": {"items": [{"key": "k"}]}}, "lacks bucket"),
        (record_batch_failure.handler, {"batch": {}}, "needs an object with 'run_id', 'batch' and 'error'"),
        (aggregate_daily_counts.handler, {}, "needs an object with 'run_id'"),
    ],
)
def test_wrong_events_get_a_clear_error(engine: Any, handler: Any, event: Any, message: str) -> None:
    with pytest.raises(BadRecord, match=message):
        handler(event, context("f"))


def test_a_missing_setting_is_named_at_the_first_invocation(engine: Any, monkeypatch: Any) -> None:
    from lambdas import dependencies

    monkeypatch.delenv("BATCHINFER_FAILURES_TABLE")
    dependencies.reset()
    with pytest.raises(SettingsError, match="BATCHINFER_FAILURES_TABLE is not set"):
        aggregate_daily_counts.handler({"run_id": "r"}, context("f"))
    dependencies.reset()
