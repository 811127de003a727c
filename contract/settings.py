"""Settings: the one description of every setting (type, default, check, environment variable), read once."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from contract.capacity import recommended_max_concurrency
from contract.resource_spec import (
    DAILY_COUNTS,
    FAILURES,
    IMAGES_PREFIX,
    INGEST_LEDGER,
    INGEST_QUEUE_SETTING,
    PREDICTIONS,
    RUN_STATE,
    SLICES_PER_EXECUTION,
    TABLES,
    TableSpec,
)

TRAINING_HOOKS = ("lambda", "sagemaker")
MAX_IMAGES_PER_RUN_LIMIT = 250_000


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


# A check returns what is wrong with a value ("must be greater than zero"), or None when it is fine.
Check = Callable[[Any], str | None]


def _any(value: Any) -> str | None:
    """any text"""
    return None


def _described(text: str, check: Check) -> Check:
    """A check whose docstring says in words what it accepts: the reference pages print it."""
    check.__doc__ = text
    return check


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("is not a whole number") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("is not a number") from None


def _positive(at_most: int | None = None) -> Check:
    def check(value: int) -> str | None:
        if value <= 0:
            return "must be greater than zero"
        if at_most is not None and value > at_most:
            return f"must be at most {at_most}"
        return None

    return _described("greater than zero" + ("" if at_most is None else f", at most {at_most:,}"), check)


def _fraction(upper: float | None = 1.0) -> Check:
    def check(value: float) -> str | None:
        if upper is None:
            return "must not be negative" if value < 0 else None
        return None if 0 <= value <= upper else f"must be between 0 and {upper}"

    return _described("not negative" if upper is None else f"between 0 and {upper}", check)


def _time_zone(value: str) -> str | None:
    """an IANA time zone, such as UTC or Africa/Lagos"""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "is not an IANA time zone"
    return None


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else "must be " + " or ".join(repr(c) for c in choices)

    return _described(" or ".join(f"`{c}`" for c in choices), check)


@dataclass(frozen=True)
class Variable:
    """How a setting travels as an environment variable: its name, how its text is read, what it must be."""

    name: str
    read: Callable[[str], Any] = str
    check: Check = _any
    # Surrounding spaces are dropped, and a blank value means the default, except where the text is
    # taken as written (a prefix may be empty on purpose).
    verbatim: bool = False


def setting(variable: str, default: Any = MISSING, *, read: Callable[[str], Any] = str, check: Check = _any,
            verbatim: bool = False) -> Any:
    """A field of Settings, with the environment variable that carries it; no default means required."""
    return field(default=default, metadata={"variable": Variable(variable, read, check, verbatim)})


@dataclass(frozen=True)
class Settings:
    bucket: str = setting("BATCHINFER_BUCKET")
    predictions_table: str = setting(PREDICTIONS.setting)
    counts_table: str = setting(DAILY_COUNTS.setting)
    failures_table: str = setting(FAILURES.setting)
    state_table: str = setting(RUN_STATE.setting)
    model_registry: str = setting("BATCHINFER_MODEL_REGISTRY")
    ledger_table: str = setting(INGEST_LEDGER.setting)
    ingest_queue_url: str = setting(INGEST_QUEUE_SETTING)
    images_prefix: str = setting("BATCHINFER_IMAGES_PREFIX", IMAGES_PREFIX, verbatim=True)
    time_zone: str = setting("BATCHINFER_TIME_ZONE", "UTC", check=_time_zone)
    batch_size: int = setting("BATCHINFER_BATCH_SIZE", 32, read=_whole_number, check=_positive(at_most=1000))
    # The capacity plan's: the most batches at once that keep a new stack below its first AWS quota.
    max_concurrency: int = setting("BATCHINFER_MAX_CONCURRENCY", recommended_max_concurrency(), read=_whole_number,
                                   check=_positive(at_most=10_000))
    count_shards: int = setting("BATCHINFER_COUNT_SHARDS", 8, read=_whole_number, check=_positive())
    max_image_bytes: int = setting("BATCHINFER_MAX_IMAGE_BYTES", 25 * 1024 * 1024, read=_whole_number,
                                   check=_positive())
    max_image_pixels: int = setting("BATCHINFER_MAX_IMAGE_PIXELS", 40_000_000, read=_whole_number,
                                    check=_positive())
    read_threads: int = setting("BATCHINFER_READ_THREADS", 8, read=_whole_number, check=_positive())
    checkpoint_overlap_seconds: int = setting("BATCHINFER_CHECKPOINT_OVERLAP_SECONDS", 3600, read=_whole_number,
                                              check=_positive())
    # The listing: at most this many versions in one slice's manifest (a run takes slice after slice until
    # the ledger is empty), and the seconds one listing or reconciliation invocation may spend before handing
    # over. The cap keeps one slice inside its functions' limits: ListNewVersions holds the run's versions (about
    # 240 bytes each, ~90 MB at its peak for 100,000 while writing the manifest, of 512 MB), and
    # ReconcileBatches writes two items per failed image, 25 a call, within its 900 s.
    max_images_per_run: int = setting("BATCHINFER_MAX_IMAGES_PER_RUN", 100_000, read=_whole_number,
                                      check=_positive(at_most=MAX_IMAGES_PER_RUN_LIMIT))
    # A run continues in a new execution after this many slices, inside Step Functions' 25,000 history events.
    slices_per_execution: int = setting("BATCHINFER_SLICES_PER_EXECUTION", SLICES_PER_EXECUTION, read=_whole_number,
                                        check=_positive(at_most=SLICES_PER_EXECUTION))
    listing_budget_seconds: int = setting("BATCHINFER_LISTING_BUDGET_SECONDS", 600, read=_whole_number,
                                          check=_positive(at_most=840))
    reconcile_budget_seconds: int = setting("BATCHINFER_RECONCILE_BUDGET_SECONDS", 600, read=_whole_number,
                                            check=_positive(at_most=840))
    # How often ClassifyBatch checks the registry's pointer for a promoted version.
    model_refresh_seconds: float = setting("BATCHINFER_MODEL_REFRESH_SECONDS", 30.0, read=_number,
                                           check=_fraction(upper=None))
    # The retraining branch.
    min_new_labels: int = setting("BATCHINFER_MIN_NEW_LABELS", 50, read=_whole_number,
                                  check=_positive(at_most=1_000_000))
    promotion_margin: float = setting("BATCHINFER_PROMOTION_MARGIN", 0.0, read=_number, check=_fraction())
    holdout_percent: int = setting("BATCHINFER_HOLDOUT_PERCENT", 20, read=_whole_number, check=_positive(at_most=99))
    # "lambda" (a function keeping the hook contract) or "sagemaker"
    training_hook: str = setting("BATCHINFER_TRAINING_HOOK", "lambda", check=_one_of(TRAINING_HOOKS))
    train_epochs: int = setting("BATCHINFER_TRAIN_EPOCHS", 5, read=_whole_number, check=_positive(at_most=1000))
    low_confidence: float = setting("BATCHINFER_LOW_CONFIDENCE", 0.6, read=_number, check=_fraction())

    def __post_init__(self) -> None:
        for f in fields(self):
            name, value = f.metadata["variable"].name, getattr(self, f.name)
            if f.default is MISSING and not str(value).strip():
                raise SettingsError(f"missing setting: environment variable {name} is not set")
            problem = problem_with(f.name, value)
            if problem:
                raise SettingsError(f"bad setting: {name}={value!r} {problem}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def to_env(self) -> dict[str, str]:
        """Every setting as the environment variable that carries it, as load_settings reads it back."""
        return {f.metadata["variable"].name: str(getattr(self, f.name)) for f in fields(self)}


def _variable(name: str) -> Variable:
    for f in fields(Settings):
        if f.name == name:
            found: Variable = f.metadata["variable"]
            return found
    raise KeyError(f"no setting named {name!r}")


def variable_of(name: str) -> str:
    """The environment variable that carries the setting `name`."""
    return _variable(name).name


def setting_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Settings))


def setting_named_by(variable_name: str) -> str:
    """The setting an environment variable carries (a table's TableSpec.setting, for instance)."""
    for f in fields(Settings):
        if f.metadata["variable"].name == variable_name:
            return f.name
    raise KeyError(f"no setting is carried by {variable_name!r}")


def table_settings(table_name: Callable[[TableSpec], str]) -> dict[str, Any]:
    """The settings that name the tables, by setting name: Settings(**table_settings(...), ...)."""
    return {setting_named_by(spec.setting): table_name(spec) for spec in TABLES}


def check_text(name: str) -> str:
    """What the setting `name` accepts, in words ("greater than zero, at most 1,000"): its check's docstring."""
    return (_variable(name).check.__doc__ or "").strip()


def problem_with(name: str, value: Any) -> str | None:
    """What is wrong with `value` for the setting `name` ("must be greater than zero"), or None.

    The deploy config checks the settings it passes to the functions with this, so both fail alike.
    """
    return _variable(name).check(value)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        spec: Variable = f.metadata["variable"]
        raw = env.get(spec.name)
        if spec.verbatim:
            if raw is not None:
                values[f.name] = raw
            continue
        text = (raw or "").strip()
        if not text:
            if f.default is MISSING:
                raise SettingsError(f"missing setting: environment variable {spec.name} is not set")
            continue
        try:
            value = spec.read(text)
        except ValueError as error:
            raise SettingsError(f"bad setting: {spec.name}={text!r} {error}") from None
        problem = spec.check(value)
        if problem:
            raise SettingsError(f"bad setting: {spec.name}={text!r} {problem}")
        values[f.name] = value
    return Settings(**values)


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
