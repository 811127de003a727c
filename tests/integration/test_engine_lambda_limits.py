"""The Lambda bridge holds each function to Lambda's limits as deployed: its timeout (Sandbox.Timedout),
its memory (in the context; over 10,240 MB refused), and the 6 MB request and response."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from contract.resource_spec import FUNCTION_LIMITS, FunctionLimits
from engine import lambda_bridge
from engine.local_engine import LocalConfig, LocalEngine
from tests.integration import bridge_handlers
from tests.integration.small_machines import run_small_machine

pytestmark = pytest.mark.integration

TIME_SCALE = 0.01  # a 300 s timeout becomes 3 s


@pytest.fixture
def scaled_engine() -> Iterator[LocalEngine]:
    with LocalEngine(LocalConfig(name="scaled", time_scale=TIME_SCALE)) as running:
        lambda_bridge.add(lambda_bridge.FunctionSpec(
            "slow", "tests.integration.bridge_handlers.sleep_then_report", memory_mb=1769, timeout_seconds=300))
        lambda_bridge.add(lambda_bridge.FunctionSpec("bytes", "tests.integration.bridge_handlers.return_bytes"))
        lambda_bridge.add(lambda_bridge.FunctionSpec("counted", "tests.integration.bridge_handlers.count_calls"))
        yield running


def invoke(engine: LocalEngine, function: str, payload: Any) -> tuple[dict[str, Any], Any]:
    lambda_client = boto3.client("lambda", region_name=engine.config.region, endpoint_url=engine.endpoint_url)
    response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    return response, json.loads(response["Payload"].read())


def test_a_handler_past_its_timeout_is_answered_sandbox_timedout(scaled_engine: LocalEngine) -> None:
    started = time.monotonic()
    response, payload = invoke(scaled_engine, "slow", {"seconds": 8})
    waited = time.monotonic() - started
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert payload["errorMessage"].endswith("Task timed out after 300.00 seconds")  # the deployed value
    assert 2.9 <= waited < 6  # answered at the (scaled) timeout, not when the handler ends


def test_a_handler_within_its_timeout_gets_its_memory_and_remaining_time(scaled_engine: LocalEngine) -> None:
    response, payload = invoke(scaled_engine, "slow", {"seconds": 0.2})
    assert "FunctionError" not in response
    assert payload["memory_limit_in_mb"] == 1769
    assert 0 < payload["remaining_ms"] <= 300 * 1000 * TIME_SCALE - 150


def test_retry_and_catch_see_sandbox_timedout_as_in_aws(scaled_engine: LocalEngine) -> None:
    definition = {
        "StartAt": "Slow",
        "States": {
            "Slow": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "slow", "Payload": {"seconds": 8}},
                "Retry": [{"ErrorEquals": ["Sandbox.Timedout"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["Sandbox.Timedout"], "ResultPath": "$.error", "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Pass", "End": True},
        },
    }
    result = run_small_machine(scaled_engine, definition)
    assert result["status"] == "SUCCEEDED", result
    error = json.loads(result["output"])["error"]
    assert error["Error"] == "Sandbox.Timedout"
    assert "Task timed out after 300.00 seconds" in error["Cause"]
    slow_calls = [seconds for name, seconds, failed in lambda_bridge.invocations() if name == "slow" and failed]
    assert len(slow_calls) == 2  # the first attempt and one retry, each ended at the timeout


def test_a_response_over_6_mb_fails_the_invocation_as_lambda_does(scaled_engine: LocalEngine) -> None:
    response, payload = invoke(scaled_engine, "bytes", {"size": 6 * 1024 * 1024 + 200})
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Function.ResponseSizeTooLarge"
    assert payload["errorMessage"] == "Response payload size exceeded maximum allowed payload size (6291556 bytes)."
    response, payload = invoke(scaled_engine, "bytes", {"size": 6 * 1024 * 1024 - 100})
    assert "FunctionError" not in response and len(payload) == 6 * 1024 * 1024 - 100


def test_a_request_over_6_mb_is_refused_before_the_handler_runs(scaled_engine: LocalEngine) -> None:
    bridge_handlers.CALLS.clear()
    with pytest.raises(ClientError) as refused:
        invoke(scaled_engine, "counted", {"pad": "x" * (6 * 1024 * 1024)})
    assert refused.value.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert bridge_handlers.CALLS == []
    assert invoke(scaled_engine, "counted", {"pad": "x" * 1000})[1] == {"calls": 1}


def test_a_task_result_over_256_kib_fails_the_state_with_data_limit_exceeded(scaled_engine: LocalEngine) -> None:
    definition = {"StartAt": "Big", "States": {"Big": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "bytes", "Payload": {"size": 300_000}}, "End": True}}}
    result = run_small_machine(scaled_engine, definition)
    assert result["status"] == "FAILED"
    assert result["error"] == "States.DataLimitExceeded"


def test_by_default_the_engine_applies_the_deployed_timeouts_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCHINFER_ENGINE_TIME_SCALE", raising=False)
    engine = LocalEngine(LocalConfig())
    assert engine.config.time_scale == 1.0
    deployed = {spec.name.removeprefix("batchinfer-local-"): (spec.memory_mb, spec.timeout_seconds)
                for spec in engine.function_specs}
    assert deployed == {name: (limits.memory_mb, limits.timeout_seconds) for name, limits in FUNCTION_LIMITS.items()}
    assert deployed["ClassifyBatch"] == (1769, 60)
    monkeypatch.setenv("BATCHINFER_ENGINE_TIME_SCALE", "0.5")
    assert LocalConfig().time_scale == 0.5


def test_a_function_configured_above_10240_mb_is_refused() -> None:
    limits = {**FUNCTION_LIMITS, "ClassifyBatch": FunctionLimits(memory_mb=10241, timeout_seconds=300)}
    with pytest.raises(lambda_bridge.FunctionConfigError, match="ClassifyBatch: memory 10241 MB is outside"):
        LocalEngine(LocalConfig(function_limits=limits))
    limits = {**FUNCTION_LIMITS, "ClassifyBatch": FunctionLimits(memory_mb=3008, timeout_seconds=901)}
    with pytest.raises(lambda_bridge.FunctionConfigError, match="timeout 901 s"):
        LocalEngine(LocalConfig(function_limits=limits))
