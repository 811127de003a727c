"""The workflow under AWS's limits, on the quota-faithful embedded engine: child executions that fail
outright (an error past Catch, EXPRESS's 5 minutes) lose no item, a systematic failure still fails
the run, a run before the first model marks nothing, and a prefix the role cannot list is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.resource_spec import FUNCTION_LIMITS, FunctionLimits
from engine import lambda_bridge
from lambdas.stores import FAILED, FailureStore, scan_all
from tests.conftest import counted_rows, output_of, recount, stored_counts, upload

pytestmark = pytest.mark.workflow


def publish_model(engine: Any, demo_model: tuple[Path, dict[str, Any]], forms: Any) -> None:
    from demo import digits
    from inference_image.publishing import publish_forms
    from lambdas.model_registry import ModelRegistry

    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    publish_forms(registry, "v1", demo_model[0], digits.LABELS, demo_model[1], forms)
    registry.promote("v1")


@pytest.fixture
def one_image_batches(request: pytest.FixtureRequest, demo_model: Any, demo_model_forms: Any) -> Iterator[Any]:
    """Batches of one image, so that one failed child is under the 10% the Map tolerates; the fault
    plan is the test's parameter."""
    from engine.local_engine import LocalConfig, LocalEngine

    config = LocalConfig(name="limits", batch_size=1, max_concurrency=4, faults=request.param)
    with LocalEngine(config) as engine:
        publish_model(engine, demo_model, demo_model_forms)
        yield engine


def seed(engine: Any, digits: list[Any], count: int) -> dict[str, str]:
    """key -> true label."""
    for digit in digits[:count]:
        upload(engine, f"incoming/{digit.index:04d}.png", digit.png, digit.label)
    return {f"incoming/{d.index:04d}.png": d.label for d in digits[:count]}


def failures_of(engine: Any, run_id: str) -> dict[str, dict[str, Any]]:
    store = FailureStore(engine.client("dynamodb"), engine.failures_table)
    return {f["image"]["key"]: f for f in store.for_run(run_id)}


def failed_markers(engine: Any) -> list[dict[str, Any]]:
    return [r for r in scan_all(engine.client("dynamodb"), TableName=engine.predictions_table) if r["sk"] == FAILED]


# The batch fails, and so does the Catch's RecordBatchFailure: the child execution fails outright and
# records nothing, as when AWS throttles it past its retries or kills it.
@pytest.mark.parametrize(
    "one_image_batches", ["ClassifyBatch:error:batch-00003:3,RecordBatchFailure:error:batch-00003:1"], indirect=True
)
def test_a_child_that_fails_outright_is_reconciled_and_a_replay_scores_it(
    one_image_batches: Any, held_out_digits: list[Any]
) -> None:
    engine = one_image_batches
    truth = seed(engine, held_out_digits, 12)  # 12 children: one failed child is 8%, under the 10% tolerated
    description = engine.run({"mode": "score"}, timeout=600)
    assert description["status"] == "SUCCEEDED", description
    summary = output_of(description)
    assert summary["images_scored"] == 11 and summary["images_failed"] == 1 and summary["batches"] == 12

    [(key, failure)] = failures_of(engine, summary["run_id"]).items()
    assert key in truth and failure["stage"] == "batch" and failure["error_type"] == "ChildExecutionFailed"
    # The reason comes from the Map's failed-results file: the child's own error.
    assert failure["reason"] == ("the batch's child execution failed: InjectedError: "
                                 "fault injected by the fault plan: the function raised")
    assert [m["image_id"] for m in failed_markers(engine)] == [failure["image_id"]]
    assert len(counted_rows(engine)) == 11

    replay = engine.run({"mode": "replay", "run": summary["run_id"]}, timeout=600)
    assert replay["status"] == "SUCCEEDED", replay
    assert output_of(replay)["images_scored"] == 1 and output_of(replay)["images_failed"] == 0
    replay_id = output_of(replay)["run_id"]
    assert [r["image_id"] for r in counted_rows(engine) if r["run_id"] == replay_id] == [failure["image_id"]]
    assert len(counted_rows(engine)) == 12
    assert stored_counts(engine) == recount(engine)
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == 12


