"""The capacity plan (contract/capacity.py): which limit binds first as a deployment grows, how long a backlog
takes, what it costs, and the history events of the parent execution."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from benchmarks import cost
from contract import capacity
from contract.capacity import Deployment
from contract.resource_spec import PREDICTIONS
from contract.settings import Settings
from engine.local_engine import LocalConfig
from infra.config import ConfigError, DeployConfig

pytestmark = pytest.mark.unit

TEN_MILLION = 10_000_000


def test_the_default_deployment_is_bound_by_its_own_max_concurrency_below_a_new_tables_writes() -> None:
    plan = capacity.plan(DeployConfig().deployment(), TEN_MILLION)
    assert plan.binding.name == "max_concurrency" and plan.binding.kind == "setting"
    assert plan.binding_quota.name == "DynamoDB PredictionsTable writes"
    assert plan.images_per_second == pytest.approx(68 * 32 / capacity.DEFAULT_SECONDS_PER_BATCH)
    assert plan.headroom == pytest.approx(4000 / plan.images_per_second)
    assert plan.warnings == ()


def test_at_a_thousand_batches_the_new_predictions_table_binds_and_s3_is_next() -> None:
    plan = capacity.plan(replace(DeployConfig().deployment(), max_concurrency=1000), TEN_MILLION)
    assert plan.binding.name == "DynamoDB PredictionsTable writes"
    assert plan.images_per_second == 4000  # 4,000 write units a second, one COUNTED item an image
    assert plan.next_ceiling is not None and plan.next_ceiling.name == "S3 GET per prefix"
    assert plan.headroom == pytest.approx(5500 / 4000)
    assert any("PredictionsTable" in w and "warm throughput of 5,500" in w for w in plan.warnings)


def test_warm_throughput_and_more_shards_move_the_bound_to_s3() -> None:
    config = DeployConfig.from_values({"max_concurrency": 1000, "predictions_warm_writes": 12_000, "count_shards": 16})
    plan = capacity.plan(config.deployment(), TEN_MILLION)
    assert plan.binding.name == "S3 GET per prefix"
    assert plan.next_ceiling is not None and plan.next_ceiling.images_per_second == 12_000
    assert not any("PredictionsTable" in w for w in plan.warnings)


def test_few_count_shards_bind_a_one_day_backlog_on_the_index_partitions() -> None:
    deployment = Deployment(max_concurrency=1000, count_shards=2, warm_writes={PREDICTIONS.logical_id: 20_000})
    plan = capacity.plan(deployment, 1_000_000)
    assert plan.binding.name == "DynamoDB by_date index partitions (one day)"
    assert plan.images_per_second == 2 * 1000


def test_an_account_with_little_lambda_concurrency_binds_and_is_warned_about() -> None:
    plan = capacity.plan(Deployment(max_concurrency=50, account_concurrency=10), 100_000, seconds_per_batch=1.0)
    assert plan.binding.name == "Lambda account concurrency"
    assert plan.images_per_second == 10 * 32
    assert any("above the account's Lambda concurrency (10)" in w for w in plan.warnings)


def test_standard_children_add_the_state_transition_bucket() -> None:
    names = {c.name for c in capacity.plan(Deployment(children="STANDARD"), 1000).ceilings}
    assert "Step Functions state transitions" in names
    assert "Step Functions state transitions" not in {c.name for c in capacity.plan(Deployment(), 1000).ceilings}


def test_wall_time_is_the_backlog_at_the_binding_rate_plus_half_lambdas_ramp() -> None:
    plan = capacity.plan(Deployment(max_concurrency=2000, warm_writes={PREDICTIONS.logical_id: 40_000},
                                    count_shards=64, image_prefixes=10), 1_000_000, seconds_per_batch=2.0)
    assert plan.binding.name == "Lambda account concurrency"
    assert plan.ramp_seconds == 10.0  # 1,000 environments at 1,000 every 10 s
    assert plan.wall_seconds == pytest.approx(1_000_000 / (1000 * 32 / 2.0) + 5.0)


def test_slices_and_history_events_keep_the_parent_under_25000_events() -> None:
    assert capacity.HISTORY_EVENTS_PER_RUN + capacity.SLICES_PER_EXECUTION * capacity.HISTORY_EVENTS_PER_SLICE \
        <= capacity.HISTORY_EVENTS_LIMIT * capacity.HISTORY_MARGIN
    plan = capacity.plan(Deployment(max_images_per_run=100_000), TEN_MILLION)
    assert plan.slices == 100 and plan.executions == 1
    assert plan.history_events == capacity.HISTORY_EVENTS_PER_RUN + 100 * capacity.HISTORY_EVENTS_PER_SLICE
    huge = capacity.plan(Deployment(max_images_per_run=1000), TEN_MILLION)
    assert huge.slices == 10_000
    assert huge.executions == math.ceil(10_000 / capacity.SLICES_PER_EXECUTION)
    assert huge.history_events < capacity.HISTORY_EVENTS_LIMIT
    assert any("continues as new" in w for w in huge.warnings)


def test_the_write_layout_is_the_benchs_116_write_units_an_image() -> None:
    assert capacity.WRITE_UNITS_PER_IMAGE == 1.16
    assert capacity.fold_marker_write_units(32) == 4  # the 3.3 KB fold marker `make bench` measures


def test_the_cost_of_a_million_images_is_the_benchs_model() -> None:
    prices = capacity.load_prices()
    seconds = capacity.DEFAULT_SECONDS_PER_BATCH
    plan = capacity.plan(Deployment(batch_size=32, max_images_per_run=10_000), capacity.MILLION, seconds)
    bench = cost.ours(prices, seconds / 32, Deployment().classify_memory_mb, 32, capacity.layout_writes(32),
                      "EXPRESS")
    assert plan.cost == bench
    assert plan.cost["total_usd"] == pytest.approx(sum(plan.cost["usd"].values()), abs=0.02)
    ten = capacity.plan(Deployment(batch_size=32), 10 * capacity.MILLION, seconds)
    assert ten.cost["usd"]["dynamodb"] == pytest.approx(10 * plan.cost["usd"]["dynamodb"], rel=0.01)


def test_settings_that_cannot_work_are_errors() -> None:
    assert capacity.deployment_errors(Deployment(max_concurrency=10_001))
    [low] = capacity.deployment_errors(Deployment(warm_writes={PREDICTIONS.logical_id: 20}))
    assert "below one batch's 32" in low
    [below_new] = capacity.deployment_errors(Deployment(warm_writes={PREDICTIONS.logical_id: 3000}))
    assert "below the 4,000 a new on-demand table sustains" in below_new
    with pytest.raises(ConfigError, match="predictions_warm_writes|warm throughput of PredictionsTable"):
        DeployConfig.from_values({"predictions_warm_writes": 20})


def test_the_deployed_defaults_come_from_the_plan() -> None:
    assert DeployConfig().max_concurrency == capacity.recommended_max_concurrency() == 68
    # The functions' default is the deployment's; the local engine keeps its own small one (threads on one machine).
    assert Settings.max_concurrency == 68 and LocalConfig().max_concurrency == 2
    assert DeployConfig().count_shards >= capacity.recommended_count_shards()
    assert capacity.recommended_count_shards(12_000) == 15


def test_a_plan_needs_images_and_a_positive_time() -> None:
    with pytest.raises(ValueError, match="images"):
        capacity.plan(Deployment(), 0)
    with pytest.raises(ValueError, match="seconds per batch"):
        capacity.plan(Deployment(), 10, seconds_per_batch=0)


def test_the_bench_holds_the_plan_when_it_names_the_engines_bound_quota_within_a_quarter() -> None:
    from benchmarks import plan_check
    from engine.throttling import Quotas

    quotas = Quotas.parse("dynamodb.partition_writes=12")
    deployment = plan_check.engine_deployment(quotas, batch_size=16, max_concurrency=4)
    plan = capacity.plan(deployment, 720, seconds_per_batch=0.2)
    assert plan.binding.name == "DynamoDB PredictionsTable writes" and plan.images_per_second == 48
    holds = plan_check.compare(plan, 40.0, {"dynamodb": 300, "s3": 0, "lambda": 0})
    assert holds["names_the_quota"] and holds["within_tolerance"] and holds["holds"]
    too_slow = plan_check.compare(plan, 30.0, {"dynamodb": 300, "s3": 0, "lambda": 0})
    assert too_slow["names_the_quota"] and not too_slow["within_tolerance"] and not too_slow["holds"]
    wrong = plan_check.compare(plan, 47.0, {"dynamodb": 0, "s3": 90, "lambda": 0})
    assert wrong["engine_bound"] == "s3" and not wrong["holds"]
    assert plan_check.target(holds)["holds"] and not plan_check.target(wrong)["holds"]
    failed = plan_check.target({"error": "RuntimeError: boom", "holds": False})
    assert not failed["holds"] and "boom" in failed["measured"]
    unthrottled = plan_check.engine_deployment(Quotas(), batch_size=16, max_concurrency=4)
    assert capacity.plan(unthrottled, 720, seconds_per_batch=0.2).binding.name == "max_concurrency"
