"""Settings fail fast by name; dates come from the capture time in the configured zone."""

from __future__ import annotations

import pytest

from contract.settings import SettingsError, load_settings
from lambdas.records import BadRecord, ImageVersion

pytestmark = pytest.mark.unit

FULL = {
    "BATCHINFER_BUCKET": "b",
    "BATCHINFER_PREDICTIONS_TABLE": "p",
    "BATCHINFER_COUNTS_TABLE": "c",
    "BATCHINFER_FAILURES_TABLE": "f",
    "BATCHINFER_STATE_TABLE": "s",
    "BATCHINFER_MODEL_REGISTRY": "s3://b/models/m",
    "BATCHINFER_LEDGER_TABLE": "l",
    "BATCHINFER_INGEST_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q",
}


def test_defaults() -> None:
    settings = load_settings(FULL)
    assert settings.time_zone == "UTC" and settings.batch_size == 32 and settings.images_prefix == "incoming/"


@pytest.mark.parametrize("missing", sorted(FULL))
def test_a_missing_setting_is_named(missing: str) -> None:
    env = {k: v for k, v in FULL.items() if k != missing}
    with pytest.raises(SettingsError, match=f"environment variable {missing} is not set"):
        load_settings(env)


def test_bad_values_are_named() -> None:
    with pytest.raises(SettingsError, match="BATCHINFER_TIME_ZONE='Mars/Olympus'"):
        load_settings({**FULL, "BATCHINFER_TIME_ZONE": "Mars/Olympus"})
    with pytest.raises(SettingsError, match="BATCHINFER_BATCH_SIZE='0' must be greater than zero"):
        load_settings({**FULL, "BATCHINFER_BATCH_SIZE": "0"})
    with pytest.raises(SettingsError, match="BATCHINFER_BATCH_SIZE='lots' is not a whole number"):
        load_settings({**FULL, "BATCHINFER_BATCH_SIZE": "lots"})


def test_date_is_the_capture_date_in_the_configured_zone() -> None:
    image = ImageVersion("b", "incoming/x.jpg", "v1", "2026-03-01T23:30:00+00:00")
    assert image.capture_date(load_settings(FULL).zone) == "2026-03-01"
    lagos = load_settings({**FULL, "BATCHINFER_TIME_ZONE": "Africa/Lagos"}).zone  # UTC+1
    assert image.capture_date(lagos) == "2026-03-02"


def test_image_id_names_the_exact_version_and_survives_odd_keys() -> None:
    image = ImageVersion("b", "incoming/a photo é#1.jpg", "3/L4kqtJl", "2026-03-01T00:00:00Z")
    assert image.image_id == "s3://b/incoming/a%20photo%20%C3%A9%231.jpg?versionId=3%2FL4kqtJl"
    assert ImageVersion("b", "k", "v2", "2026-03-01T00:00:00Z").image_id != ImageVersion(
        "b", "k", "v1", "2026-03-01T00:00:00Z").image_id


def test_malformed_items_are_rejected_with_the_missing_fields() -> None:
    with pytest.raises(BadRecord, match="lacks version_id, last_modified"):
        ImageVersion.from_dict({"bucket": "b", "key": "k"})
    with pytest.raises(BadRecord, match="must be an object"):
        ImageVersion.from_dict(["b", "k"])
