"""A run's result files hold exactly its predictions and failures, after a retried batch, a batch that
died half-written, and a replay; writing them again gives the same files."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from contract.results import (
    FAILURE_FIELDS,
    FAILURES_TABLE,
    PREDICTION_FIELDS,
    PREDICTIONS_TABLE,
    failures_key,
    index_key,
    predictions_prefix,
)
from engine import lambda_bridge
from lambdas.records import ImageVersion
from lambdas.results import write_run_results
from lambdas.steps import WriteRunResultsRequest
from lambdas.stores import FailureStore, ImageSource, PredictionStore, RunStateStore
from tests.conftest import counted_rows, output_of, prediction_rows, stored_counts, upload

pytestmark = pytest.mark.workflow


def result_files(engine: Any, run_id: str) -> dict[str, bytes]:
    s3 = engine.client("s3")
    listed = s3.list_objects_v2(Bucket=engine.config.bucket, Prefix=f"runs/{run_id}/results/").get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=engine.config.bucket, Key=o["Key"])["Body"].read() for o in listed}


def lines_of(files: dict[str, bytes], prefix: str) -> list[dict[str, Any]]:
    return [json.loads(line) for key, body in sorted(files.items()) if key.startswith(prefix)
            for line in body.decode().splitlines()]


def assert_files_match_tables(engine: Any, run_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    files = result_files(engine, run_id)
    predicted = lines_of(files, predictions_prefix(run_id))
    failed = lines_of(files, failures_key(run_id))
    assert all(list(line) == [f.name for f in PREDICTION_FIELDS] for line in predicted)
    assert all(list(line) == [f.name for f in FAILURE_FIELDS] for line in failed)
    # No image version twice, and exactly the prediction rows this run wrote.
    assert len({line["image_uri"] for line in predicted}) == len(predicted)
    rows = {r["image_id"]: r for r in prediction_rows(engine) if r["run_id"] == run_id}
    assert {line["image_uri"] for line in predicted} == set(rows)
    for line in predicted:
        row = rows[line["image_uri"]]
        assert (line["class"], line["confidence"], line["probabilities"], line["model_version"], line["date"],
                line["captured_at"], line["batch"], line["run"], line["runtime"]) == (
            row["predicted_class"], row["confidence"], row["probabilities"], row["model_version"], row["date"],
            row["captured_at"], row["batch_id"], run_id, row["runtime"])
        assert ImageVersion(line["bucket"], line["key"], line["version_id"], row["captured_at"]).image_id == \
            line["image_uri"]
    counted = {r["image_id"] for r in counted_rows(engine) if r["run_id"] == run_id}
    assert {line["image_uri"] for line in predicted if line["counted"]} == counted
    # Exactly the failure rows of the run.
    stored = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run(run_id)
    assert sorted((f["image_uri"], f["stage"], f["reason"]) for f in failed) == sorted(
        (r["image_id"], r["stage"], r["reason"]) for r in stored)
    assert len({f["image_uri"] for f in failed}) == len(failed)
    # The index files the Glue tables read list exactly these files.
    s3, bucket = engine.client("s3"), engine.config.bucket
    listed = s3.get_object(Bucket=bucket, Key=index_key(PREDICTIONS_TABLE, run_id))["Body"].read().decode().split()
    assert sorted(listed) == sorted(f"s3://{bucket}/{k}" for k in files if k.startswith(predictions_prefix(run_id)))
    assert s3.get_object(Bucket=bucket, Key=index_key(FAILURES_TABLE, run_id))["Body"].read().decode().split() == [
        f"s3://{bucket}/{failures_key(run_id)}"]
    return predicted, failed


@pytest.fixture
def small_batches(demo_model: Any) -> Iterator[Any]:
    from demo import digits
    from engine.local_engine import LocalConfig, LocalEngine
    from lambdas.model_registry import ModelRegistry

    # engine/faults.py: batch 2's first call and the results step's first call are throttled, then retried.
    faults = "ClassifyBatch:throttle:batch-00002:1,WriteRunResults:throttle:1"
    with LocalEngine(LocalConfig(name="results", batch_size=4, max_concurrency=2, faults=faults)) as engine:
        registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
        registry.promote("v1")
        yield engine


def test_result_files_hold_exactly_the_runs_rows_after_retries_a_dead_batch_and_a_replay(
        small_batches: Any, held_out_digits: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    engine = small_batches
    for digit in held_out_digits[:11]:
        upload(engine, f"incoming/{digit.index:04d}.png", digit.png)
    upload(engine, "incoming/not-an-image.png", b"no image here")  # 12 images: batches 0, 1, 2 of four

    write, put_result = PredictionStore.write, RunStateStore.put_batch_result
    crashed: Counter[str] = Counter()

    def half_then_crash(self: PredictionStore, predictions: Any) -> Any:
        # Batch 0 dies after two of its predictions are in, on every attempt: its child writes no file.
        if predictions and predictions[0].batch_id.endswith("-00000"):
            write(self, list(predictions)[:2])
            raise RuntimeError("the container was killed in the middle of the batch")
        return write(self, predictions)

    def crash_once_after_the_writes(self: RunStateStore, run_id: str, batch_id: str, result: Any) -> None:
        # Batch 1 fails once after its predictions and its file are written: the retry finds its own writes.
        if batch_id.endswith("-00001") and not crashed[batch_id]:
            crashed[batch_id] += 1
            raise RuntimeError("the container was killed before it recorded the batch")
        put_result(self, run_id, batch_id, result)

    monkeypatch.setattr(PredictionStore, "write", half_then_crash)
    monkeypatch.setattr(RunStateStore, "put_batch_result", crash_once_after_the_writes)
    first = engine.run({"mode": "score"}, timeout=300)
    monkeypatch.setattr(PredictionStore, "write", write)
    monkeypatch.setattr(RunStateStore, "put_batch_result", put_result)
    assert first["status"] == "SUCCEEDED", first
    summary = output_of(first)
    run_id = summary["run_id"]
    assert sum(crashed.values()) == 1
    calls = [name for name, _, _ in lambda_bridge.invocations()]
    assert calls.count("results-WriteRunResults") == 2, calls
    assert summary["results"] == {"predictions": f"s3://{engine.config.bucket}/{predictions_prefix(run_id)}",
                                  "failures": f"s3://{engine.config.bucket}/{failures_key(run_id)}"}

    predicted, failed = assert_files_match_tables(engine, run_id)
    assert len(predicted) == 9  # 11 images less the two of batch 0 that never landed
    assert len(failed) == 3  # those two and the file that is not an image
    assert len({line["batch"] for line in predicted}) == 3  # batch 0's file was written from the table

    # Written again (a redrive, a retried step): the same bytes, no new file.
    before = result_files(engine, run_id)
    source = ImageSource(engine.client("s3"))
    store = PredictionStore(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)
    write_run_results(WriteRunResultsRequest(run_id, engine.config.bucket, f"runs/{run_id}/manifest.json"),
                      engine.config.bucket, source, store,
                      FailureStore(engine.client("dynamodb"), engine.failures_table))
    assert result_files(engine, run_id) == before

    replay = engine.run({"mode": "replay", "run": run_id}, timeout=300)
    assert replay["status"] == "SUCCEEDED", replay
    replayed, replay_failed = assert_files_match_tables(engine, output_of(replay)["run_id"])
    assert len(replayed) == 2 and all(line["counted"] for line in replayed) and len(replay_failed) == 1
    assert result_files(engine, run_id) == before  # the replayed run's files stay as they were

    # Over both runs, the counted lines add up to the daily counts.
    totals: dict[str, Counter[str]] = {}
    for line in predicted + replayed:
        if line["counted"]:
            totals.setdefault(line["date"], Counter())[line["class"]] += 1
    assert {day: dict(c) for day, c in totals.items()} == stored_counts(engine)
