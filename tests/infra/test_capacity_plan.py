"""`cdk synth` and the capacity plan: it prints the plan, warns where only the account can tell, refuses settings
that cannot work, and pre-warms the predictions table when the deployment asks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contract.resource_spec import PREDICTIONS
from infra.config import ConfigError
from tests.infra.conftest import NO_ASSET_STAGING, REPO_ROOT, Synthesized, synthesize

pytestmark = pytest.mark.infra

GROWN = {"max_concurrency": 1000, "predictions_warm_writes": 12_000, "count_shards": 16}


@pytest.fixture(scope="module")
def synthesized_grown(tmp_path_factory: pytest.TempPathFactory, cdk_context: dict[str, Any]) -> Synthesized:
    """`cdk synth -c max_concurrency=1000 -c predictions_warm_writes=12000 -c count_shards=16`"""
    return synthesize(tmp_path_factory.mktemp("cdk.out.grown"), {**cdk_context, **GROWN, **NO_ASSET_STAGING})


def _warnings(synthesized: Synthesized) -> list[str]:
    """The capacity plan's warnings on the stack (cdk-nag's are others)."""
    from aws_cdk.assertions import Annotations, Match

    found = Annotations.from_stack(synthesized.stack).find_warning("*", Match.string_like_regexp(".*"))
    return [str(entry.entry.data) for entry in found if "batchinfer:capacity" in str(entry.entry.data)]


def test_the_default_deployment_synthesizes_without_capacity_warnings(synthesized: Synthesized) -> None:
    assert _warnings(synthesized) == []
    table = synthesized.template["Resources"][PREDICTIONS.logical_id]["Properties"]
    assert "WarmThroughput" not in table  # a new on-demand table's 4,000 carries the default deployment


def test_a_grown_deployment_prewarms_the_predictions_table_and_its_index(synthesized_grown: Synthesized) -> None:
    table = synthesized_grown.template["Resources"][PREDICTIONS.logical_id]["Properties"]
    assert table["WarmThroughput"]["WriteUnitsPerSecond"] == 12_000
    [index] = table["GlobalSecondaryIndexes"]
    assert index["WarmThroughput"]["WriteUnitsPerSecond"] == 12_000
    functions = synthesized_grown.resources("AWS::Lambda::Function").values()
    classify = next(f for f in functions if f["Properties"]["FunctionName"].endswith("-ClassifyBatch"))
    assert classify["Properties"]["Environment"]["Variables"]["BATCHINFER_COUNT_SHARDS"] == "16"


def test_what_only_the_account_can_tell_is_a_warning_at_synth(tmp_path: Path, cdk_context: dict[str, Any]) -> None:
    context = {**cdk_context, "max_concurrency": 2000, **NO_ASSET_STAGING}
    warnings = _warnings(synthesize(tmp_path, context))
    assert any("above the account's Lambda concurrency (1,000)" in w for w in warnings), warnings
    assert any("PredictionsTable sustains 4,000 write units/s" in w and "pre-warm" in w for w in warnings), warnings


@pytest.mark.parametrize("values, expected", [
    ({"predictions_warm_writes": 16}, "below one batch's 32"),
    ({"predictions_warm_writes": 3000}, "below the 4,000 a new on-demand table sustains"),
])
def test_settings_that_cannot_work_fail_the_synth(tmp_path: Path, cdk_context: dict[str, Any],
                                                  values: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        synthesize(tmp_path, {**cdk_context, **values, **NO_ASSET_STAGING})


def test_cdk_synth_prints_the_plan(tmp_path: Path) -> None:
    """`python -m infra.app` as `cdk synth` runs it, with the context it passes in CDK_CONTEXT_JSON."""
    import json
    import os

    context = {**json.loads((REPO_ROOT / "cdk.json").read_text())["context"], "max_concurrency": 1000,
               **NO_ASSET_STAGING}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path),
           "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1"}
    done = subprocess.run([sys.executable, "-m", "infra.app"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "capacity plan: 10,000,000 images, max_concurrency 1,000" in done.stderr
    assert "binds first: DynamoDB PredictionsTable writes" in done.stderr
    assert "cost $" in done.stderr
