"""Logging and metrics in one place: JSON logs with run, batch and image ids; EMF metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider import cold_start

SERVICE = "batchinfer"
NAMESPACE = "batchinfer"

# The metrics the functions emit (namespace NAMESPACE, dimension service=SERVICE); the CloudWatch
# dashboard shows them and its tests hold it to this list.
IMAGES_SCORED = "ImagesScored"
IMAGES_FAILED = "ImagesFailed"  # per batch; and once more per failure stage, with a `stage` dimension
BATCH_SECONDS = "BatchSeconds"
BATCHES_FAILED = "BatchesFailed"  # batches that still failed after their retries (caught in the Map)
COLD_START = "ColdStart"  # Powertools' own, with a function_name dimension
FAILURE_STAGES = ("read", "decode", "batch")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count_failures_by_stage(stages: Iterable[str]) -> None:
    """One ImagesFailed data point per stage seen, so the dashboard can split failures by stage."""
    if is_metrics_disabled():  # as the other metrics are (the local engine turns them off)
        return
    for stage, count in Counter(stages).items():
        with single_metric(name=IMAGES_FAILED, unit=MetricUnit.Count, value=count, namespace=NAMESPACE,
                           default_dimensions={"service": SERVICE}) as metric:
            metric.add_dimension(name="stage", value=stage)


def count_cold_start(context: Any) -> None:
    """Powertools' ColdStart metric (dimensions function_name, service), once per process.

    Not `log_metrics(capture_cold_start_metric=True)`: that prints the metric even where metrics are
    turned off, and on the embedded engine the handlers share stdout with the CLI's --json output.
    """
    if not cold_start.is_cold_start:
        return
    cold_start.is_cold_start = False
    if not is_metrics_disabled():
        metrics.provider.add_cold_start_metric(context)