def test_a_child_past_the_express_five_minutes_is_reconciled_and_a_replay_scores_it(
    demo_model: Any, demo_model_forms: Any, held_out_digits: list[Any]
) -> None:
    """Time scaled by 0.05: EXPRESS's 300 s are 15 s. ClassifyBatch deployed with the old 300 s timeout
    (which `cdk synth` now refuses) lets one slow batch run into the child's limit: AWS ends that child
    before Retry or Catch can run, and only ReconcileBatches keeps its items."""
    from engine.local_engine import LocalConfig, LocalEngine

    limits = {**FUNCTION_LIMITS, "ClassifyBatch": FunctionLimits(memory_mb=3008, timeout_seconds=300)}
    released = threading.Event()
    slow: list[str] = []
    config = LocalConfig(name="express", batch_size=1, max_concurrency=4, time_scale=0.05, function_limits=limits)
    with LocalEngine(config) as engine:
        publish_model(engine, demo_model, demo_model_forms)
        seed(engine, held_out_digits, 12)
        first_run = "express-first"

        def stall_one_batch(function: str, event: Any) -> None:
            batch_id = event.get("batch", {}).get("batch_id", "") if isinstance(event, dict) else ""
            if function.endswith("ClassifyBatch") and batch_id == f"{first_run}-00005":
                slow.append(batch_id)
                released.wait(120)  # hangs past the child's 15 s (scaled 300 s)
                raise RuntimeError("released after the test")

        lambda_bridge.set_fault_hook(stall_one_batch)
        try:
            description = engine.run({"mode": "score"}, name=first_run, timeout=600)
            assert description["status"] == "SUCCEEDED", description
            summary = output_of(description)
            assert slow == [f"{first_run}-00005"]
            assert summary["images_scored"] == 11 and summary["images_failed"] == 1
            [failure] = failures_of(engine, first_run).values()
            assert failure["reason"].startswith("the batch's child execution failed: States.Timeout: "
                                                "The child execution ran past the EXPRESS limit of 300 s")
            replay = engine.run({"mode": "replay", "run": first_run}, timeout=600)
            assert replay["status"] == "SUCCEEDED", replay
            assert output_of(replay)["images_scored"] == 1
            assert len(counted_rows(engine)) == 12
            assert stored_counts(engine) == recount(engine)
        finally:
            released.set()
            lambda_bridge.set_fault_hook(None)


# Every batch fails three times and its RecordBatchFailure once; then the fault clears, for the replay.
@pytest.mark.parametrize("one_image_batches", [",".join(
    f"ClassifyBatch:error:batch-{n:05d}:3,RecordBatchFailure:error:batch-{n:05d}:1" for n in range(4))], indirect=True)
def test_a_systematic_failure_fails_the_run_and_loses_no_item(
    one_image_batches: Any, held_out_digits: list[Any]
) -> None:
    engine = one_image_batches
    truth = seed(engine, held_out_digits, 4)
    description = engine.run({"mode": "score"}, timeout=600)
    assert description["status"] == "FAILED"
    assert description["error"] == "ClassifyFailed"
    assert "More than 10% of the Classify map's child executions failed outright" in description["cause"]
    run_id = description["name"]
    failures = failures_of(engine, run_id)
    assert set(failures) == set(truth)
    assert all(f["reason"].startswith("the batch's child execution failed: the Classify map failed "
                                      "(States.ExceedToleratedFailureThreshold") for f in failures.values())

    replay = engine.run({"mode": "replay", "run": run_id}, timeout=600)
    assert replay["status"] == "SUCCEEDED", replay
    assert output_of(replay)["images_scored"] == 4
    assert len(counted_rows(engine)) == 4 and stored_counts(engine) == recount(engine)


def test_a_run_before_the_first_model_marks_nothing_and_the_next_run_scores_everything(
    engine: Any, held_out_digits: list[Any], demo_model: Any, demo_model_forms: Any
) -> None:
    truth = seed(engine, held_out_digits, 5)
    description = engine.run({"mode": "score"}, timeout=300)
    assert description["status"] == "FAILED"
    assert description["error"] == "ModelError"
    assert "no model is serving, so nothing was listed or marked" in description["cause"]
    assert failed_markers(engine) == [] and failures_of(engine, description["name"]) == {}

    publish_model(engine, demo_model, demo_model_forms)
    second = engine.run({"mode": "score"}, timeout=600)  # the nightly run after the model, no replay
    assert second["status"] == "SUCCEEDED", second
    assert output_of(second)["images_scored"] == len(truth)
    assert len(counted_rows(engine)) == len(truth) and stored_counts(engine) == recount(engine)


def test_a_prefix_outside_incoming_is_refused_by_the_step_and_by_the_cli(engine: Any) -> None:
    from operate.operations import start_run
    from operate.targets import TargetError

    description = engine.run({"mode": "score", "prefix": "camera-1/"}, timeout=120)
    assert description["status"] == "FAILED"
    assert description["error"] == "BadRecord"
    assert "prefix 'camera-1/' is outside 'incoming/'" in description["cause"]
    with pytest.raises(TargetError, match="--prefix 'camera-1/' is outside 'incoming/'"):
        start_run(engine.target(), "score", prefix="camera-1/")
