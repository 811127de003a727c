"""The deployment's settings: one typed object read from CDK context (cdk.json or `-c key=value`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

from contract import capacity
from contract.resource_spec import (
    EXPRESS_EXECUTION_SECONDS,
    FUNCTION_LIMITS,
    LAMBDA_MAX_MEMORY_MB,
    LAMBDA_MAX_TIMEOUT_SECONDS,
    PIPE_BATCH_SIZE,
    PIPE_WINDOW_SECONDS,
    PREDICTIONS,
    STATES_PAYLOAD_BYTES,
    function_arn_placeholder,
)
from contract.settings import Settings, problem_with, setting_names
from workflow.definition import definition_text

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

# AWS limits a deployment must fit, or runs fail at run time (their figures: contract/resource_spec.py).
EXPRESS_CHILD_SECONDS = EXPRESS_EXECUTION_SECONDS  # the Classify map's child is an EXPRESS execution
PAYLOAD_BYTES = STATES_PAYLOAD_BYTES  # Step Functions execution input and state input/output
# One SQS record of an S3 "Object Created" event as the pipe delivers it: 1.3 KiB measured with a short
# key, 2.3 KiB with the longest key S3 allows (1,024 bytes); 3 KiB leaves room for AWS's own attributes.
PIPE_RECORD_BYTES = 3 * 1024
# One image version in a child's input ({"bucket", "key", "version_id", "last_modified", "size"}: at
# most ~1.2 KiB with a 1,024-byte key), and its entry in ClassifyBatch's response when it fails (its
# s3:// id and a reason of at most 500 characters): 2 KiB per image, and 32 KiB for an error's cause.
BATCH_ITEM_BYTES = 2 * 1024
BATCH_OVERHEAD_BYTES = 32 * 1024
MAX_PIPE_BATCH_SIZE = (PAYLOAD_BYTES - 1024) // PIPE_RECORD_BYTES
MAX_BATCH_SIZE = (PAYLOAD_BYTES - BATCH_OVERHEAD_BYTES) // BATCH_ITEM_BYTES
# Errors a function that runs to its timeout (or crashes) ends with: a retrier matching one of these
# can spend a whole timeout per attempt. The Lambda.* service errors (throttling, service faults) come
# back without the function running, so their retries cost only their backoff.
_TIMED_ERRORS = {"States.ALL", "States.TaskFailed", "States.Timeout", "Sandbox.Timedout"}


def _backoff_seconds(retrier: dict[str, Any]) -> float:
    """The longest a retrier waits in all: IntervalSeconds x BackoffRate^n, capped by MaxDelaySeconds
    (FULL jitter only shortens the waits)."""
    interval, rate = float(retrier.get("IntervalSeconds", 1)), float(retrier.get("BackoffRate", 2.0))
    cap = float(retrier.get("MaxDelaySeconds", float("inf")))
    return sum(min(cap, interval * rate**n) for n in range(int(retrier.get("MaxAttempts", 3))))


def task_worst_case_seconds(task: dict[str, Any], timeout_seconds: float) -> float:
    """Every attempt at the function's timeout, plus every retrier's backoff."""
    retriers = task.get("Retry", [])
    timed_attempts = 1 + sum(int(r.get("MaxAttempts", 3)) for r in retriers
                             if _TIMED_ERRORS & set(r.get("ErrorEquals", [])))
    return timed_attempts * timeout_seconds + sum(_backoff_seconds(r) for r in retriers)


def child_worst_case_seconds(timeouts: dict[str, int], definition: dict[str, Any] | None = None) -> float:
    """The longest path through the Classify map's child (its Tasks, their Retry, and the Catch that
    leads to RecordBatchFailure), with each function at its timeout: what must fit in EXPRESS's 5 minutes."""
    definition = definition or json.loads(definition_text())
    processor = definition["States"]["Classify"]["ItemProcessor"]
    states: dict[str, Any] = processor["States"]
    arns = {"${" + function_arn_placeholder(name) + "}": name for name in timeouts}

    def longest(name: str) -> float:
        state = states[name]
        cost = 0.0
        if state.get("Type") == "Task":
            function = arns[state["Parameters"]["FunctionName"]]
            cost = task_worst_case_seconds(state, timeouts[function])
        following = [c["Next"] for c in state.get("Catch", [])] + ([state["Next"]] if "Next" in state else [])
        return cost + max((longest(n) for n in following), default=0.0)

    return longest(processor["StartAt"])


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
    # Batches classified at once by the Distributed Map, and images per batch. The deployed default is the
    # capacity plan's (contract/capacity.py): the most batches at once that keep a new stack, with no warm
    # throughput and Lambda's default account concurrency, at 80 % of its first AWS quota (68 at 0.685 s a batch).
    max_concurrency: int = capacity.recommended_max_concurrency()
    batch_size: int = Settings.batch_size
    # Shards of each day's counters and of the predictions' by_date index: each shard is one DynamoDB partition
    # of a day (1,000 write units/s). 8 carry a new table's 4,000 write units/s (capacity.recommended_count_shards).
    # Raise it, never lower it: readers read shards 0 to count_shards - 1.
    count_shards: int = Settings.count_shards
    # Write units a second the predictions table and its by_date index serve from the start (DynamoDB warm
    # throughput, which has a one-time charge); null leaves a new on-demand table's 4,000, which scales by
    # itself (twice its peak within 30 minutes). `batchinfer plan` says when a backlog needs more.
    predictions_warm_writes: int | None = None
    # The backlog (images) that `cdk synth` plans for: it prints the plan and warns when a setting falls short.
    plan_images: int = 10_000_000
    # Image versions one score run takes from the ingest ledger (the rest wait for the next run).
    max_images_per_run: int = Settings.max_images_per_run
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
    # image you build; see docs/deploying/retraining.md).
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

    def deployment(self) -> capacity.Deployment:
        """This deployment as the capacity plan sees it (an account at AWS's default figures)."""
        warm = {PREDICTIONS.logical_id: self.predictions_warm_writes} if self.predictions_warm_writes else {}
        return capacity.Deployment(max_concurrency=self.max_concurrency, batch_size=self.batch_size,
                                   classify_memory_mb=self.classify_memory_mb, count_shards=self.count_shards,
                                   max_images_per_run=self.max_images_per_run, warm_writes=warm)

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
            elif isinstance(default, int) or f.name in _OPTIONAL_WHOLE_NUMBERS:
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
            "classify_memory_mb": (128, LAMBDA_MAX_MEMORY_MB),
            "classify_timeout_seconds": (1, LAMBDA_MAX_TIMEOUT_SECONDS),
            "pipe_batch_size": (1, 10000),
            "pipe_window_seconds": (0, 300),
            "powertools_layer_version": (1, 10000),
            "training_memory_mb": (128, LAMBDA_MAX_MEMORY_MB),
            "evaluation_memory_mb": (128, LAMBDA_MAX_MEMORY_MB),
        }
        for key, (low, high) in limits.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise ConfigError(f"bad context value: {key}={value} must be between {low} and {high}")
        if self.classify_reserved_concurrency is not None and self.classify_reserved_concurrency < 1:
            raise ConfigError("bad context value: classify_reserved_concurrency must be at least 1, or null")
        self._validate_aws_limits()
        if self.pipe_batch_size > 10 and self.pipe_window_seconds < 1:
            raise ConfigError("bad context value: pipe_window_seconds must be at least 1 when pipe_batch_size > 10")
        if not re.match(r"^[A-Za-z0-9._-]+$", self.model_name):
            raise ConfigError(f"bad context value: model_name={self.model_name!r} must be a plain name")
        if self.alarm_email is not None and "@" not in self.alarm_email:
            raise ConfigError(f"bad context value: alarm_email={self.alarm_email!r} is not an e-mail address")
        self._validate_retraining()

    def _validate_aws_limits(self) -> None:
        """Values inside their own ranges that AWS would still reject at run time, failing runs."""
        worst = child_worst_case_seconds(
            {"RecordBatchFailure": FUNCTION_LIMITS["RecordBatchFailure"].timeout_seconds,
             "ClassifyBatch": self.classify_timeout_seconds}
        )
        if worst > EXPRESS_CHILD_SECONDS:
            raise ConfigError(
                f"bad context value: classify_timeout_seconds={self.classify_timeout_seconds} does not fit the "
                f"Classify map's EXPRESS child: its worst case (every Retry attempt at "
                f"{self.classify_timeout_seconds} s, the backoffs and RecordBatchFailure at "
                f"{FUNCTION_LIMITS['RecordBatchFailure'].timeout_seconds} s) is {worst:.0f} s, "
                f"and an EXPRESS execution ends at {EXPRESS_CHILD_SECONDS} s; lower classify_timeout_seconds "
                f"(or batch_size={self.batch_size}, so that a batch takes less time)"
            )
        if self.pipe_batch_size > MAX_PIPE_BATCH_SIZE:
            raise ConfigError(
                f"bad context value: pipe_batch_size={self.pipe_batch_size} S3 event records of up to "
                f"{PIPE_RECORD_BYTES} bytes each can exceed the {PAYLOAD_BYTES // 1024} KiB execution input; "
                f"at most {MAX_PIPE_BATCH_SIZE}"
            )
        if self.batch_size > MAX_BATCH_SIZE:
            raise ConfigError(
                f"bad context value: batch_size={self.batch_size} images of up to {BATCH_ITEM_BYTES} bytes each "
                f"can exceed the {PAYLOAD_BYTES // 1024} KiB input (and result) of a Classify child; "
                f"at most {MAX_BATCH_SIZE}"
            )
        if self.predictions_warm_writes is not None and self.predictions_warm_writes < 1:
            raise ConfigError("bad context value: predictions_warm_writes must be at least 1, or null")
        if self.plan_images < 1:
            raise ConfigError(f"bad context value: plan_images={self.plan_images} must be at least 1")
        for problem in capacity.deployment_errors(self.deployment()):
            raise ConfigError(f"bad context value: {problem}")
        reserved = self.classify_reserved_concurrency
        if reserved is not None and reserved < self.max_concurrency:
            raise ConfigError(
                f"bad context value: classify_reserved_concurrency={reserved} is below max_concurrency="
                f"{self.max_concurrency}: the Map would start more batches than ClassifyBatch may run, and the "
                "throttled ones fail after their retries"
            )

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


# Whole numbers whose default is null.
_OPTIONAL_WHOLE_NUMBERS = ("classify_reserved_concurrency", "predictions_warm_writes")
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
