"""The deployment's settings: one typed object read from CDK context (cdk.json or `-c key=value`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from contract.resource_spec import FUNCTION_LIMITS, PIPE_BATCH_SIZE, PIPE_WINDOW_SECONDS
from contract.settings import Settings, problem_with, setting_names

_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_SCHEDULE = re.compile(r"^(cron|rate)\(.+\)$")
# A private ECR image, the only kind a SageMaker training job pulls without a VPC registry config.
ECR_IMAGE_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*)(:[\w.-]{1,128}|@sha256:[0-9a-f]{64})$"
)
_LAMBDA_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]{1,128})?$"
)
_EVENT_BUS = re.compile(
    r"^([A-Za-z0-9._/-]{1,256}|arn:aws[a-z-]*:events:[a-z0-9-]+:\d{12}:event-bus/[A-Za-z0-9._/-]{1,256})$"
)
# SageMaker training job names: letters, digits and '-', at most 63 characters. The definition
# names each job batchinfer-<model_name>-v<14 digits>.
_JOB_NAME_PART = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9])*$")
_JOB_NAME_MAX_MODEL = 63 - len("batchinfer--v20250101000000")


class ConfigError(ValueError):
    """A context value is missing or malformed; the message names the context key."""


@dataclass(frozen=True)
class DeployConfig:
    """Every key is a CDK context key of the same name; the defaults are those in cdk.json.

    A key named as a field of contract.settings.Settings is that setting of every function: it takes
    its default and its check from there (see `function_settings`). The other keys are CDK's alone.
    """

    # Name suffix of the stack and of the named resources: batchinfer-<stage>.
    stage: str = "dev"
    # EventBridge Scheduler expressions, evaluated in `time_zone`.
    score_schedule: str = "cron(0 2 * * ? *)"
    retrain_schedule: str = "cron(0 4 ? * SUN *)"
    # The reconciliation sweep, which finds versions no upload event announced (lambdas/reconciliation.py).
    reconcile_schedule: str = "cron(0 1 ? * SAT *)"
    # The ClassifyBatch container function. Lambda gives vCPUs in proportion to memory.
    classify_memory_mb: int = FUNCTION_LIMITS["ClassifyBatch"].memory_mb
    classify_timeout_seconds: int = FUNCTION_LIMITS["ClassifyBatch"].timeout_seconds
    # None leaves the function on the account's unreserved pool (new accounts cannot reserve).
    classify_reserved_concurrency: int | None = None
    # Batches classified at once by the Distributed Map, and images per batch.
    max_concurrency: int = Settings.max_concurrency
    batch_size: int = Settings.batch_size
    # IANA zone for the date of a prediction (from the capture time) and for the schedules.
    time_zone: str = Settings.time_zone
    # The model registry is s3://<bucket>/models/<model_name>.
    model_name: str = "digits"
    # S3 events per execution and how long the pipe waits to fill a batch (defaults from the
    # resource spec, as the local pipe uses them). One SQS record is about 2 KB and an execution
    # input at most 256 KiB, so keep pipe_batch_size at or below 100 (50 leaves room for long keys).
    pipe_batch_size: int = PIPE_BATCH_SIZE
    pipe_window_seconds: int = PIPE_WINDOW_SECONDS
    # Alarm notifications go to an SNS topic; this address is subscribed to it when set.
    alarm_email: str | None = None
    # Version of the public Powertools for AWS Lambda (Python) v3 layer.
    powertools_layer_version: int = 27
    # Retraining. The training hook is "lambda" (the built-in TrainingHook container function, or
    # your own function named by training_hook_function_arn, keeping the contract documented in
    # inference_image/training.py) or "sagemaker" (a training job on training_image_uri, an ECR
    # image you build; see "Retraining on AWS" in README.md).
    training_hook: str = Settings.training_hook
    training_hook_function_arn: str | None = None
    training_image_uri: str | None = None
    training_instance_type: str = "ml.m5.large"
    # The TrainingHook and EvaluateCandidate container functions (both run at most 900 s).
    training_memory_mb: int = FUNCTION_LIMITS["TrainingHook"].memory_mb
    evaluation_memory_mb: int = FUNCTION_LIMITS["EvaluateCandidate"].memory_mb
    # Retraining runs when at least this many labelled images are new since the last training.
    min_new_labels: int = Settings.min_new_labels
    # A candidate is promoted when its held-out accuracy >= the current model's + this margin.
    promotion_margin: float = Settings.promotion_margin
    train_epochs: int = Settings.train_epochs
    # Predictions below this confidence are exported for people to label.
    low_confidence: float = Settings.low_confidence
    # Percentage of labelled images held out for evaluation (a stable split by key).
    holdout_percent: int = Settings.holdout_percent
    # Where the retraining outcome event goes: a bus name in this account, or a bus ARN.
    event_bus_name: str = "default"

    @property
    def prefix(self) -> str:
        """batchinfer-<stage>: the stack name and the start of every name batchinfer sets."""
        return f"batchinfer-{self.stage}"

    def function_settings(self) -> dict[str, Any]:
        """The values of the settings this config shares with the functions, by setting name."""
        return {name: getattr(self, name) for name in SHARED_SETTINGS}

    @classmethod
    def from_context(cls, context: Any) -> DeployConfig:
        """`context` is anything with try_get_context, such as an App's node."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = context.try_get_context(f.name)
            if raw is not None:
                values[f.name] = raw
        return cls.from_values(values)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> DeployConfig:
        defaults = cls()
        parsed: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in values or values[f.name] is None:
                continue
            raw = values[f.name]
            default = getattr(defaults, f.name)
            if isinstance(default, float):
                parsed[f.name] = _number(f.name, raw)
            elif isinstance(default, int) or f.name == "classify_reserved_concurrency":
                parsed[f.name] = _whole_number(f.name, raw)
            else:
                parsed[f.name] = str(raw).strip() or None
        config = cls(**{**{f.name: getattr(defaults, f.name) for f in fields(cls)}, **parsed})
        config.validate()
        return config

    def validate(self) -> None:
        if not _STAGE.match(self.stage):
            raise ConfigError(
                f"bad context value: stage={self.stage!r} must be lower-case letters, digits and '-' "
                "(at most 20 characters, starting with a letter)"
            )
        for key in ("score_schedule", "retrain_schedule", "reconcile_schedule"):
            if not _SCHEDULE.match(getattr(self, key)):
                raise ConfigError(f"bad context value: {key}={getattr(self, key)!r} is not cron(...) or rate(...)")
        for key in SHARED_SETTINGS:
            value = getattr(self, key)
            problem = problem_with(key, value)
            if problem:
                raise ConfigError(f"bad context value: {key}={value!r} {problem}")
        limits = {
            "classify_memory_mb": (128, 10240),
            "classify_timeout_seconds": (1, 900),
            "pipe_batch_size": (1, 10000),
            "pipe_window_seconds": (0, 300),
            "powertools_layer_version": (1, 10000),
            "training_memory_mb": (128, 10240),
            "evaluation_memory_mb": (128, 10240),
        }
        for key, (low, high) in limits.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(f"bad context value: {key}={value} must be between {low} and {high}")
        if self.classify_reserved_concurrency is not None and self.classify_reserved_concurrency < 1:
            raise ConfigError("bad context value: classify_reserved_concurrency must be at least 1, or null")
        if self.pipe_batch_size > 10 and self.pipe_window_seconds < 1:
            raise ConfigError("bad context value: pipe_window_seconds must be at least 1 when pipe_batch_size > 10")
        if not re.match(r"^[A-Za-z0-9._-]+$", self.model_name):
            raise ConfigError(f"bad context value: model_name={self.model_name!r} must be a plain name")
        if self.alarm_email is not None and "@" not in self.alarm_email:
            raise ConfigError(f"bad context value: alarm_email={self.alarm_email!r} is not an e-mail address")
        self._validate_retraining()

    def _validate_retraining(self) -> None:
        if self.training_hook_function_arn is not None:
            if not _LAMBDA_ARN.match(self.training_hook_function_arn):
                raise ConfigError(
                    f"bad context value: training_hook_function_arn={self.training_hook_function_arn!r} "
                    "is not a Lambda function ARN"
                )
            if self.training_hook != "lambda":
                raise ConfigError("bad context value: training_hook_function_arn needs training_hook=lambda")
        if self.training_image_uri is not None and not ECR_IMAGE_URI.match(self.training_image_uri):
            raise ConfigError(
                f"bad context value: training_image_uri={self.training_image_uri!r} is not an ECR image URI "
                "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>)"
            )
        if self.training_hook == "sagemaker":
            if self.training_image_uri is None:
                raise ConfigError(
                    "missing context value: training_hook=sagemaker needs training_image_uri, the ECR URI of "
                    "your training image (-c training_image_uri=<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>)"
                )
            if len(self.model_name) > _JOB_NAME_MAX_MODEL or not _JOB_NAME_PART.match(self.model_name):
                raise ConfigError(
                    f"bad context value: model_name={self.model_name!r} must be letters, digits and '-' (at most "
                    f"{_JOB_NAME_MAX_MODEL} characters) with training_hook=sagemaker: it is part of the job names"
                )
        if not re.match(r"^ml\.[a-z0-9]+\.[a-z0-9]+$", self.training_instance_type):
            raise ConfigError(
                f"bad context value: training_instance_type={self.training_instance_type!r} is not a SageMaker "
                "instance type such as ml.m5.large"
            )
        if not _EVENT_BUS.match(self.event_bus_name):
            raise ConfigError(
                f"bad context value: event_bus_name={self.event_bus_name!r} is not an event bus name or ARN"
            )


# The keys that are settings of the functions too (time_zone, batch_size, the retraining settings, ...).
SHARED_SETTINGS = tuple(f.name for f in fields(DeployConfig) if f.name in setting_names())


def _number(key: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ConfigError(f"bad context value: {key}={raw!r} is not a number")
    try:
        return float(str(raw).strip())
    except ValueError:
        raise ConfigError(f"bad context value: {key}={raw!r} is not a number") from None


def _whole_number(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"bad context value: {key}={raw!r} is not a whole number")
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"bad context value: {key}={raw!r} is not a whole number") from None
