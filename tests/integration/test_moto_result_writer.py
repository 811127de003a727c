"""moto patch 14 (engine/moto_patches/stepfunctions.py): a Distributed Map's ResultWriter takes its bucket and prefix
from paths into the Map state's input, as in AWS, and its output stays small whatever the item count."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DEFINITION = {
    "StartAt": "Fan",
    "States": {
        "Fan": {
            "Type": "Map",
            "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                           "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.key"}},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                              "StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": True}}},
            "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
                             "Parameters": {"Bucket.$": "$.bucket", "Prefix.$": "$.prefix"}},
            "ResultPath": "$.fan",
            "End": True,
        }
    },
}


def test_the_result_writer_reads_its_paths_from_the_state_input(engine: Any) -> None:
    s3, sfn = engine.client("s3"), engine.client("stepfunctions")
    bucket = engine.config.bucket
    s3.put_object(Bucket=bucket, Key="runs/t/items.json", Body=json.dumps([{"n": n} for n in range(50)]).encode())
    arn = sfn.create_state_machine(name="writer", definition=json.dumps(DEFINITION),
                                   roleArn="arn:aws:iam::123456789012:role/writer")["stateMachineArn"]
    run_input = {"bucket": bucket, "key": "runs/t/items.json", "prefix": "runs/t/results"}
    execution = sfn.start_execution(stateMachineArn=arn, name="w1", input=json.dumps(run_input))["executionArn"]
    description = engine.wait(execution, timeout=60)
    assert description["status"] == "SUCCEEDED", description
    output = json.loads(description["output"])
    details = output["fan"]["ResultWriterDetails"]
    assert details["Bucket"] == bucket and details["Key"].startswith("runs/t/results/")
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=details["Key"])["Body"].read())
    assert manifest["MapRunArn"] == output["fan"]["MapRunArn"]
    assert len(description["output"]) < 1024  # 50 items' results are not in the state output
