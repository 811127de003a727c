"""The one definition file: placeholders, rendering, and the one local adaptation."""

from __future__ import annotations

import json

import pytest

from contract.resource_spec import DEFINITION_PARAMETERS, FUNCTIONS, function_arn_placeholder
from workflow.definition import DefinitionError, adapt_for_local_engine, definition_text, placeholders, render

pytestmark = pytest.mark.unit

LAMBDA_RETRY_ERRORS = {
    "Lambda.ServiceException", "Lambda.AWSLambdaException", "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException", "Lambda.TooManyRequestsException",
}


def substitutions() -> dict[str, str]:
    values = {function_arn_placeholder(f): f"arn:aws:lambda:us-east-1:1:function:{f}" for f in FUNCTIONS}
    return {**values, **{name: f"value-of-{name}" for name in DEFINITION_PARAMETERS}}


def test_the_file_is_json_and_its_placeholders_are_the_function_arns() -> None:
    json.loads(definition_text())
    assert placeholders() == {function_arn_placeholder(f) for f in FUNCTIONS} | set(DEFINITION_PARAMETERS)


def test_render_fills_every_placeholder_and_refuses_a_missing_one() -> None:
    rendered = json.dumps(render(substitutions()))
    assert "${" not in rendered
    partial = substitutions()
    partial.pop("ClassifyBatchFunctionArn")
    with pytest.raises(DefinitionError, match="ClassifyBatchFunctionArn"):
        render(partial)


def all_states(states: dict) -> dict:
    found = dict(states)
    for state in states.values():
        if "ItemProcessor" in state:
            found.update(all_states(state["ItemProcessor"]["States"]))
    return found


def test_every_lambda_task_retries_the_lambda_service_errors() -> None:
    states = all_states(render(substitutions())["States"])
    tasks = {n: s for n, s in states.items() if s.get("Resource") == "arn:aws:states:::lambda:invoke"}
    assert set(tasks) >= set(FUNCTIONS)
    for name, task in tasks.items():
        retried = {e for r in task["Retry"] if r.get("MaxAttempts", 3) > 0 for e in r["ErrorEquals"]}
        assert LAMBDA_RETRY_ERRORS <= retried, name


def test_the_classify_batch_failure_is_caught_and_recorded() -> None:
    classify = all_states(render(substitutions())["States"])["ClassifyBatch"]
    assert classify["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    assert classify["Catch"][0]["Next"] == "RecordBatchFailure"


def test_local_adaptation_changes_only_the_child_execution_type() -> None:
    deployed = render(substitutions())
    json.dumps(deployed)
    local = adapt_for_local_engine(deployed)
    classify_deployed, classify_local = deployed["States"]["Classify"], local["States"]["Classify"]
    assert classify_deployed["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "EXPRESS"
    assert classify_local["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
    classify_local["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "EXPRESS"
    assert local == deployed
