"""The embedded engine enforces Step Functions' 256 KiB payload quota as AWS does: the execution input, a
state's input after Parameters, and a Map's gathered result; `States.DataLimitExceeded` is terminal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.small_machines import (
    distributed_map_of_padded_results,
    pass_with_parameters,
    run_small_machine,
)

pytestmark = pytest.mark.integration

QUOTA = 256 * 1024


def test_an_execution_input_over_256_kib_is_refused_by_start_execution(engine: Any) -> None:
    sfn = engine.client("stepfunctions")
    with pytest.raises(ClientError) as refused:
        sfn.start_execution(stateMachineArn=engine.state_machine_arn, name="too-big",
                            input=json.dumps({"mode": "score", "pad": "x" * QUOTA}))
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "262144" in refused.value.response["Error"]["Message"]
    assert sfn.list_executions(stateMachineArn=engine.state_machine_arn)["executions"] == []


def test_an_input_just_under_the_quota_runs(engine: Any) -> None:
    pad = "x" * (QUOTA - 100)
    result = run_small_machine(engine, pass_with_parameters({"size.$": "States.ArrayLength(States.Array($.pad))"}),
                               {"pad": pad})
    assert result["status"] == "SUCCEEDED", result


def test_a_state_input_over_256_kib_after_parameters_fails_the_run_even_under_a_catch_all(engine: Any) -> None:
    doubled = pass_with_parameters({"first.$": "$.pad", "second.$": "$.pad"}, catch_all=True)
    result = run_small_machine(engine, doubled, {"pad": "x" * 150_000})
    assert result["status"] == "FAILED"
    assert result["error"] == "States.DataLimitExceeded"  # terminal: the Catch on States.ALL does not see it
    assert "payload quota" in result["cause"]


def test_a_distributed_map_gathering_over_256_kib_of_results_fails(engine: Any) -> None:
    # 300 children × ~1 KB: the Map's result is over the quota although ResultPath discards it.
    engine.client("s3").put_object(Bucket=engine.config.bucket, Key="items.json",
                                   Body=json.dumps([{"n": i} for i in range(300)]).encode())
    result = run_small_machine(engine, distributed_map_of_padded_results(engine.config.bucket, "items.json", 1000))
    assert result["status"] == "FAILED"
    assert result["error"] == "States.DataLimitExceeded"
    assert "The result of Map state 'EachItem'" in result["cause"]


def test_the_same_map_with_a_result_writer_succeeds(engine: Any) -> None:
    engine.client("s3").put_object(Bucket=engine.config.bucket, Key="items.json",
                                   Body=json.dumps([{"n": i} for i in range(300)]).encode())
    definition = distributed_map_of_padded_results(engine.config.bucket, "items.json", 1000, "map-results/")
    result = run_small_machine(engine, definition)
    assert result["status"] == "SUCCEEDED", result
