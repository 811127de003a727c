"""Small state machines run on the embedded engine, for tests that pin one behaviour of the engine."""

from __future__ import annotations

import json
import uuid
from typing import Any


def distributed_map_of_passes(bucket: str, key: str, max_concurrency: int) -> dict[str, Any]:
    """A Distributed Map over a JSON array in S3 whose children are a single Pass state."""
    return {
        "StartAt": "EachItem",
        "States": {
            "EachItem": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket": bucket, "Key": key},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Echo",
                    "States": {"Echo": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "End": True}},
                },
                "MaxConcurrency": max_concurrency,
                "ResultSelector": {"items.$": "States.ArrayLength($)"},
                "End": True,
            }
        },
    }


def run_small_machine(engine: Any, definition: dict[str, Any], run_input: Any = None, timeout: float = 600) -> Any:
    sfn = engine.client("stepfunctions")
    arn = engine.create_state_machine(f"small-{uuid.uuid4().hex[:8]}", definition)
    execution = sfn.start_execution(stateMachineArn=arn, name=uuid.uuid4().hex, input=json.dumps(run_input or {}))
    return engine.wait(execution["executionArn"], timeout=timeout)


def distributed_map_of_padded_results(
    bucket: str, key: str, pad_bytes: int, result_writer_prefix: str | None = None
) -> dict[str, Any]:
    """A Distributed Map whose children each return about `pad_bytes`; ResultPath null, as in the definition."""
    definition = distributed_map_of_passes(bucket, key, max_concurrency=2)
    map_state = definition["States"]["EachItem"]
    map_state["ItemProcessor"]["States"]["Echo"]["Parameters"] = {"n.$": "$.n", "pad": "x" * pad_bytes}
    del map_state["ResultSelector"]
    map_state["ResultPath"] = None
    if result_writer_prefix is not None:
        map_state["ResultWriter"] = {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": bucket, "Prefix": result_writer_prefix},
        }
    return definition


def pass_with_parameters(parameters: dict[str, Any], catch_all: bool = False) -> dict[str, Any]:
    """One Pass state; with `catch_all`, a Catch on States.ALL that would turn any catchable error into success."""
    state: dict[str, Any] = {"Type": "Pass", "Parameters": parameters, "End": True}
    if catch_all:
        state = {
            "Type": "Parallel",
            "Branches": [{"StartAt": "Shape", "States": {"Shape": state}}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}],
            "End": True,
        }
    return {"StartAt": "Step", "States": {"Step": state, "Caught": {"Type": "Succeed"}}}


def distributed_map_of_tasks(bucket: str, key: str, child_type: str, task: dict[str, Any],
                             **map_fields: Any) -> dict[str, Any]:
    """A Distributed Map whose children (EXPRESS or STANDARD) run one Task state."""
    return {
        "StartAt": "EachItem",
        "States": {
            "EachItem": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket": bucket, "Key": key},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": child_type},
                    "StartAt": "Work",
                    "States": {"Work": {**task, "End": True}},
                },
                "MaxConcurrency": 4,
                "ResultPath": None,
                "End": True,
                **map_fields,
            }
        },
    }


def put_items(engine: Any, key: str, items: list[Any]) -> None:
    engine.client("s3").put_object(Bucket=engine.config.bucket, Key=key, Body=json.dumps(items).encode())


def map_run_of(engine: Any, execution_arn: str) -> dict[str, Any]:
    sfn = engine.client("stepfunctions")
    map_run_arn = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"][0]["mapRunArn"]
    return dict(sfn.describe_map_run(mapRunArn=map_run_arn))
