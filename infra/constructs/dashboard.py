"""Dashboard: one CloudWatch dashboard of what the pipeline does per minute, and what it costs per image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_pipes as pipes
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import DeployConfig
from lambdas.observability import (
    BATCHES_FAILED,
    COLD_START,
    FAILURE_STAGES,
    IMAGES_FAILED,
    IMAGES_SCORED,
    NAMESPACE,
    SERVICE,
)

# The benchmark's cost model keeps its prices here (data, not code: infra reads it, it does not import benchmarks).
PRICES_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "prices.json"
# What the cost estimate assumes beyond the measured metrics; benchmarks/cost.py makes the same assumptions.
PARENT_TRANSITIONS_PER_RUN = 6  # RouteByMode, ListNewVersions, AnythingToScore, Classify, Aggregate, end
# The COUNTED item (one plain put under 1 KB) and 1/32 of its batch's fold marker and result row (about 4 WRU).
WRITE_UNITS_PER_IMAGE = 1.125
MINUTE = cdk.Duration.minutes(1)


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


class Dashboard(Construct):
    """`<prefix>-pipeline`: images scored and failed by stage, ClassifyBatch's latency and health,
    Map Run failures, the dead-letter queue, pipe-started executions and the cost per 1,000 images."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        classify_function: lambda_.IFunction,
        state_machine: sfn.StateMachine,
        dead_letter_queue: sqs.IQueue,
        pipe: pipes.CfnPipe,
    ) -> None:
        super().__init__(scope, construct_id)
        service = {"service": SERVICE}

        def ours(name: str, label: str, extra: dict[str, str] | None = None) -> cloudwatch.Metric:
            return cloudwatch.Metric(namespace=NAMESPACE, metric_name=name, dimensions_map={**service, **(extra or {})},
                                     statistic="Sum", period=MINUTE, label=label)

        scored = ours(IMAGES_SCORED, "scored")
        failed_by_stage = [ours(IMAGES_FAILED, f"failed: {stage}", {"stage": stage}) for stage in FAILURE_STAGES]
        images = cloudwatch.GraphWidget(
            title="Images per minute: scored, and failed by stage", left=[scored], right=failed_by_stage,
            left_y_axis=cloudwatch.YAxisProps(min=0, label="scored"),
            right_y_axis=cloudwatch.YAxisProps(min=0, label="failed"), width=12, stacked=False,
        )
        duration = cloudwatch.GraphWidget(
            title="ClassifyBatch duration (ms)",
            left=[classify_function.metric_duration(statistic="p50", period=MINUTE, label="p50"),
                  classify_function.metric_duration(statistic="p99", period=MINUTE, label="p99")],
            left_y_axis=cloudwatch.YAxisProps(min=0), width=6,
        )
        health = cloudwatch.GraphWidget(
            title="ClassifyBatch cold starts, throttles, errors",
            left=[ours(COLD_START, "cold starts", {"function_name": classify_function.function_name}),
                  classify_function.metric_throttles(period=MINUTE, statistic="Sum", label="throttles"),
                  classify_function.metric_errors(period=MINUTE, statistic="Sum", label="errors")],
            left_y_axis=cloudwatch.YAxisProps(min=0), width=6,
        )
        map_runs = cloudwatch.GraphWidget(
            title="Map Run failures",
            left=[ours(BATCHES_FAILED, "batches failed after retries (caught, replayable)"),
                  state_machine.metric_failed(period=MINUTE, statistic="Sum", label="runs failed"),
                  state_machine.metric_timed_out(period=MINUTE, statistic="Sum", label="runs timed out"),
                  state_machine.metric_aborted(period=MINUTE, statistic="Sum", label="runs aborted")],
            left_y_axis=cloudwatch.YAxisProps(min=0), width=8,
        )
        dead_letters = cloudwatch.GraphWidget(
            title="Dead-letter queue depth (upload events that started no run)",
            left=[dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=MINUTE, statistic="Maximum", label="messages")],
            left_y_axis=cloudwatch.YAxisProps(min=0), width=8,
        )
        pipe_metrics = cloudwatch.GraphWidget(
            title="Pipe-started executions",
            left=[cloudwatch.Metric(namespace="AWS/EventBridge/Pipes", metric_name="Invocations",
                                    dimensions_map={"PipeName": pipe.ref}, statistic="Sum", period=MINUTE,
                                    label="executions started by the pipe"),
                  cloudwatch.Metric(namespace="AWS/EventBridge/Pipes", metric_name="ExecutionFailed",
                                    dimensions_map={"PipeName": pipe.ref}, statistic="Sum", period=MINUTE,
                                    label="pipe executions failed")],
            left_y_axis=cloudwatch.YAxisProps(min=0), width=8,
        )
        cost = cloudwatch.GraphWidget(
            title="Estimated cost per 1,000 images (USD, list prices)",
            left=[self.cost_per_thousand(load_prices(), config, classify_function, state_machine, scored,
                                         failed_by_stage)],
            left_y_axis=cloudwatch.YAxisProps(min=0), width=12,
        )
        prices = load_prices()
        note = cloudwatch.TextWidget(
            markdown=(
                f"### {config.prefix}\nImages and failures come from the functions' EMF metrics "
                f"(namespace `{NAMESPACE}`); the rest from Lambda, Step Functions, SQS and EventBridge Pipes. "
                f"The cost estimate uses the benchmark's cost model and its prices "
                f"({prices['region']}, {prices['as_of']}): ClassifyBatch compute and requests, the EXPRESS "
                f"Map children, {PARENT_TRANSITIONS_PER_RUN} parent transitions per run, "
                f"{WRITE_UNITS_PER_IMAGE} DynamoDB write units and one S3 GET per image."
            ),
            width=12, height=4,
        )
        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{config.prefix}-pipeline",
            default_interval=cdk.Duration.hours(3),
            widgets=[[images, duration, health], [map_runs, dead_letters, pipe_metrics], [cost, note]],
        )

    @staticmethod
    def cost_per_thousand(prices: dict[str, Any], config: DeployConfig, classify: lambda_.IFunction,
                          state_machine: sfn.StateMachine, scored: cloudwatch.Metric,
                          failed_by_stage: list[cloudwatch.Metric]) -> cloudwatch.MathExpression:
        """The benchmark's cost model applied to the measured minute: dollars spent / images scored × 1000."""
        lambda_prices = prices["lambda"]
        express = prices["stepfunctions_express"]
        standard = prices["stepfunctions_standard"]["per_thousand_state_transitions"] / 1000
        write_unit = prices["dynamodb_on_demand"]["per_million_write_request_units"] / 1_000_000
        s3_get = prices["s3_standard"]["per_thousand_get_requests"] / 1000
        memory_gb = config.classify_memory_mb / 1024
        def filled(name: str) -> str:  # a minute with no data point for one term still gets a value
            return f"FILL({name}, 0)"

        d, n, runs, s = filled("d"), filled("n"), filled("runs"), filled("s")
        failed = " + ".join(filled(f"f{i}") for i in range(len(failed_by_stage)))
        # One EXPRESS child per batch, billed at its minimum memory for about as long as the batch ran.
        dollars = (
            f"{d} / 1000 * {memory_gb} * {lambda_prices['per_gb_second']}"
            f" + {n} * {lambda_prices['per_million_requests'] / 1_000_000}"
            f" + {n} * {express['per_million_requests'] / 1_000_000}"
            f" + {d} / 1000 * {express['memory_billing_mb'] / 1024} * {express['per_gb_second']}"
            f" + {runs} * {PARENT_TRANSITIONS_PER_RUN * standard}"
            f" + {s} * {WRITE_UNITS_PER_IMAGE * write_unit}"
            f" + ({s} + {failed}) * {s3_get}"
        )
        using: dict[str, cloudwatch.IMetric] = {
            "d": classify.metric_duration(statistic="Sum", period=MINUTE),
            "n": classify.metric_invocations(statistic="Sum", period=MINUTE),
            "runs": state_machine.metric_started(statistic="Sum", period=MINUTE),
            "s": scored,
            **{f"f{i}": metric for i, metric in enumerate(failed_by_stage)},
        }
        return cloudwatch.MathExpression(
            expression=f"1000 * ({dollars}) / s", using_metrics=using, period=MINUTE,
            label="USD per 1,000 images scored",
        )
