"""A Distributed Map's children on the embedded engine: an EXPRESS child ends at 5 minutes (time scaled) as in
AWS although moto runs it as STANDARD, and failed or timed-out children count against the tolerated failures."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine import lambda_bridge
from engine.local_engine import LocalConfig, LocalEngine, maps_with_express_children
from tests.integration.small_machines import distributed_map_of_tasks, map_run_of, put_items, run_small_machine
from workflow.definition import render

pytestmark = pytest.mark.integration

TIME_SCALE = 0.01  # EXPRESS's 300 s become 3 s


@pytest.fixture
def scaled_engine() -> Iterator[LocalEngine]:
    with LocalEngine(LocalConfig(name="children", time_scale=TIME_SCALE)) as running:
        handler = "tests.integration.bridge_handlers.sleep_then_report"
        # 900 s (9 s scaled): the function itself would not time out before the child does.
        lambda_bridge.add(lambda_bridge.FunctionSpec("slow", handler, timeout_seconds=900))
        # 200 s (2 s scaled): each attempt times out, and its retries run past the child's limit.
        lambda_bridge.add(lambda_bridge.FunctionSpec("slow-200", handler, timeout_seconds=200))
        yield running


def slow_task(function: str, seconds: float, **fields: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "TimeoutSeconds": 900,
            "Parameters": {"FunctionName": function, "Payload": {"seconds": seconds}}, **fields}


def test_an_express_child_running_past_5_minutes_times_out_and_fails_the_map(scaled_engine: LocalEngine) -> None:
    put_items(scaled_engine, "two.json", [{"n": 1}, {"n": 2}])
    definition = distributed_map_of_tasks(scaled_engine.config.bucket, "two.json", "EXPRESS", slow_task("slow", 6))
    started = time.monotonic()
    result = run_small_machine(scaled_engine, definition)
    assert time.monotonic() - started < 6  # ended at the child's limit (3 s), not when the handlers returned
    assert result["status"] == "FAILED"
    assert result["error"] == "States.ExceedToleratedFailureThreshold"
    assert "2 of 2 child executions failed or timed out" in result["cause"]
    counts = map_run_of(scaled_engine, result["executionArn"])["itemCounts"]
    assert (counts["timedOut"], counts["succeeded"], counts["failed"]) == (2, 0, 0)


def test_a_childs_retries_count_inside_its_5_minutes(scaled_engine: LocalEngine) -> None:
    # Each attempt times out at 200 s; three attempts and their backoff cannot fit in 300 s.
    put_items(scaled_engine, "one.json", [{"n": 1}])
    retried = slow_task("slow-200", 5, Retry=[{"ErrorEquals": ["Sandbox.Timedout"], "IntervalSeconds": 1,
                                                "MaxAttempts": 2}],
                        Catch=[{"ErrorEquals": ["States.ALL"], "Next": "Recorded"}])
    definition = distributed_map_of_tasks(scaled_engine.config.bucket, "one.json", "EXPRESS", retried,
                                          ToleratedFailurePercentage=100)
    definition["States"]["EachItem"]["ItemProcessor"]["States"]["Recorded"] = {"Type": "Succeed"}
    result = run_small_machine(scaled_engine, definition)
    assert result["status"] == "SUCCEEDED", result  # tolerated: the Map goes on
    counts = map_run_of(scaled_engine, result["executionArn"])["itemCounts"]
    assert (counts["timedOut"], counts["succeeded"]) == (1, 0)  # the Catch never ran: the child had ended


def test_a_standard_child_is_not_held_to_5_minutes(scaled_engine: LocalEngine) -> None:
    put_items(scaled_engine, "one.json", [{"n": 1}])
    definition = distributed_map_of_tasks(scaled_engine.config.bucket, "one.json", "STANDARD", slow_task("slow", 4))
    result = run_small_machine(scaled_engine, definition)
    assert result["status"] == "SUCCEEDED", result


def test_the_deployed_definition_keeps_express_children_and_the_engine_knows_them(scaled_engine: LocalEngine) -> None:
    assert maps_with_express_children(render(scaled_engine.substitutions())) == {"Classify"}


def failing_children(**map_fields: Any) -> dict[str, Any]:
    """Ten children; those of items 0 and 5 fail (20%)."""
    task = {"Type": "Choice", "Choices": [{"Or": [{"Variable": "$.n", "NumericEquals": 0},
                                                  {"Variable": "$.n", "NumericEquals": 5}], "Next": "Broken"}],
            "Default": "Fine"}
    definition = distributed_map_of_tasks("", "", "STANDARD", task, **map_fields)
    states = definition["States"]["EachItem"]["ItemProcessor"]["States"]
    states["Work"].pop("End")
    states["Broken"] = {"Type": "Fail", "Error": "BrokenItem", "Cause": "this item cannot be processed"}
    states["Fine"] = {"Type": "Succeed"}
    return definition


def run_failing_children(engine: LocalEngine, **map_fields: Any) -> dict[str, Any]:
    put_items(engine, "ten.json", [{"n": n} for n in range(10)])
    definition = failing_children(**map_fields)
    definition["States"]["EachItem"]["ItemReader"]["Parameters"] = {"Bucket": engine.config.bucket,
                                                                     "Key": "ten.json"}
    return dict(run_small_machine(engine, definition))


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        ({}, "FAILED"),  # AWS's default: no failed child is tolerated
        ({"ToleratedFailureCount": 1}, "FAILED"),
        ({"ToleratedFailureCount": 2}, "SUCCEEDED"),
        ({"ToleratedFailurePercentage": 19}, "FAILED"),
        ({"ToleratedFailurePercentage": 20}, "SUCCEEDED"),
        ({"ToleratedFailureCount": 5, "ToleratedFailurePercentage": 10}, "FAILED"),  # either one exceeded
    ],
)
def test_failed_children_count_against_the_tolerated_failure_threshold(
    engine: LocalEngine, tolerance: dict[str, Any], status: str
) -> None:
    result = run_failing_children(engine, **tolerance)
    assert result["status"] == status, result
    if status == "FAILED":
        assert result["error"] == "States.ExceedToleratedFailureThreshold"
        assert "2 of 10 child executions failed or timed out" in result["cause"]
    counts = map_run_of(engine, result["executionArn"])["itemCounts"]
    assert (counts["failed"], counts["succeeded"]) == (2, 8)


def test_a_caught_threshold_lets_the_run_go_on(engine: LocalEngine) -> None:
    definition = failing_children(Catch=[{"ErrorEquals": ["States.ExceedToleratedFailureThreshold"],
                                          "ResultPath": "$.map_error", "Next": "AfterMap"}])
    definition["States"]["AfterMap"] = {"Type": "Pass", "End": True}
    put_items(engine, "ten.json", [{"n": n} for n in range(10)])
    definition["States"]["EachItem"]["ItemReader"]["Parameters"] = {"Bucket": engine.config.bucket,
                                                                     "Key": "ten.json"}
    result = run_small_machine(engine, definition)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["map_error"]["Error"] == "States.ExceedToleratedFailureThreshold"


def test_a_result_writer_writes_the_succeeded_and_failed_children_as_aws_does(engine: LocalEngine) -> None:
    definition = failing_children(ToleratedFailurePercentage=100, ResultWriter={
        "Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": engine.config.bucket, "Prefix": "map-results"}})
    definition["States"]["EachItem"]["ResultPath"] = "$.written"
    put_items(engine, "ten.json", [{"n": n} for n in range(10)])
    definition["States"]["EachItem"]["ItemReader"]["Parameters"] = {"Bucket": engine.config.bucket,
                                                                     "Key": "ten.json"}
    result = run_small_machine(engine, definition)
    assert result["status"] == "SUCCEEDED", result
    details = json.loads(result["output"])["written"]["ResultWriterDetails"]
    s3 = engine.client("s3")

    def read(key: str) -> Any:
        return json.loads(s3.get_object(Bucket=details["Bucket"], Key=key)["Body"].read())

    manifest = read(details["Key"])
    assert [f["Key"].rsplit("/", 1)[1] for f in manifest["ResultFiles"]["SUCCEEDED"]] == ["SUCCEEDED_0.json"]
    assert [f["Key"].rsplit("/", 1)[1] for f in manifest["ResultFiles"]["FAILED"]] == ["FAILED_0.json"]
    succeeded = read(manifest["ResultFiles"]["SUCCEEDED"][0]["Key"])
    failed = read(manifest["ResultFiles"]["FAILED"][0]["Key"])
    assert sorted(json.loads(e["Input"])["n"] for e in succeeded) == [1, 2, 3, 4, 6, 7, 8, 9]
    assert {e["Status"] for e in succeeded} == {"SUCCEEDED"}
    assert sorted(json.loads(e["Input"])["n"] for e in failed) == [0, 5]
    assert {(e["Status"], e["Error"], e["Cause"]) for e in failed} == {
        ("FAILED", "BrokenItem", "this item cannot be processed")}
