"""The deployment's settings: one typed object read from CDK context (cdk.json or `-c key=value`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from infra.resource_spec import PIPE_BATCH_SIZE, PIPE_WINDOW_SECONDS

_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_SCHEDULE = re.compile(r"^(cron|rate)\(.+\)$")


class ConfigError(ValueError):
    """A context value is missing or malformed; the message names the context key."""


@dataclass(frozen=True)
class DeployConfig:
    """Every key is a CDK context key of the same name; the defaults are those in cdk.json."""

    # Name suffix of the stack and of the named resources: batchinfer-<stage>.
    stage: str = "dev"
    # EventBridge Scheduler expressions, evaluated in `time_zone`.
    score_schedule: str = "cron(0 2 * * ? *)"
    retrain_schedule: str = "cron(0 4 ? * SUN *)"
    # The ClassifyBatch container function. Lambda gives vCPUs in proportion to memory.
    classify_memory_mb: int = 3008
    classify_timeout_seconds: int = 300
    # None leaves the function on the account's unreserved pool (new accounts cannot reserve).
    classify_reserved_concurrency: int | None = None
    # Batches classified at once by the Distributed Map, and images per batch.
    max_concurrency: int = 4
    batch_size: int = 32
    # IANA zone for the date of a prediction (from the capture time) and for the schedules.
    time_zone: str = "UTC"
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

    @property
    def prefix(self) -> str:
        """batchinfer-<stage>: the stack name and the start of every name batchinfer sets."""
        return f"batchinfer-{self.stage}"

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
            if isinstance(default, int) or f.name == "classify_reserved_concurrency":
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
        for key in ("score_schedule", "retrain_schedule"):
            if not _SCHEDULE.match(getattr(self, key)):
                raise ConfigError(f"bad context value: {key}={getattr(self, key)!r} is not cron(...) or rate(...)")
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"bad context value: time_zone={self.time_zone!r} is not an IANA time zone") from None
        limits = {
            "classify_memory_mb": (128, 10240),
            "classify_timeout_seconds": (1, 900),
            "max_concurrency": (1, 10000),
            "batch_size": (1, 1000),
            "pipe_batch_size": (1, 10000),
            "pipe_window_seconds": (0, 300),
            "powertools_layer_version": (1, 10000),
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


def _whole_number(key: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ConfigError(f"bad context value: {key}={raw!r} is not a whole number")
    try:
        return int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"bad context value: {key}={raw!r} is not a whole number") from None
