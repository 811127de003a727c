"""Least privilege: no wildcard actions, no AWS managed policies, exact grants per function."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.infra


def _statements(synthesized: Any) -> dict[str, list[dict[str, Any]]]:
    """Allow statements of every role, by role logical id (inline and attached policies)."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    for role_id, role in synthesized.resources("AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            by_role.setdefault(role_id, []).extend(policy["PolicyDocument"]["Statement"])
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        for role in policy["Properties"]["Roles"]:
            by_role.setdefault(role["Ref"], []).extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return by_role


def _actions(statements: list[dict[str, Any]]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


def _role_of(synthesized: Any, function_name: str) -> str:
    [role] = [
        r["Properties"]["Role"]["Fn::GetAtt"][0]
        for r in synthesized.resources("AWS::Lambda::Function").values()
        if r["Properties"]["FunctionName"] == f"batchinfer-dev-{function_name}"
    ]
    return str(role)


def test_no_role_allows_a_wildcard_action(synthesized: Any) -> None:
    for role, statements in _statements(synthesized).items():
        for action in _actions(statements):
            assert action != "*", role
            assert not action.endswith(":*"), f"{role} allows {action}"


def test_no_role_uses_an_aws_managed_policy(synthesized: Any) -> None:
    for role_id, role in synthesized.resources("AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), role_id


LOGGING_AND_TRACING = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


@pytest.mark.parametrize(
    ("function", "actions"),
    [
        (
            "ListNewVersions",
            {
                "s3:ListBucketVersions",
                "s3:ListBucket",
                "s3:GetObjectVersion",
                "s3:PutObject",
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
            },
        ),
        (
            "ClassifyBatch",
            {
                "s3:GetObjectVersion",
                "s3:GetObject",
                "s3:ListBucket",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
            },
        ),
        (
            "BuildReplayManifest",
            {"dynamodb:Query", "s3:ListBucket", "s3:GetObject", "s3:PutObject", "dynamodb:BatchGetItem"},
        ),
        ("RecordBatchFailure", {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:PutItem"}),
        ("AggregateDailyCounts", {"dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"}),
    ],
)
def test_each_function_may_make_exactly_the_calls_its_code_makes(
    synthesized: Any, function: str, actions: set[str]
) -> None:
    statements = _statements(synthesized)[_role_of(synthesized, function)]
    assert _actions(statements) == actions | LOGGING_AND_TRACING


def test_object_access_is_limited_to_its_prefix(synthesized: Any) -> None:
    for role, statements in _statements(synthesized).items():
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a in ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject") for a in actions):
                resource = str(statement["Resource"])
                assert any(p in resource for p in ("/incoming/*", "/runs/*", "/models/*")), role


def test_the_state_machine_invokes_exactly_the_functions_of_the_spec(synthesized: Any) -> None:
    [machine] = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = _statements(synthesized)[role]
    [invoke] = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    functions = {r["Fn::GetAtt"][0] for r in invoke["Resource"]}
    assert functions == set(synthesized.resources("AWS::Lambda::Function"))
    actions = _actions(statements)
    assert {"states:StartExecution", "states:DescribeExecution", "states:StopExecution", "s3:GetObject"} <= actions


def test_the_pipe_reads_its_queue_and_starts_the_state_machine_only(synthesized: Any) -> None:
    [pipe] = synthesized.resources("AWS::Pipes::Pipe").values()
    role = pipe["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = _statements(synthesized)[role]
    assert _actions(statements) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "states:StartExecution",
    }
    [machine] = synthesized.resources("AWS::StepFunctions::StateMachine")
    [start] = [s for s in statements if s["Action"] == "states:StartExecution"]
    assert start["Resource"] == {"Ref": machine}
