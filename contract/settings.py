"""Settings read once from the environment into one typed object, failing fast and by name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract.resource_spec import (
    DAILY_COUNTS,
    FAILURES,
    IMAGES_PREFIX,
    INGEST_LEDGER,
    INGEST_QUEUE_SETTING,
    PREDICTIONS,
    RUN_STATE,
)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    bucket: str
    predictions_table: str
    counts_table: str
    failures_table: str
    state_table: str
    model_registry: str
    ledger_table: str = ""
    ingest_queue_url: str = ""
    images_prefix: str = IMAGES_PREFIX
    time_zone: str = "UTC"
    batch_size: int = 32
    max_concurrency: int = 4
    count_shards: int = 8
    max_image_bytes: int = 25 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    read_threads: int = 8
    checkpoint_overlap_seconds: int = 3600
    # The listing: at most this many versions in one run's manifest (the rest wait in the ledger),
    # and the seconds one listing or reconciliation invocation may spend before handing over.
    max_images_per_run: int = 100_000
    listing_budget_seconds: int = 600
    reconcile_budget_seconds: int = 600
    model_refresh_seconds: float = 30.0
    # The retraining branch.
    min_new_labels: int = 50
    promotion_margin: float = 0.0
    holdout_percent: int = 20
    training_hook: str = "lambda"  # "lambda" (a function keeping the hook contract) or "sagemaker"
    train_epochs: int = 5
    low_confidence: float = 0.6

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"missing setting: environment variable {name} is not set")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"bad setting: {name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise SettingsError(f"bad setting: {name}={raw!r} must be greater than zero")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    time_zone = env.get("BATCHINFER_TIME_ZONE", "").strip() or "UTC"
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"bad setting: BATCHINFER_TIME_ZONE={time_zone!r} is not an IANA time zone"
        ) from None
    prefix = env.get("BATCHINFER_IMAGES_PREFIX", IMAGES_PREFIX)
    refresh = env.get("BATCHINFER_MODEL_REFRESH_SECONDS", "").strip()
    hook = env.get("BATCHINFER_TRAINING_HOOK", "").strip() or "lambda"
    if hook not in ("lambda", "sagemaker"):
        raise SettingsError(f"bad setting: BATCHINFER_TRAINING_HOOK={hook!r} must be 'lambda' or 'sagemaker'")
    holdout = _positive_int(env, "BATCHINFER_HOLDOUT_PERCENT", 20)
    if holdout >= 100:
        raise SettingsError(f"bad setting: BATCHINFER_HOLDOUT_PERCENT={holdout} must be below 100")
    return Settings(
        bucket=_required(env, "BATCHINFER_BUCKET"),
        predictions_table=_required(env, PREDICTIONS.setting),
        counts_table=_required(env, DAILY_COUNTS.setting),
        failures_table=_required(env, FAILURES.setting),
        state_table=_required(env, RUN_STATE.setting),
        model_registry=_required(env, "BATCHINFER_MODEL_REGISTRY"),
        ledger_table=_required(env, INGEST_LEDGER.setting),
        ingest_queue_url=_required(env, INGEST_QUEUE_SETTING),
        images_prefix=prefix,
        time_zone=time_zone,
        batch_size=_positive_int(env, "BATCHINFER_BATCH_SIZE", 32),
        max_concurrency=_positive_int(env, "BATCHINFER_MAX_CONCURRENCY", 4),
        count_shards=_positive_int(env, "BATCHINFER_COUNT_SHARDS", 8),
        max_image_bytes=_positive_int(env, "BATCHINFER_MAX_IMAGE_BYTES", 25 * 1024 * 1024),
        max_image_pixels=_positive_int(env, "BATCHINFER_MAX_IMAGE_PIXELS", 40_000_000),
        read_threads=_positive_int(env, "BATCHINFER_READ_THREADS", 8),
        checkpoint_overlap_seconds=_positive_int(env, "BATCHINFER_CHECKPOINT_OVERLAP_SECONDS", 3600),
        max_images_per_run=_positive_int(env, "BATCHINFER_MAX_IMAGES_PER_RUN", 100_000),
        listing_budget_seconds=_positive_int(env, "BATCHINFER_LISTING_BUDGET_SECONDS", 600),
        reconcile_budget_seconds=_positive_int(env, "BATCHINFER_RECONCILE_BUDGET_SECONDS", 600),
        model_refresh_seconds=_fraction(env, "BATCHINFER_MODEL_REFRESH_SECONDS", 30.0, upper=None)
        if refresh else 30.0,
        min_new_labels=_positive_int(env, "BATCHINFER_MIN_NEW_LABELS", 50),
        promotion_margin=_fraction(env, "BATCHINFER_PROMOTION_MARGIN", 0.0, upper=1.0),
        holdout_percent=holdout,
        training_hook=hook,
        train_epochs=_positive_int(env, "BATCHINFER_TRAIN_EPOCHS", 5),
        low_confidence=_fraction(env, "BATCHINFER_LOW_CONFIDENCE", 0.6, upper=1.0),
    )


def _fraction(env: Mapping[str, str], name: str, default: float, upper: float | None) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"bad setting: {name}={raw!r} is not a number") from None
    if value < 0 or (upper is not None and value > upper):
        raise SettingsError(f"bad setting: {name}={raw!r} must be between 0 and {upper}")
    return value


def cache_dir() -> Path:
    """Where batchinfer keeps files on this machine: the demo model, the local stack's state."""
    root = os.environ.get("BATCHINFER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "batchinfer"
    )
    return Path(root)


@lru_cache(maxsize=1)
def cached_settings() -> Settings:
    """Settings for handlers: read at the first invocation, not at import time."""
    return load_settings()
