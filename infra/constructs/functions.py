"""The zip-packaged Lambda functions (every function of the spec that does not run TensorFlow),
and what every batchinfer function shares: its environment, its role, its log group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from contract.resource_spec import (
    APPROVAL_FILE,
    CONTAINER_FUNCTIONS,
    DAILY_COUNTS,
    FAILURES,
    FUNCTION_LIMITS,
    FUNCTIONS,
    HISTORY_FOLDER,
    IMAGES_PREFIX,
    INGEST_LEDGER,
    MODELS_PREFIX,
    POINTER_FILE,
    PREDICTIONS,
    RUN_STATE,
    RUNS_PREFIX,
)
from contract.results import RESULTS_FOLDER, RESULTS_INDEX_PREFIX
from contract.settings import Settings, table_settings
from infra.acknowledgements import (
    LOG_STREAMS_REASON,
    XRAY_REASON,
    acknowledge,
    log_streams_finding,
    logical_id,
    object_prefix_finding,
    object_prefix_reason,
)
from infra.assets import LAMBDA_CODE_EXCLUDE, REPO_ROOT
from infra.config import DeployConfig
from infra.constructs.storage import Storage

CLASSIFY_BATCH = "ClassifyBatch"  # the container function, built by the Inference construct
RUNTIME = lambda_.Runtime.PYTHON_3_12
POWERTOOLS_LAYER = "AWSLambdaPowertoolsPythonV3-python312-x86_64"
POWERTOOLS_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "batchinfer",
    "POWERTOOLS_METRICS_NAMESPACE": "batchinfer",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


def function_settings(config: DeployConfig, storage: Storage) -> Settings:
    """The settings of every function: this stack's names (tokens) and the deploy config's values."""
    bucket = storage.bucket.bucket_name
    return Settings(
        bucket=bucket,
        model_registry=f"s3://{bucket}/{MODELS_PREFIX}{config.model_name}",
        **table_settings(lambda spec: storage.table(spec).table_name),
        ingest_queue_url=storage.ingest_queue.queue_url,
        **config.function_settings(),
    )


def function_environment(config: DeployConfig, storage: Storage) -> dict[str, str]:
    """The environment of every function: its settings as Settings.to_env() names them (the local
    engine sets them the same way), plus Powertools'."""
    return {**function_settings(config, storage).to_env(), **POWERTOOLS_ENVIRONMENT}


def function_role(scope: Construct, function: str, log_group: logs.ILogGroup) -> iam.Role:
    """A role of its own for each function: its log group, and then only what its code calls."""
    role = iam.Role(
        scope,
        f"{function}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"batchinfer {function}: only the calls its code makes",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            resources=[log_group.log_group_arn, f"{log_group.log_group_arn}:log-stream:*"],
        )
    )
    return role


def function_log_group(scope: Construct, function: str) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        f"{function}Logs",
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )


def allow(role: iam.Role, actions: Sequence[str], resources: Sequence[str], **conditions: Any) -> None:
    role.add_to_policy(
        iam.PolicyStatement(actions=list(actions), resources=list(resources), conditions=conditions or None)
    )


