"""`batchinfer plan` against a stack: what it reads from AWS (here moto, through the embedded engine) before the
arithmetic of contract/capacity.py: ClassifyBatch's settings and memory, the tables' warm throughput, the
served version's seconds per batch measured at publish, and the local stack's served model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contract import capacity
from contract.resource_spec import PREDICTIONS
from tests.conftest import cli, cli_json

pytestmark = pytest.mark.integration


def _classify_function(engine: Any, memory_mb: int) -> None:
    """ClassifyBatch as CDK deploys it: the function the definition invokes, with the settings as environment."""
    role = engine.client("iam").create_role(RoleName="classify", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
    engine.client("lambda").create_function(
        FunctionName=engine.config.function_name("ClassifyBatch"), Runtime="python3.12", Role=role,
        Handler="inference_image.handler.handler", Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        MemorySize=memory_mb, Environment={"Variables": engine.config.settings_env()})


def test_the_plan_of_a_stack_reads_its_function_tables_and_served_model(
        engine: Any, demo_model: tuple[Path, dict[str, Any]], demo_model_forms: Any) -> None:
    from demo import digits
    from inference_image.publishing import Forms, publish_forms, timed
    from lambdas.model_registry import ModelRegistry
    from operate.planning import make_plan, stack_facts

    # The demo model's served form, timed as publishing times it (LiteRT, a batch of held-out digits).
    held_x, _ = digits.to_arrays(digits.split()[1])
    served = demo_model_forms.int8 if demo_model_forms.serving["form"] == "int8" else demo_model_forms.fp32
    serving = timed(demo_model_forms.serving, served, held_x)
    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    publish_forms(registry, "v1", demo_model[0], digits.LABELS, demo_model[1],
                  Forms(demo_model_forms.fp32, demo_model_forms.int8, serving))
    registry.promote("v1")
    _classify_function(engine, memory_mb=2048)
    engine.client("dynamodb").update_table(TableName=engine.predictions_table,
                                           WarmThroughput={"WriteUnitsPerSecond": 9000, "ReadUnitsPerSecond": 12000})

    facts = stack_facts(engine.target())
    deployment = facts.deployment
    assert (deployment.batch_size, deployment.max_concurrency) == (16, 2)  # the engine fixture's settings
    assert deployment.classify_memory_mb == 2048
    assert deployment.warm_writes[PREDICTIONS.logical_id] == 9000
    forward = serving["forward_seconds_per_batch"]
    assert 0 < forward < 5
    assert facts.seconds_per_batch == pytest.approx(forward * capacity.CLASSIFY_OVER_FORWARD * 16 / 32)
    assert "v1" in facts.seconds_source

    plan = make_plan(facts, 1_000_000, max_concurrency=5000)
    ceilings = {c.name: c.images_per_second for c in plan.ceilings}
    assert ceilings["DynamoDB PredictionsTable writes"] == 9000
    assert plan.binding.name == "S3 GET per prefix"  # the tiny digits model leaves S3 the first quota


def test_batchinfer_plan_on_the_local_stack_prints_the_binding_quota_and_the_cost(served: Any) -> None:
    result = cli_json("plan", "--images", "1000000", "--max-concurrency", "1000", "--seconds-per-batch", "0.5")
    assert result["binding"]["name"] == "DynamoDB PredictionsTable writes"
    assert result["images_per_second"] == 4000.0
    assert result["seconds_per_batch_source"] == "--seconds-per-batch"
    assert result["cost"]["total_usd"] == pytest.approx(sum(result["cost"]["usd"].values()), abs=0.02)
    assert result["slices"] == 10
    # The local stack's v1 was published without a timed batch: the plan says it takes the default.
    default = cli_json("plan", "--images", "1000")
    assert "records no time per batch" in default["seconds_per_batch_source"]
    text = cli("plan", "--images", "10000000", "--max-concurrency", "1000")
    assert text.exit_code == 0, text.output
    assert "binds first: DynamoDB PredictionsTable writes" in text.output
    assert "warning:" in text.output and "cost: $" in text.output


def test_a_bad_plan_request_fails_in_one_line() -> None:
    result = cli("plan", "--images", "0")
    assert result.exit_code == 2
