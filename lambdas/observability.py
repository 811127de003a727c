"""Logging, tracing and metrics in one place: JSON logs correlated by run id, X-Ray traces with
every AWS call of the stores as a sub-segment, EMF metrics with a cold-start metric."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

SERVICE = "batchinfer"
# Every step's event carries the execution's run id at the top: it is each log line's correlation id.
RUN_ID_PATH = "run_id"



class _EMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF metrics, quiet when their output is disabled. Powertools keeps a disabled
    flush's metrics (a long-lived local engine would pile them up forever) and prints the cold-start
    metric even when disabled (on the embedded engine, into the CLI's --json output)."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        super().flush_metrics(raise_on_empty_metrics)
        if is_metrics_disabled():
            self.clear_metrics()

    def add_cold_start_metric(self, context: Any) -> None:
        if not is_metrics_disabled():
            super().add_cold_start_metric(context)


logger = Logger(service=SERVICE)
metrics = Metrics(provider=_EMFProvider(namespace="batchinfer", service=SERVICE))
# Patches botocore, so each store call (S3, DynamoDB) is a sub-segment of the handler's trace.
# Off outside Lambda and on the embedded engine (POWERTOOLS_TRACE_DISABLED): no X-Ray daemon there.
tracer = Tracer(service=SERVICE)


def count(**figures: float) -> None:
    """Count metrics of one invocation (flushed by the handler's log_metrics)."""
    for name, value in figures.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
