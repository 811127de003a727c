"""Least privilege: no wildcard actions, no AWS managed policies, exact grants per function."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import SAGEMAKER_CONTEXT, USER_HOOK_ARN

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
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "s3:ListBucket",
                "s3:GetObjectVersion",
                "s3:GetObject",  # the registry's pointer: no serving model, no run
                "s3:PutObject",
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:Query",
                "dynamodb:DescribeTable",  # the ledger's item count: about how many slices are left
            },
        ),
        (
            "ReconcileVersions",
            {
                "s3:ListBucketVersions",
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
            },
        ),
        (
            "ClassifyBatch",
            {
                "s3:GetObjectVersion",
                "s3:GetObject",
                "s3:ListBucket",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "dynamodb:BatchWriteItem",
                "s3:PutObject",  # the batch's result file
            },
        ),
        (
            "BuildReplayManifest",
            {"dynamodb:Query", "s3:ListBucket", "s3:GetObject", "s3:PutObject", "dynamodb:BatchGetItem"},
        ),
        ("RecordBatchFailure", {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:PutItem",
                                "dynamodb:Query"}),
        ("ReconcileBatches", {"s3:ListBucket", "s3:GetObject", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
                              "dynamodb:PutItem", "dynamodb:Query"}),
        ("AggregateDailyCounts", {"dynamodb:Query", "dynamodb:UpdateItem"}),
        ("WriteRunResults", {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                             "dynamodb:Query"}),
        (
            "CollectTrainingData",
            {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "dynamodb:GetItem", "dynamodb:Scan"},
        ),
        ("TrainingHook", {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}),
        ("EvaluateCandidate", {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}),
        ("PromoteIfBetter", {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "dynamodb:PutItem"}),
        (
            "PublishModel",
            {"s3:GetObject", "s3:PutObject", "s3:DeleteObjectVersion", "s3:ListBucket", "s3:ListBucketVersions"},
        ),
    ],
)
def test_each_function_may_make_exactly_the_calls_its_code_makes(
    synthesized: Any, function: str, actions: set[str]
) -> None:
    statements = _statements(synthesized)[_role_of(synthesized, function)]
    assert _actions(statements) == actions | LOGGING_AND_TRACING


def _grants(statements: list[dict[str, Any]]) -> dict[str, set[str]]:
    """{action: resources}, a resource written as its path in the images bucket where it is one."""
    grants: dict[str, set[str]] = {}
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            for resource in resources:
                grants.setdefault(action, set()).add(_path(resource))
    return grants


def _path(resource: Any) -> str:
    if resource == {"Fn::GetAtt": ["ImagesBucket", "Arn"]}:
        return "bucket"
    if isinstance(resource, dict) and "Fn::Join" in resource:
        parts = resource["Fn::Join"][1]
        if parts[0] == {"Fn::GetAtt": ["ImagesBucket", "Arn"]}:
            return "bucket" + "".join(str(p) for p in parts[1:])
        return "".join(p if isinstance(p, str) else "<" + str(p.get("Ref", p)) + ">" for p in parts)
    return str(resource)


@pytest.mark.parametrize(
    ("function", "objects"),
    [
        ("CollectTrainingData", {"s3:GetObject": {"bucket/models/*"}, "s3:PutObject": {"bucket/runs/*"}}),
        (
            "TrainingHook",
            {
                "s3:GetObject": {"bucket/labels/*", "bucket/models/*", "bucket/runs/*"},
                "s3:PutObject": {"bucket/models/*"},
            },
        ),
        (
            "EvaluateCandidate",
            {
                "s3:GetObject": {"bucket/labels/*", "bucket/models/*", "bucket/runs/*"},
                "s3:PutObject": {"bucket/models/*"},
            },
        ),
        (
            "PublishModel",
            {
                "s3:GetObject": {"bucket/labels/*", "bucket/models/*"},
                "s3:PutObject": {"bucket/models/*"},
            },
        ),
        # The pointer to the current version and one history object; it reads only its own registry.
        ("PromoteIfBetter", {"s3:GetObject": {"bucket/models/digits/*"},
                             "s3:PutObject": {"bucket/models/digits/current.json",
                                              "bucket/models/digits/_history/*"}}),
        # Scoring reads the pointer and the serving version's approval only to refuse a run that no
        # model can serve.
        ("ListNewVersions", {"s3:GetObject": {"bucket/models/digits/current.json",
                                              "bucket/models/digits/*/approval.json"},
                             "s3:PutObject": {"bucket/runs/*"}}),
        ("BuildReplayManifest", {"s3:GetObject": {"bucket/incoming/*", "bucket/models/digits/current.json",
                                                  "bucket/models/digits/*/approval.json"},
                                 "s3:PutObject": {"bucket/runs/*"}}),
        # The manifest and the ResultWriter's files; it writes only to DynamoDB.
        ("ReconcileBatches", {"s3:GetObject": {"bucket/runs/*"}}),
        # A batch's result file, and nothing else under runs/.
        ("ClassifyBatch", {"s3:GetObject": {"bucket/models/*"},
                           "s3:PutObject": {"bucket/runs/*/results/predictions/*"}}),
        # Reads the manifest; writes only result files and the Glue tables' index files.
        ("WriteRunResults", {"s3:GetObject": {"bucket/runs/*"},
                             "s3:PutObject": {"bucket/runs/*/results/*", "bucket/results-index/*"}}),
    ],
)
def test_each_function_reaches_only_its_objects(
    synthesized: Any, function: str, objects: dict[str, set[str]]
) -> None:
    grants = _grants(_statements(synthesized)[_role_of(synthesized, function)])
    assert {a: r for a, r in grants.items() if a in ("s3:GetObject", "s3:PutObject")} == objects


def test_object_access_is_limited_to_its_prefix(synthesized: Any, synthesized_sagemaker: Any) -> None:
    prefixes = ("/incoming/", "/runs/", "/models/", "/labels/", "/results-index/")
    for synth in (synthesized, synthesized_sagemaker):
        for role, statements in _statements(synth).items():
            for statement in statements:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(a in ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject") for a in actions):
                    resources = (
                        statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                    )
                    for resource in resources:
                        assert any(p in str(resource) for p in prefixes), role


def test_the_state_machine_invokes_exactly_the_functions_of_the_spec(synthesized: Any) -> None:
    [machine] = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = _statements(synthesized)[role]
    [invoke] = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    functions = {r["Fn::GetAtt"][0] for r in invoke["Resource"]}
    assert functions == set(synthesized.resources("AWS::Lambda::Function"))
    assert _actions(statements) == {
        "lambda:InvokeFunction",
        "s3:GetObject",  # the ItemReader's manifest
        "s3:PutObject",  # the ResultWriter's results, with the two multipart calls below
        "s3:ListMultipartUploadParts",
        "s3:AbortMultipartUpload",
        "states:StartExecution",
        "states:DescribeExecution",
        "states:StopExecution",
        "states:RedriveExecution",  # redriving a failed run redrives its Map Run's children
        "events:PutEvents",
        *STATE_MACHINE_LOGGING_AND_TRACING,
    }
    grants = _grants(statements)
    for action in ("s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"):
        assert grants[action] == {"bucket/runs/*"}, action


# CDK's grants for a state machine's log delivery and X-Ray tracing.
STATE_MACHINE_LOGGING_AND_TRACING = {
    "logs:CreateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:DescribeLogGroups",
    "logs:DescribeResourcePolicies",
    "logs:GetLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:UpdateLogDelivery",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:PutTelemetryRecords",
    "xray:PutTraceSegments",
}


def _state_machine_grants(synthesized: Any) -> dict[str, set[str]]:
    [machine] = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    return _grants(_statements(synthesized)[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]])


def test_the_state_machine_announces_retraining_outcomes_on_the_default_bus(synthesized: Any) -> None:
    grants = _state_machine_grants(synthesized)
    assert grants["events:PutEvents"] == {
        "arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:event-bus/default"
    }
    # Without the SageMaker hook, the state machine cannot start training jobs or pass roles.
    assert not any(a.startswith(("sagemaker:", "iam:")) for a in grants)


def test_with_the_sagemaker_hook_the_state_machine_runs_batchinfer_training_jobs_only(
    synthesized_sagemaker: Any,
) -> None:
    grants = _state_machine_grants(synthesized_sagemaker)
    jobs = {"arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:training-job/batchinfer-*"}
    for action in (
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:AddTags",
        "sagemaker:ListTags",  # the documented policy of the .sync integration has it
    ):
        assert grants[action] == jobs
    rule = {
        "arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:"
        "rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    }
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        assert grants[action] == rule
    [machine] = synthesized_sagemaker.resources("AWS::StepFunctions::StateMachine").values()
    statements = _statements(synthesized_sagemaker)[machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]]
    [pass_role] = [s for s in statements if s["Action"] == "iam:PassRole"]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    sagemaker_role = pass_role["Resource"]["Fn::GetAtt"][0]
    principal = synthesized_sagemaker.template["Resources"][sagemaker_role]["Properties"]["AssumeRolePolicyDocument"]
    assert principal["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def test_the_sagemaker_training_role_reads_the_data_and_writes_only_the_job_output(
    synthesized_sagemaker: Any,
) -> None:
    [role] = [
        logical_id
        for logical_id, role in synthesized_sagemaker.resources("AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "sagemaker.amazonaws.com"}
    ]
    statements = _statements(synthesized_sagemaker)[role]
    logs = "arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/TrainingJobs"
    # The repository of SAGEMAKER_CONTEXT's training_image_uri.
    assert SAGEMAKER_CONTEXT["training_image_uri"].startswith("123456789012.dkr.ecr.eu-west-1.amazonaws.com/")
    repository = "arn:<AWS::Partition>:ecr:eu-west-1:123456789012:repository/digits-trainer"
    assert _grants(statements) == {
        "s3:ListBucket": {"bucket"},
        "s3:GetObject": {"bucket/labels/*", "bucket/runs/*", "bucket/models/*"},
        "s3:PutObject": {"bucket/runs/training/*"},
        "logs:CreateLogGroup": {f"{logs}:*"},
        "logs:DescribeLogStreams": {f"{logs}:*"},
        "logs:CreateLogStream": {f"{logs}:log-stream:batchinfer-*"},
        "logs:PutLogEvents": {f"{logs}:log-stream:batchinfer-*"},
        "ecr:BatchCheckLayerAvailability": {repository},
        "ecr:GetDownloadUrlForLayer": {repository},
        "ecr:BatchGetImage": {repository},
        "ecr:GetAuthorizationToken": {"*"},
    }
    [listing] = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["labels/*", "runs/*", "models/*"]}}


def test_a_user_training_hook_is_invoked_by_its_arn(synthesized_user_hook: Any) -> None:
    grants = _state_machine_grants(synthesized_user_hook)
    assert USER_HOOK_ARN in grants["lambda:InvokeFunction"]
    assert len(grants["lambda:InvokeFunction"]) == len(synthesized_user_hook.resources("AWS::Lambda::Function")) + 1


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
