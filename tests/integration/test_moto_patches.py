"""The embedded engine's DynamoDB fixes keep DynamoDB's semantics: a cancelled transaction
changes nothing, a committed one changes exactly its items."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from contract.resource_spec import STATES_HISTORY_EVENTS
from tests.integration.small_machines import run_small_machine

pytestmark = pytest.mark.integration


def put(table: str, key: str, **extra: str) -> dict[str, Any]:
    item = {"image_id": {"S": key}, "sk": {"S": "MODEL#v1"}, **{k: {"S": v} for k, v in extra.items()}}
    return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(image_id)"}}


def add(table: str, day: str, n: int) -> dict[str, Any]:
    return {"Update": {"TableName": table, "Key": {"pk": {"S": day}, "sk": {"S": "cat"}},
                       "UpdateExpression": "ADD #n :n", "ExpressionAttributeNames": {"#n": "count"},
                       "ExpressionAttributeValues": {":n": {"N": str(n)}}}}


def snapshot(client: Any, table: str) -> list[dict[str, Any]]:
    return sorted(client.scan(TableName=table)["Items"], key=repr)


def test_a_cancelled_transaction_rolls_back_puts_and_updates(engine: Any) -> None:
    client = engine.client("dynamodb")
    predictions, counts = engine.predictions_table, engine.counts_table
    client.transact_write_items(TransactItems=[put(predictions, "a", note="first"), add(counts, "d", 1)])
    before = (snapshot(client, predictions), snapshot(client, counts))
    with pytest.raises(ClientError, match="TransactionCanceled"):
        client.transact_write_items(TransactItems=[
            put(predictions, "b"), put(predictions, "c"), add(counts, "d", 5),
            put(predictions, "a", note="second"),  # fails its condition: nothing may stay
        ])
    assert (snapshot(client, predictions), snapshot(client, counts)) == before


def test_a_committed_transaction_writes_exactly_its_items(engine: Any) -> None:
    client = engine.client("dynamodb")
    predictions, counts = engine.predictions_table, engine.counts_table
    client.transact_write_items(TransactItems=[put(predictions, "a"), add(counts, "d", 1)])
    client.transact_write_items(TransactItems=[put(predictions, "b"), put(predictions, "c"), add(counts, "d", 2)])
    assert sorted(i["image_id"]["S"] for i in snapshot(client, predictions)) == ["a", "b", "c"]
    assert snapshot(client, counts)[0]["count"] == {"N": "3"}



def test_map_runs_of_an_execution_that_is_just_starting(scoring_engine: Any) -> None:
    """moto's ListMapRuns and DescribeMapRun fail while an execution's environment is being built;
    patched, a starting run lists no Map Run (as in AWS) and does not hide other runs' Map Runs."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    from tests.conftest import png_bytes, upload

    engine = scoring_engine
    upload(engine, "incoming/one.png", png_bytes())
    scored = engine.run({"mode": "score"}, name="scored-run")
    idle = engine.run({"mode": "score"}, name="idle-run")  # nothing new: it starts no Map Run
    sfn = engine.client("stepfunctions")
    (map_run,) = sfn.list_map_runs(executionArn=scored["executionArn"])["mapRuns"]

    backend = stepfunctions_parser_backends[engine.config.account][engine.config.region]
    (starting,) = [e for e in backend._get_executions() if e.name == "idle-run"]
    built, starting.exec_worker.env = starting.exec_worker.env, None  # as in the first moments of a run
    try:
        assert sfn.list_map_runs(executionArn=idle["executionArn"])["mapRuns"] == []
        described = sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])
        assert described["status"] == "SUCCEEDED" and described["itemCounts"]["total"] == 1
    finally:
        starting.exec_worker.env = built


def test_an_execution_fails_once_its_history_reaches_the_quota(engine: Any) -> None:
    """Fix 21: AWS fails a STANDARD execution at 25,000 history events (here lowered to 40)."""
    from engine import moto_patches

    loop = {"StartAt": "Count", "States": {
        "Count": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.n, 1)"}, "Next": "Again"},
        "Again": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericLessThan": 15, "Next": "Count"}],
                  "Default": "Done"},
        "Done": {"Type": "Succeed"}}}
    moto_patches.limits.history_events = 40
    try:
        failed = run_small_machine(engine, loop, {"n": 0}, timeout=60)  # 15 rounds of 4 events: 60 and more
        short = run_small_machine(engine, loop, {"n": 8}, timeout=60)  # 7 rounds: 28 and more
    finally:
        moto_patches.limits.history_events = STATES_HISTORY_EVENTS
    assert failed["status"] == "FAILED" and failed["error"] == "States.Runtime", failed
    assert "history reached 40 events" in failed["cause"]
    assert short["status"] == "SUCCEEDED", short


def test_a_start_execution_task_starts_the_execution_it_names(engine: Any) -> None:
    """Fix 22: the task's StateMachineArn, Name and Input reach StartExecution; its StartDate is text."""
    machine = {"StartAt": "Go", "States": {
        "Go": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 0, "Next": "Done"}],
               "Default": "Again"},
        "Again": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution", "End": True,
                  "Parameters": {"StateMachineArn.$": "$$.StateMachine.Id", "Name": "next-part", "Input": {"n": 1}}},
        "Done": {"Type": "Succeed"}}}
    first = run_small_machine(engine, machine, {"n": 0}, timeout=60)
    assert first["status"] == "SUCCEEDED", first
    started = json.loads(first["output"])
    assert started["ExecutionArn"].endswith(":next-part") and isinstance(started["StartDate"], str)
    child = engine.wait(started["ExecutionArn"], timeout=60)
    assert child["status"] == "SUCCEEDED" and json.loads(child["input"])["n"] == 1
