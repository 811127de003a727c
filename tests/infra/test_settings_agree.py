"""Each setting is named once: CDK's environment of every function, the embedded engine's and
Settings.to_env() carry the same variables, with the same values for the same config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contract.resource_spec import FUNCTIONS, TABLES
from contract.settings import Settings, load_settings, setting_names, table_settings, variable_of
from engine.local_engine import LocalConfig
from infra.config import SHARED_SETTINGS, DeployConfig
from infra.constructs.functions import POWERTOOLS_ENVIRONMENT
from tests.infra.conftest import NO_ASSET_STAGING, Synthesized, synthesize

pytestmark = pytest.mark.infra

EVERY_VARIABLE = {variable_of(name) for name in setting_names()}
# A deployment that sets every setting it shares with the functions away from its default.
CUSTOM_CONTEXT = {
    "time_zone": "Africa/Lagos",
    "batch_size": 16,
    "max_concurrency": 9,
    "count_shards": 16,
    "max_images_per_run": 20_000,
    "min_new_labels": 7,
    "promotion_margin": 0.05,
    "holdout_percent": 30,
    "train_epochs": 2,
    "low_confidence": 0.4,
    "training_hook": "sagemaker",
    "training_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/digits-trainer:1.0",
}


@pytest.fixture(scope="module")
def synthesized_custom(tmp_path_factory: pytest.TempPathFactory, cdk_context: dict[str, Any]) -> Synthesized:
    context = {**cdk_context, **CUSTOM_CONTEXT, **NO_ASSET_STAGING}
    return synthesize(tmp_path_factory.mktemp("cdk.out.custom"), context)


def _resolved(value: Any) -> str:
    """A template value as a string, a reference standing for the logical id it names."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return str(value["Ref"])
    separator, parts = value["Fn::Join"]
    return str(separator).join(_resolved(part) for part in parts)


def _settings_env(synthesized: Synthesized, function: str) -> dict[str, str]:
    [properties] = [
        r["Properties"]
        for r in synthesized.resources("AWS::Lambda::Function").values()
        if r["Properties"]["FunctionName"] == f"batchinfer-dev-{function}"
    ]
    env = {k: _resolved(v) for k, v in properties["Environment"]["Variables"].items()}
    assert {k: env.pop(k) for k in POWERTOOLS_ENVIRONMENT} == POWERTOOLS_ENVIRONMENT
    return env


def _expected(config: DeployConfig) -> Settings:
    """The settings CDK gives every function for `config`, its names as the template's logical ids."""
    return Settings(
        bucket="ImagesBucket",
        model_registry=f"s3://ImagesBucket/models/{config.model_name}",
        **table_settings(lambda spec: spec.logical_id),
        ingest_queue_url="IngestQueue",  # the queue's Ref, its URL
        **config.function_settings(),
    )


def test_settings_name_each_variable_once() -> None:
    assert len(EVERY_VARIABLE) == len(setting_names())
    assert all(name.startswith("BATCHINFER_") for name in EVERY_VARIABLE)


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_cdk_sets_every_setting_of_the_deploy_config(
    synthesized: Synthesized, synthesized_custom: Synthesized, cdk_context: dict[str, Any], function: str
) -> None:
    settings_context = {k: v for k, v in cdk_context.items() if not k.startswith("@aws-cdk/")}
    for synth, context in ((synthesized, settings_context), (synthesized_custom, {**settings_context,
                                                                                 **CUSTOM_CONTEXT})):
        env = _settings_env(synth, function)
        expected = _expected(DeployConfig.from_values(context))
        assert set(env) == EVERY_VARIABLE
        assert env == expected.to_env()
        assert load_settings(env) == expected


def test_the_custom_deployment_changes_every_shared_setting() -> None:
    custom, default = DeployConfig.from_values(CUSTOM_CONTEXT), DeployConfig()
    assert all(getattr(custom, name) != getattr(default, name) for name in SHARED_SETTINGS)


@pytest.mark.parametrize("function", list(FUNCTIONS))
def test_the_engine_sets_what_cdk_sets_for_the_same_config(synthesized: Synthesized, function: str) -> None:
    deployed = DeployConfig()  # cdk.json's
    local = LocalConfig(
        time_zone=deployed.time_zone,
        batch_size=deployed.batch_size,
        max_concurrency=deployed.max_concurrency,
        min_new_labels=deployed.min_new_labels,
    )
    engine_env = local.settings_env()
    cdk_env = _settings_env(synthesized, function)
    assert set(engine_env) == set(cdk_env) == EVERY_VARIABLE
    assert load_settings(engine_env) == local.settings()
    # The names differ (the engine's own, the stack's references); every other value is the same,
    # but for one: the engine serves a promoted version at the next invocation, AWS within 30 s.
    names = ({variable_of("bucket"), variable_of("model_registry"), variable_of("ingest_queue_url")}
             | {spec.setting for spec in TABLES})
    refresh = variable_of("model_refresh_seconds")
    assert (engine_env[refresh], cdk_env[refresh]) == ("0.0", "30.0")
    assert {k: v for k, v in engine_env.items() if k not in names | {refresh}} == {
        k: v for k, v in cdk_env.items() if k not in names | {refresh}
    }
    assert engine_env[variable_of("bucket")] == local.bucket
    assert engine_env[variable_of("ingest_queue_url")] == local.ingest_queue_url
    assert {engine_env[spec.setting] for spec in TABLES} == {local.table_name(spec.logical_id) for spec in TABLES}


def test_cdk_json_documents_the_functions_defaults() -> None:
    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    assert {name: context[name] for name in SHARED_SETTINGS} == {
        name: getattr(Settings, name) for name in SHARED_SETTINGS
    }
