"""Inference: ClassifyBatch, the LiteRT classifier, as a Lambda container image function, and how
every container function is built from one of the two images of inference_image/."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from contract.resource_spec import (
    DAILY_COUNTS,
    FAILURES,
    FUNCTIONS,
    IMAGES_PREFIX,
    MODELS_PREFIX,
    PREDICTIONS,
    RUN_STATE,
    RUNS_PREFIX,
)
from contract.results import PREDICTION_FILES
from infra.acknowledgements import (
    LOG_STREAMS_REASON,
    XRAY_REASON,
    acknowledge,
    log_streams_finding,
    object_prefix_finding,
    object_prefix_reason,
)
from infra.assets import IMAGE_EXCLUDE, REPO_ROOT
from infra.config import DeployConfig
from infra.constructs.functions import (
    CLASSIFY_BATCH,
    allow,
    function_environment,
    function_log_group,
    function_role,
)
from infra.constructs.storage import Storage

# ClassifyBatch's image has LiteRT and no TensorFlow (small, so a cold start on a new host pulls
# little); the training and evaluation functions share the image that adds TensorFlow.
SERVING_DOCKERFILE = "inference_image/Dockerfile"
TRAINING_DOCKERFILE = "inference_image/Dockerfile.training"


def dockerfile_of(function: str) -> str:
    return SERVING_DOCKERFILE if function == CLASSIFY_BATCH else TRAINING_DOCKERFILE


def image_code(function: str) -> lambda_.DockerImageCode:
    """The image of the function's Dockerfile, running the spec's handler of `function`.

    Container functions of the same Dockerfile build from the same directory and options, so they
    share one image asset (built and pushed once); only the command differs.
    """
    return lambda_.DockerImageCode.from_image_asset(
        directory=str(REPO_ROOT),
        file=dockerfile_of(function),
        exclude=IMAGE_EXCLUDE,
        platform=ecr_assets.Platform.LINUX_AMD64,
        cmd=[FUNCTIONS[function]],
    )


def container_function(
    scope: Construct,
    function: str,
    *,
    config: DeployConfig,
    storage: Storage,
    role: iam.Role,
    log_group: logs.ILogGroup,
    memory_mb: int,
    timeout_seconds: int,
    description: str,
    reserved_concurrency: int | None = None,
) -> lambda_.DockerImageFunction:
    return lambda_.DockerImageFunction(
        scope,
        function,
        function_name=f"{config.prefix}-{function}",
        description=f"batchinfer {function} ({FUNCTIONS[function]}), {description}",
        code=image_code(function),
        architecture=lambda_.Architecture.X86_64,
        memory_size=memory_mb,
        timeout=cdk.Duration.seconds(timeout_seconds),
        reserved_concurrent_executions=reserved_concurrency,
        # Models (and for training, the labelled images' model files) go to /tmp.
        ephemeral_storage_size=cdk.Size.mebibytes(2048),
        environment=function_environment(config, storage),
        role=role,
        logging_format=lambda_.LoggingFormat.JSON,
        log_group=log_group,
        tracing=lambda_.Tracing.ACTIVE,
    )


class Inference(Construct):
    """ClassifyBatch's image is built from inference_image/Dockerfile with the repository root as its context.

    At synth the context is only fingerprinted (no Docker needed); `cdk deploy` builds and pushes it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        log_group = function_log_group(self, CLASSIFY_BATCH)
        self.role = function_role(self, CLASSIFY_BATCH, log_group)
        self.function = container_function(
            self,
            CLASSIFY_BATCH,
            config=config,
            storage=storage,
            role=self.role,
            log_group=log_group,
            memory_mb=config.classify_memory_mb,
            timeout_seconds=config.classify_timeout_seconds,
            reserved_concurrency=config.classify_reserved_concurrency,
            description="LiteRT in a container image, no TensorFlow",
        )
        self._grant(storage)
        acknowledge(
            self.role,
            {
                "AwsSolutions-IAM5[Resource::*]": XRAY_REASON,
                log_streams_finding(log_group): LOG_STREAMS_REASON,
                object_prefix_finding(storage.bucket, IMAGES_PREFIX): object_prefix_reason(IMAGES_PREFIX),
                object_prefix_finding(storage.bucket, MODELS_PREFIX): object_prefix_reason(MODELS_PREFIX),
                object_prefix_finding(storage.bucket, f"{RUNS_PREFIX}*/{PREDICTION_FILES}"): (
                    "Only result files: the run and the batch in the key are not known in advance."),
            },
        )

    def _grant(self, storage: Storage) -> None:
        """Exactly the calls inference_image/ and lambdas/stores.py make for one batch."""
        bucket = storage.bucket
        role: iam.Role = self.role
        # Image versions (GetObject with VersionId) and the model registry (GetObject). ListBucket
        # (no object access) makes a deleted version a NoSuchVersion, recorded as "deleted before it
        # was scored", and a missing registry file a 404, rather than both an AccessDenied.
        allow(role, ["s3:GetObjectVersion"], [bucket.arn_for_objects(f"{IMAGES_PREFIX}*")])
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{MODELS_PREFIX}*")])
        allow(role, ["s3:ListBucket"], [bucket.bucket_arn])
        # A conditional PutItem per prediction (a failed condition returns the item it found); the
        # batch's fold marker (PutItem, and Query of its owner's markers when one is taken) and the
        # shard-count record (UpdateItem) in the counts table; FAILED markers and failure records with
        # BatchWriteItem; the batch result with PutItem. A retried batch tells its own earlier writes from
        # the item each failed condition returns, with no read.
        allow(role, ["dynamodb:PutItem", "dynamodb:BatchWriteItem"], [storage.table(PREDICTIONS).table_arn])
        allow(role, ["dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
              [storage.table(DAILY_COUNTS).table_arn])
        allow(role, ["dynamodb:BatchWriteItem"], [storage.table(FAILURES).table_arn])
        allow(role, ["dynamodb:PutItem"], [storage.table(RUN_STATE).table_arn])
        # The batch's result file, runs/<run>/results/predictions/<batch>.jsonl (contract/results.py).
        allow(role, ["s3:PutObject"], [bucket.arn_for_objects(f"{RUNS_PREFIX}*/{PREDICTION_FILES}*")])
