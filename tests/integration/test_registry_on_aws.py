"""Registry changes against a deployed stack (on moto): the stack's outputs name its registry, and each
change is recorded with the caller's ARN from STS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contract.resource_spec import TABLES

pytestmark = pytest.mark.integration


def test_a_change_on_a_deployed_stack_names_the_callers_arn(patched_moto: None, tmp_path: Path) -> None:
    import boto3

    from lambdas.model_registry import ModelRegistry
    from operate.identity import caller_identity
    from operate.models import approve_version, model_history, promote_version
    from operate.targets import aws_target

    outputs: dict[str, Any] = {"StateMachineArn": {"Value": "arn:aws:states:us-east-1:123456789012:stateMachine:x"},
                               "BucketName": {"Value": "prod-images"},
                               "ModelRegistryAB12": {"Value": "s3://prod-images/models/moths"},
                               **{f"{t.logical_id}Name": {"Value": t.logical_id.lower()} for t in TABLES}}
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
    boto3.client("cloudformation").create_stack(StackName="prod", TemplateBody=json.dumps(template))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="prod-images")
    (tmp_path / "model.keras").write_bytes(b"weights")
    for name in ("moths", "digits"):  # two models: the stack's output says which one it serves
        registry = ModelRegistry(f"s3://prod-images/models/{name}", s3_client=s3)
        registry.publish("v1", tmp_path / "model.keras", ["a", "b"], {})
    ModelRegistry("s3://prod-images/models/moths", s3_client=s3).request_approval("v1", by="ci")

    target = aws_target("prod", region="us-east-1")
    arn = caller_identity(target)
    assert arn.startswith("arn:aws:") and ":123456789012:" in arn
    assert approve_version(target, "v1")["by"] == arn
    assert promote_version(target, "v1", reason="reviewed")["by"] == arn
    assert [(e["model"], e["event"], e["by"]) for e in model_history(target)] == [
        ("moths", "pending", "ci"), ("moths", "approved", arn), ("moths", "promoted", arn)]
    assert ModelRegistry("s3://prod-images/models/moths", s3_client=s3).current_version() == "v1"
