"""Settings is the one description of every setting: to_env() and load_settings() agree, and a bad
value fails alike however it arrives."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from contract.settings import Settings, SettingsError, load_settings, problem_with, variable_of

pytestmark = pytest.mark.unit

NAMES: dict[str, Any] = {
    "bucket": "b",
    "predictions_table": "p",
    "counts_table": "c",
    "failures_table": "f",
    "state_table": "s",
    "model_registry": "s3://b/models/m",
}


def test_to_env_reads_back_as_the_same_settings() -> None:
    settings = Settings(**NAMES, time_zone="Africa/Lagos", batch_size=7, model_refresh_seconds=0.0,
                        promotion_margin=0.05, training_hook="sagemaker", images_prefix="")
    env = settings.to_env()
    assert set(env) == {variable_of(f.name) for f in fields(Settings)}
    assert env["BATCHINFER_BATCH_SIZE"] == "7" and env["BATCHINFER_TIME_ZONE"] == "Africa/Lagos"
    assert load_settings(env) == settings


def test_defaults_are_the_fields_defaults() -> None:
    env = {variable_of(name): value for name, value in NAMES.items()}
    assert load_settings(env) == Settings(**NAMES)
    assert Settings.batch_size == 32 and Settings.count_shards == 8


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("batch_size", 0, "BATCHINFER_BATCH_SIZE=0 must be greater than zero"),
        ("holdout_percent", 100, "BATCHINFER_HOLDOUT_PERCENT=100 must be at most 99"),
        ("time_zone", "Mars/Olympus", "BATCHINFER_TIME_ZONE='Mars/Olympus' is not an IANA time zone"),
        ("training_hook", "batch", "BATCHINFER_TRAINING_HOOK='batch' must be 'lambda' or 'sagemaker'"),
        ("low_confidence", 1.5, "BATCHINFER_LOW_CONFIDENCE=1.5 must be between 0 and 1"),
        ("bucket", " ", "environment variable BATCHINFER_BUCKET is not set"),
    ],
)
def test_a_bad_value_fails_naming_its_variable(name: str, value: object, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings(**{**NAMES, name: value})
    env = {**Settings(**NAMES).to_env(), variable_of(name): str(value)}
    with pytest.raises(SettingsError, match=variable_of(name)):
        load_settings(env)


def test_problem_with_says_what_is_wrong_without_a_name() -> None:
    assert problem_with("batch_size", 32) is None
    assert problem_with("batch_size", 2000) == "must be at most 1000"
    assert problem_with("model_refresh_seconds", -1.0) == "must not be negative"
    with pytest.raises(KeyError, match="no setting named 'batch'"):
        problem_with("batch", 1)
