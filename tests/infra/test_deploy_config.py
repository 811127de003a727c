"""The deployment settings: cdk.json's context is the documented defaults, and bad values fail by name."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from infra.config import ConfigError, DeployConfig

pytestmark = pytest.mark.infra


def test_cdk_json_holds_every_setting_with_its_default(cdk_context: dict[str, Any]) -> None:
    settings = {k: v for k, v in cdk_context.items() if not k.startswith("@aws-cdk/")}
    assert settings == asdict(DeployConfig())
    assert DeployConfig.from_values(settings) == DeployConfig()


def test_context_strings_become_typed_values() -> None:
    config = DeployConfig.from_values({"stage": "prod", "batch_size": "64", "classify_reserved_concurrency": "10"})
    assert (config.prefix, config.batch_size, config.classify_reserved_concurrency) == ("batchinfer-prod", 64, 10)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"batch_size": "many"}, "batch_size"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"score_schedule": "every night"}, "score_schedule"),
        ({"stage": "Prod_1"}, "stage"),
        ({"classify_timeout_seconds": 1200}, "classify_timeout_seconds"),
        ({"pipe_window_seconds": 0}, "pipe_window_seconds"),
    ],
)
def test_a_bad_value_fails_naming_its_key(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        DeployConfig.from_values(values)
