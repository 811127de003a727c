"""Synthesizes the app once per session, with the context in cdk.json, as `cdk synth` would."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "infra: CDK synth tests")


@dataclass
class Synthesized:
    app: Any
    stack: Any
    template: dict[str, Any]
    template_file: Path

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == resource_type}


# Context that turns off copying the assets into the cloud assembly: a variant's template is the
# same, and it synthesizes in seconds rather than tens of seconds.
NO_ASSET_STAGING = {"aws:cdk:disable-asset-staging": True}
SAGEMAKER_CONTEXT = {
    "training_hook": "sagemaker",
    "training_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/digits-trainer:1.0",
}
USER_HOOK_ARN = "arn:aws:lambda:us-east-1:123456789012:function:my-training-hook"


def synthesize(outdir: Path, context: dict[str, Any]) -> Synthesized:
    from infra.app import build_app

    app, stack = build_app(context=context, outdir=str(outdir))
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_file = outdir / artifact.template_file
    template = json.loads(template_file.read_text())
    return Synthesized(app=app, stack=stack, template=template, template_file=template_file)


@pytest.fixture(scope="session")
def cdk_context() -> dict[str, Any]:
    return dict(json.loads((REPO_ROOT / "cdk.json").read_text())["context"])


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory, cdk_context: dict[str, Any]) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk.out"), cdk_context)


@pytest.fixture(scope="session")
def synthesized_sagemaker(tmp_path_factory: pytest.TempPathFactory, cdk_context: dict[str, Any]) -> Synthesized:
    """`cdk synth -c training_hook=sagemaker -c training_image_uri=...`"""
    context = {**cdk_context, **SAGEMAKER_CONTEXT, **NO_ASSET_STAGING}
    return synthesize(tmp_path_factory.mktemp("cdk.out.sagemaker"), context)


@pytest.fixture(scope="session")
def synthesized_user_hook(tmp_path_factory: pytest.TempPathFactory, cdk_context: dict[str, Any]) -> Synthesized:
    """`cdk synth -c training_hook_function_arn=<your function>`"""
    context = {**cdk_context, "training_hook_function_arn": USER_HOOK_ARN, **NO_ASSET_STAGING}
    return synthesize(tmp_path_factory.mktemp("cdk.out.user-hook"), context)