class Functions(Construct):
    """Every function of the spec but the container ones: small Python functions on the managed
    runtime (boto3 included), with Powertools from its public layer."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        powertools = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "PowertoolsLayer",
            stack.format_arn(
                service="lambda",
                account="017000801446",
                resource="layer",
                resource_name=f"{POWERTOOLS_LAYER}:{config.powertools_layer_version}",
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            ),
        )
        code = lambda_.Code.from_asset(str(REPO_ROOT), exclude=LAMBDA_CODE_EXCLUDE)
        environment = function_environment(config, storage)
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        for name in [fn for fn in FUNCTIONS if fn not in CONTAINER_FUNCTIONS]:
            log_group = function_log_group(self, name)
            role = function_role(self, name, log_group)
            self.roles[name] = role
            self.functions[name] = lambda_.Function(
                self,
                name,
                function_name=f"{config.prefix}-{name}",
                description=f"batchinfer {name} ({FUNCTIONS[name]})",
                runtime=RUNTIME,
                handler=FUNCTIONS[name],
                code=code,
                layers=[powertools],
                role=role,
                memory_size=FUNCTION_LIMITS[name].memory_mb,
                timeout=cdk.Duration.seconds(FUNCTION_LIMITS[name].timeout_seconds),
                environment=environment,
                logging_format=lambda_.LoggingFormat.JSON,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
            )
            acknowledge(
                role,
                {
                    "AwsSolutions-IAM5[Resource::*]": XRAY_REASON,
                    log_streams_finding(log_group): LOG_STREAMS_REASON,
                },
            )
            acknowledge(
                self.functions[name],
                {
                    "AwsSolutions-L1": "The project supports Python 3.11 and 3.12 (pyproject requires-python "
                    "<3.13) and its tests run there; python3.12 is a supported Lambda runtime, with the "
                    "matching public Powertools layer."
                },
            )
        self._grant(storage, config)

    def _grant(self, storage: Storage, config: DeployConfig) -> None:
        """Exactly the calls each function's code makes (lambdas/stores.py, listing.py, ...)."""
        bucket = storage.bucket
        predictions = storage.table(PREDICTIONS).table_arn
        counts = storage.table(DAILY_COUNTS).table_arn
        failures = storage.table(FAILURES).table_arn
        state = storage.table(RUN_STATE).table_arn
        ingest_ledger = storage.table(INGEST_LEDGER).table_arn
        ingest_queue = storage.ingest_queue.queue_arn
        registry = f"{MODELS_PREFIX}{config.model_name}/"
        pointer = bucket.arn_for_objects(f"{registry}{POINTER_FILE}")
        # The serving version's approval: a run refuses a version pending or rejected (a missing file,
        # a 404 thanks to ListBucket, is a version that needs no approval).
        approvals = f"{registry}*/{APPROVAL_FILE}"

        # s3:ListBucket on the bucket (no object access) makes HeadObject of a deleted key or version
        # a 404, which the code handles, instead of a 403, which fails the step.

        # ListNewVersions: upload events from the ingest queue (ReceiveMessage, DeleteMessageBatch),
        # HeadObject of each event's version, the ingest ledger (BatchWriteItem, Query; DescribeTable for
        # its item count, which says about how many slices a run has left), the predictions' COUNTED /
        # FAILED markers (BatchGetItem), and the slice's manifest (PutObject). It never lists the bucket.
        role = self.roles["ListNewVersions"]
        allow(role, ["sqs:ReceiveMessage", "sqs:DeleteMessage"], [ingest_queue])
        allow(role, ["s3:ListBucket"], [bucket.bucket_arn])
        allow(role, ["s3:GetObjectVersion"], [bucket.arn_for_objects(f"{IMAGES_PREFIX}*")])
        allow(role, ["s3:PutObject"], [bucket.arn_for_objects(f"{RUNS_PREFIX}*")])
        allow(role, ["dynamodb:BatchGetItem"], [predictions])
        allow(role, ["dynamodb:BatchWriteItem", "dynamodb:Query", "dynamodb:DescribeTable"], [ingest_ledger])
        # A run with no serving model, or one not approved, fails before listing.
        allow(role, ["s3:GetObject"], [pointer, bucket.arn_for_objects(approvals)])

        # ReconcileVersions: ListObjectVersions under incoming/, the predictions' markers
        # (BatchGetItem), the ingest ledger (BatchWriteItem), the last sweep (GetItem, PutItem).
        role = self.roles["ReconcileVersions"]
        allow(role, ["s3:ListBucketVersions"], [bucket.bucket_arn], StringLike={"s3:prefix": [f"{IMAGES_PREFIX}*"]})
        allow(role, ["dynamodb:BatchGetItem"], [predictions])
        allow(role, ["dynamodb:BatchWriteItem"], [ingest_ledger])
        allow(role, ["dynamodb:GetItem", "dynamodb:PutItem"], [state])

        # BuildReplayManifest: the failures of the replayed run (Query), HeadObject of the current
        # version of each failed key, the ledger (BatchGetItem), and the manifest (PutObject).
        role = self.roles["BuildReplayManifest"]
        allow(role, ["dynamodb:Query"], [failures])
        allow(role, ["s3:ListBucket"], [bucket.bucket_arn])
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{IMAGES_PREFIX}*")])
        allow(role, ["s3:PutObject"], [bucket.arn_for_objects(f"{RUNS_PREFIX}*")])
        allow(role, ["dynamodb:BatchGetItem"], [predictions])
        allow(role, ["s3:GetObject"], [pointer, bucket.arn_for_objects(approvals)])

        # RecordBatchFailure: the ledger (BatchGetItem), FAILED markers and failure records
        # (BatchWriteItem), the batch result (PutItem); the fold of what the batch wrote and did not
        # count (the counts table: its fold marker, PutItem, and its owner's markers, Query).
        role = self.roles["RecordBatchFailure"]
        allow(role, ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"], [predictions])
        allow(role, ["dynamodb:PutItem", "dynamodb:Query"], [counts])
        allow(role, ["dynamodb:BatchWriteItem"], [failures])
        allow(role, ["dynamodb:PutItem"], [state])

        # ReconcileBatches: the manifest (GetObject, and the ResultWriter's manifest and FAILED files,
        # all under runs/), which batches have a result (BatchGetItem), the predictions' markers
        # (BatchGetItem), FAILED markers and failure records (BatchWriteItem), the reconciled batches'
        # results (BatchWriteItem); the fold of what a dead child wrote and did not count (PutItem, Query).
        role = self.roles["ReconcileBatches"]
        allow(role, ["s3:ListBucket"], [bucket.bucket_arn])  # a missing file reads as missing, not denied
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{RUNS_PREFIX}*")])
        allow(role, ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"], [state])
        allow(role, ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"], [predictions])
        allow(role, ["dynamodb:BatchWriteItem"], [failures])
        allow(role, ["dynamodb:PutItem", "dynamodb:Query"], [counts])

        # AggregateDailyCounts: batch results (Query), the fold markers and counter shards (Query), the rollups
        # (UpdateItem), the run's failures (Query).
        role = self.roles["AggregateDailyCounts"]
        allow(role, ["dynamodb:Query"], [state])
        allow(role, ["dynamodb:Query", "dynamodb:UpdateItem"], [counts])
        allow(role, ["dynamodb:Query"], [failures])

        # WriteRunResults: lists the run's result files (ListBucket under runs/), reads the manifest
        # (GetObject), the predictions of any batch whose child wrote no file (Query), the run's failures
        # (Query), and writes the result files under runs/<run>/results/ and the Glue tables' index
        # files under results-index/ (PutObject; failures.jsonl may go in parts).
        role = self.roles["WriteRunResults"]
        allow(role, ["s3:ListBucket"], [bucket.bucket_arn], StringLike={"s3:prefix": [f"{RUNS_PREFIX}*"]})
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{RUNS_PREFIX}*")])
        allow(role, ["s3:PutObject", "s3:AbortMultipartUpload"],
              [bucket.arn_for_objects(f"{RUNS_PREFIX}*/{RESULTS_FOLDER}*"),
               bucket.arn_for_objects(f"{RESULTS_INDEX_PREFIX}*")])
        allow(role, ["dynamodb:Query"], [predictions])
        allow(role, ["dynamodb:Query"], [failures])

        # CollectTrainingData: lists labels/<class>/ (ListObjectsV2), reads the registry's pointer and
        # the current version's labels.json (GetObject), the training checkpoint (GetItem), scans the
        # predictions for the low-confidence export (Scan), and writes the train / held-out
        # manifests and the export under runs/<run>/ (PutObject). ListBucket is not limited to
        # labels/: without it a missing current.json reads as AccessDenied, not as missing.
        role = self.roles["CollectTrainingData"]
        allow(role, ["s3:ListBucket"], [bucket.bucket_arn])
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{MODELS_PREFIX}*")])
        allow(role, ["s3:PutObject"], [bucket.arn_for_objects(f"{RUNS_PREFIX}*")])
        allow(role, ["dynamodb:GetItem"], [state])
        allow(role, ["dynamodb:Scan"], [predictions])

        # PromoteIfBetter: the registry's pointer (PutObject of models/<name>/current.json) and one new
        # history object (PutObject under models/<name>/_history/); it reads the registry (the
        # candidate's labels and approval, the pointer, the history: GetObject, and ListBucket, which
        # also makes a missing file a 404); the training checkpoint (a conditional PutItem).
        role = self.roles["PromoteIfBetter"]
        allow(role, ["s3:ListBucket"], [bucket.bucket_arn])
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{registry}*")])
        allow(role, ["s3:PutObject"], [pointer, bucket.arn_for_objects(f"{registry}{HISTORY_FOLDER}/*")])
        allow(role, ["dynamodb:PutItem"], [state])
        acknowledge(role, {
            object_prefix_finding(bucket, registry): object_prefix_reason(registry),
            object_prefix_finding(bucket, f"{registry}{HISTORY_FOLDER}/"): object_prefix_reason(
                f"{registry}{HISTORY_FOLDER}/"),
        })
        for name in ("ListNewVersions", "BuildReplayManifest"):
            acknowledge(self.roles[name], {
                f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{approvals}]":
                    "Only the approval.json of a version, whose name is not known in advance.",
            })

        for name, prefixes in (
            ("ListNewVersions", (IMAGES_PREFIX, RUNS_PREFIX)),
            ("BuildReplayManifest", (IMAGES_PREFIX, RUNS_PREFIX)),
            ("CollectTrainingData", (MODELS_PREFIX, RUNS_PREFIX)),
            ("ReconcileBatches", (RUNS_PREFIX,)),
            ("WriteRunResults", (RUNS_PREFIX, f"{RUNS_PREFIX}*/{RESULTS_FOLDER}", RESULTS_INDEX_PREFIX)),
        ):
            for prefix in prefixes:
                acknowledge(
                    self.roles[name],
                    {object_prefix_finding(bucket, prefix): object_prefix_reason(prefix)},
                )
