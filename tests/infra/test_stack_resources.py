"""The synthesized template has the resources a deployment needs, shaped as the resource spec says."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from contract.resource_spec import (
    CONTAINER_FUNCTIONS,
    FUNCTION_LIMITS,
    FUNCTIONS,
    IMAGES_PREFIX,
    INGEST_QUEUE_SETTING,
    PIPE_BATCH_SIZE,
    PIPE_WINDOW_SECONDS,
    RUNS_PREFIX,
    TABLES,
    upload_event_pattern,
)
from engine.local_engine import LocalConfig

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def template(synthesized: Any) -> Template:
    return Template.from_json(synthesized.template)


def _function(synthesized: Any, name: str) -> dict[str, Any]:
    [function] = [
        r["Properties"]
        for r in synthesized.resources("AWS::Lambda::Function").values()
        if r["Properties"]["FunctionName"] == f"batchinfer-dev-{name}"
    ]
    return function


def test_images_bucket_is_private_versioned_encrypted_and_sends_events(synthesized: Any) -> None:
    bucket = synthesized.template["Resources"]["ImagesBucket"]
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert props["LoggingConfiguration"]["DestinationBucketName"]["Ref"] in synthesized.resources("AWS::S3::Bucket")
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-run-manifests"]["Prefix"] == RUNS_PREFIX
    assert rules["expire-run-manifests"]["ExpirationInDays"] == 30
    assert "NoncurrentVersionExpiration" in rules["expire-noncurrent-versions"]


def test_both_buckets_refuse_plain_http(synthesized: Any) -> None:
    policies = synthesized.resources("AWS::S3::BucketPolicy").values()
    covered = set()
    for policy in policies:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                covered.add(policy["Properties"]["Bucket"]["Ref"])
    assert covered == set(synthesized.resources("AWS::S3::Bucket"))


@pytest.mark.parametrize("spec", TABLES, ids=lambda spec: spec.logical_id)
def test_table_keys_and_indexes_equal_those_the_embedded_engine_creates(synthesized: Any, spec: Any) -> None:
    table = synthesized.template["Resources"][spec.logical_id]
    props = table["Properties"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    assert props["KeySchema"] == spec.key_schema()
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == spec.attribute_definitions()
    assert props.get("GlobalSecondaryIndexes", []) == spec.global_secondary_indexes()
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_classify_batch_is_a_container_image_function(synthesized: Any) -> None:
    function = _function(synthesized, "ClassifyBatch")
    assert function["PackageType"] == "Image"
    assert "ImageUri" in function["Code"]
    assert function["MemorySize"] == 1769  # one vCPU: the cheaper per image in `make bench`
    assert function["Timeout"] == 60  # fits EXPRESS's 5 minutes with its Retry (infra/config.py)
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"


@pytest.mark.parametrize(
    ("name", "memory", "timeout"),
    [("TrainingHook", 3008, 900), ("EvaluateCandidate", 3008, 900), ("PublishModel", 3008, 900)],
)
def test_the_retraining_steps_that_run_tensorflow_are_container_functions(
    synthesized: Any, name: str, memory: int, timeout: int
) -> None:
    function = _function(synthesized, name)
    assert function["PackageType"] == "Image"
    assert (function["MemorySize"], function["Timeout"]) == (memory, timeout)
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"


@pytest.mark.parametrize("name", CONTAINER_FUNCTIONS)
def test_each_container_function_runs_the_handler_of_the_spec(synthesized: Any, name: str) -> None:
    assert _function(synthesized, name)["ImageConfig"] == {"Command": [FUNCTIONS[name]]}


def test_classify_batch_has_its_own_image_and_the_retraining_steps_share_the_tensorflow_one(
    synthesized: Any,
) -> None:
    images = {name: json.dumps(_function(synthesized, name)["Code"]["ImageUri"]) for name in CONTAINER_FUNCTIONS}
    assert images["TrainingHook"] == images["EvaluateCandidate"] == images["PublishModel"] != images["ClassifyBatch"]
    assets = json.loads((synthesized.template_file.parent / "Batchinfer.assets.json").read_text())
    dockerfiles = sorted(image["source"]["dockerFile"] for image in assets["dockerImages"].values())
    assert dockerfiles == ["inference_image/Dockerfile", "inference_image/Dockerfile.training"]


def test_the_images_are_built_at_deploy_time_from_the_repository_root(synthesized: Any) -> None:
    """Synth only fingerprints and stages the build context: no Docker is needed until deploy."""
    assets = json.loads((synthesized.template_file.parent / "Batchinfer.assets.json").read_text())
    for image in assets["dockerImages"].values():
        assert image["source"]["platform"] == "linux/amd64"
        context = synthesized.template_file.parent / image["source"]["directory"]
        staged = {p.relative_to(context).as_posix() for p in context.rglob("*") if p.is_file()}
        assert {
            "inference_image/Dockerfile",
            "inference_image/Dockerfile.training",
            "inference_image/requirements.txt",
            "inference_image/requirements-training.txt",
            "inference_image/handler.py",
            "inference_image/retrain_handlers.py",
            "lambdas/stores.py",
            "lambdas/model_registry.py",
            "contract/resource_spec.py",
            "contract/settings.py",
        } <= staged
        assert not any(p.startswith((".venv/", ".git/", "tests/", "infra/constructs/")) for p in staged)


def test_the_classify_image_installs_no_tensorflow() -> None:
    from infra.assets import REPO_ROOT

    def requirements(name: str) -> str:
        lines = (REPO_ROOT / "inference_image" / name).read_text().lower().splitlines()
        return "\n".join(line for line in lines if not line.startswith("#"))

    serving, training = requirements("requirements.txt"), requirements("requirements-training.txt")
    assert "tensorflow" not in serving and "ai-edge-litert" in serving
    assert "tensorflow-cpu" in training and "-r requirements.txt" in training


@pytest.mark.parametrize("name", [name for name in FUNCTIONS if name not in CONTAINER_FUNCTIONS])
def test_zip_functions_run_the_handlers_of_the_spec_on_python_312(synthesized: Any, name: str) -> None:
    function = _function(synthesized, name)
    assert function["Runtime"] == "python3.12"
    assert function["Handler"] == FUNCTIONS[name]
    assert (function["MemorySize"], function["Timeout"]) == (FUNCTION_LIMITS[name].memory_mb,
                                                             FUNCTION_LIMITS[name].timeout_seconds)
    assert function["TracingConfig"] == {"Mode": "Active"}
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    [layer] = function["Layers"]
    assert "017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:" in str(layer)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_every_function_gets_the_settings_the_local_engine_sets(synthesized: Any, name: str) -> None:
    env = _function(synthesized, name)["Environment"]["Variables"]
    assert set(LocalConfig().settings_env()) <= set(env)
    for spec in TABLES:
        assert env[spec.setting] == {"Ref": spec.logical_id}
    assert env["BATCHINFER_BUCKET"] == {"Ref": "ImagesBucket"}
    assert env["BATCHINFER_IMAGES_PREFIX"] == IMAGES_PREFIX
    assert env["BATCHINFER_MODEL_REGISTRY"] == {"Fn::Join": ["", ["s3://", {"Ref": "ImagesBucket"}, "/models/digits"]]}
    assert env["BATCHINFER_TIME_ZONE"] == "UTC"
    assert env["POWERTOOLS_SERVICE_NAME"] == "batchinfer"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "batchinfer"


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_every_function_gets_the_retraining_settings_of_cdk_json(synthesized: Any, name: str) -> None:
    env = _function(synthesized, name)["Environment"]["Variables"]
    assert {k: v for k, v in env.items() if k in RETRAINING_SETTINGS} == RETRAINING_SETTINGS


# The defaults in cdk.json, as lambdas/settings.py reads them.
RETRAINING_SETTINGS = {
    "BATCHINFER_MIN_NEW_LABELS": "50",
    "BATCHINFER_PROMOTION_MARGIN": "0.0",
    "BATCHINFER_HOLDOUT_PERCENT": "20",
    "BATCHINFER_TRAINING_HOOK": "lambda",
    "BATCHINFER_TRAIN_EPOCHS": "5",
    "BATCHINFER_LOW_CONFIDENCE": "0.6",
}


def test_the_retraining_settings_are_those_the_functions_read() -> None:
    from contract.settings import load_settings

    env = {"BATCHINFER_BUCKET": "b", "BATCHINFER_MODEL_REGISTRY": "s3://b/models/digits", **RETRAINING_SETTINGS}
    env.update({spec.setting: spec.logical_id for spec in TABLES})
    env[INGEST_QUEUE_SETTING] = "https://sqs.us-east-1.amazonaws.com/1/ingest"
    settings = load_settings(env)
    assert (settings.min_new_labels, settings.promotion_margin, settings.holdout_percent) == (50, 0.0, 20)
    assert (settings.training_hook, settings.train_epochs, settings.low_confidence) == ("lambda", 5, 0.6)


def test_every_function_logs_to_its_own_log_group_with_retention(synthesized: Any) -> None:
    groups = synthesized.resources("AWS::Logs::LogGroup")
    for name in FUNCTIONS:
        group = _function(synthesized, name)["LoggingConfig"]["LogGroup"]["Ref"]
        assert groups[group]["Properties"]["RetentionInDays"] == 30


def test_state_machine_is_standard_with_full_logging_and_tracing(synthesized: Any) -> None:
    [machine] = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["StateMachineName"] == "batchinfer-dev"
    assert props["TracingConfiguration"] == {"Enabled": True}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ALL"
    assert logging["IncludeExecutionData"] is True
    group = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert synthesized.template["Resources"][group]["Properties"]["RetentionInDays"] == 30


def test_schedules_start_scoring_and_retraining(synthesized: Any) -> None:
    schedules = {
        s["Properties"]["Target"]["Input"]: s["Properties"]
        for s in synthesized.resources("AWS::Scheduler::Schedule").values()
    }
    assert set(schedules) == {'{"mode":"score"}', '{"mode":"retrain"}', '{"mode":"reconcile"}'}
    assert schedules['{"mode":"score"}']["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert schedules['{"mode":"retrain"}']["ScheduleExpression"] == "cron(0 4 ? * SUN *)"
    assert schedules['{"mode":"reconcile"}']["ScheduleExpression"] == "cron(0 1 ? * SAT *)"
    [machine] = synthesized.resources("AWS::StepFunctions::StateMachine")
    for schedule in schedules.values():
        assert schedule["Target"]["Arn"] == {"Ref": machine}
        assert schedule["ScheduleExpressionTimezone"] == "UTC"


def test_uploads_go_from_the_rule_through_the_queue_to_the_pipe(synthesized: Any, template: Template) -> None:
    [rule] = synthesized.resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    # The pattern of the local engine's rule, with the bucket's name filled in by CloudFormation.
    assert pattern == upload_event_pattern({"Ref": "ImagesBucket"})  # type: ignore[arg-type]
    assert pattern["detail"]["object"]["key"] == [{"prefix": IMAGES_PREFIX}]
    # Every event goes to the pipe's queue (score now) and to the ingest queue (the ingest ledger).
    queue_ids = [target["Arn"]["Fn::GetAtt"][0] for target in rule["Properties"]["Targets"]]
    assert len(queue_ids) == 2 and "IngestQueue" in queue_ids
    [queue_id] = [q for q in queue_ids if q != "IngestQueue"]
    ingest = synthesized.template["Resources"]["IngestQueue"]["Properties"]
    assert ingest["MessageRetentionPeriod"] == 14 * 24 * 3600 and ingest["SqsManagedSseEnabled"] is True
    assert "RedrivePolicy" in ingest
    queue = synthesized.template["Resources"][queue_id]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    dlq_id = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert synthesized.template["Resources"][dlq_id]["Type"] == "AWS::SQS::Queue"

    [machine] = synthesized.resources("AWS::StepFunctions::StateMachine")
    template.has_resource_properties(
        "AWS::Pipes::Pipe",
        {
            "Source": {"Fn::GetAtt": [queue_id, "Arn"]},
            "Target": {"Ref": machine},
            "SourceParameters": {
                "SqsQueueParameters": {
                    "BatchSize": PIPE_BATCH_SIZE,
                    "MaximumBatchingWindowInSeconds": PIPE_WINDOW_SECONDS,
                }
            },
            "TargetParameters": {"StepFunctionStateMachineParameters": {"InvocationType": "FIRE_AND_FORGET"}},
        },
    )
    [pipe] = synthesized.resources("AWS::Pipes::Pipe").values()
    assert "InputTemplate" not in pipe["Properties"]["TargetParameters"]  # the raw array of records
    for resource in synthesized.resources("AWS::SQS::QueuePolicy").values():
        [deny] = [s for s in resource["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_alarms_watch_failed_and_timed_out_runs_and_the_dead_letter_queue(synthesized: Any) -> None:
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"] for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
    }
    assert set(alarms) == {"ExecutionsFailed", "ExecutionsTimedOut", "ApproximateNumberOfMessagesVisible"}
    dead_letter = alarms["ApproximateNumberOfMessagesVisible"]
    assert dead_letter["Threshold"] == 0
    assert dead_letter["ComparisonOperator"] == "GreaterThanThreshold"
    [topic] = synthesized.resources("AWS::SNS::Topic")
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": topic}]


def test_outputs_name_what_the_cli_reads(synthesized: Any) -> None:
    outputs = synthesized.template["Outputs"]
    expected = {"StateMachineArn", "BucketName", "QueueUrl"} | {f"{spec.logical_id}Name" for spec in TABLES}
    assert expected <= set(outputs)
    assert outputs["BucketName"]["Value"] == {"Ref": "ImagesBucket"}
    for spec in TABLES:
        assert outputs[f"{spec.logical_id}Name"]["Value"] == {"Ref": spec.logical_id}
    assert outputs["ModelRegistry"]["Value"] == {"Fn::Join": ["", ["s3://", {"Ref": "ImagesBucket"},
                                                                   "/models/digits"]]}
