"""Logging, tracing and metrics in one place: JSON logs correlated by run id (with batch and image
ids), X-Ray traces with every AWS call of the stores as a sub-segment, EMF metrics."""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from lambdas import throttles

SERVICE = "batchinfer"
NAMESPACE = "batchinfer"
# Every step's event carries the execution's run id at the top: it is each log line's correlation id.
RUN_ID_PATH = "run_id"

# The metrics the functions emit (namespace NAMESPACE, dimension service=SERVICE); the CloudWatch
# dashboard shows them and its tests hold it to this list.
IMAGES_SCORED = "ImagesScored"
IMAGES_FAILED = "ImagesFailed"  # per batch; and once more per failure stage, with a `stage` dimension
BATCH_SECONDS = "BatchSeconds"
BATCHES_FAILED = "BatchesFailed"  # batches that still failed after their retries (caught in the Map)
COLD_START = "ColdStart"  # Powertools' own, with a function_name dimension
FAILURE_STAGES = ("read", "decode", "batch")
# AWS requests throttled (and retried by the SDK) during an invocation, with an `aws_service` dimension.
THROTTLED_REQUESTS = "ThrottledRequests"


class _EMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' EMF metrics, quiet when their output is disabled, and safe across threads.

    With metrics disabled (the embedded engine sets POWERTOOLS_METRICS_DISABLED) nothing is kept:
    Powertools would keep disabled metrics, print them anyway once a metric holds 100 values (EMF
    JSON in the demo's output), warn "No application metrics to publish" on an empty flush, and print
    the cold-start metric (into the CLI's --json output). The lock matters locally only, where batches
    run on parallel threads of one process and share this object; in Lambda one invocation runs at a time.
    """

    _lock = threading.RLock()

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = 60) -> None:
        if is_metrics_disabled():
            return
        with self._lock:
            super().add_metric(name, unit, value, resolution)

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if is_metrics_disabled():
            self.clear_metrics()
            return
        with self._lock:
            super().flush_metrics(raise_on_empty_metrics)

    def add_cold_start_metric(self, context: Any) -> None:
        if not is_metrics_disabled():
            super().add_cold_start_metric(context)


logger = Logger(service=SERVICE)
metrics = Metrics(provider=_EMFProvider(namespace=NAMESPACE, service=SERVICE))
# Patches botocore, so each store call (S3, DynamoDB) is a sub-segment of the handler's trace.
# Off outside Lambda and on the embedded engine (POWERTOOLS_TRACE_DISABLED): no X-Ray daemon there.
tracer = Tracer(service=SERVICE)


def count(**figures: float) -> None:
    """Count metrics of one invocation (flushed by the handler's log_metrics)."""
    for name, value in figures.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_failures_by_stage(stages: Iterable[str]) -> None:
    """One ImagesFailed data point per stage seen, so the dashboard can split failures by stage."""
    if is_metrics_disabled():  # as the other metrics are (the local engine turns them off)
        return
    for stage, n in Counter(stages).items():
        with single_metric(name=IMAGES_FAILED, unit=MetricUnit.Count, value=n, namespace=NAMESPACE,
                           default_dimensions={"service": SERVICE}) as metric:
            metric.add_dimension(name="stage", value=stage)


def report_throttled(counts: Mapping[str, int]) -> None:
    """An invocation's throttled AWS requests: a log line and a ThrottledRequests data point per service."""
    if not counts:
        return
    logger.warning("AWS requests throttled (retried)", extra={"throttled": dict(counts)})
    if is_metrics_disabled():
        return
    for service, n in counts.items():
        with single_metric(name=THROTTLED_REQUESTS, unit=MetricUnit.Count, value=n, namespace=NAMESPACE,
                           default_dimensions={"service": SERVICE}) as metric:
            metric.add_dimension(name="aws_service", value=service)


Handler = TypeVar("Handler", bound=Callable[..., Any])


def counts_throttles(handler: Handler) -> Handler:
    """Count the invocation's throttled AWS requests (lambdas/throttles.py) and report them when it ends, failed
    or not. Goes under the logger's and the metrics' decorators: the log line carries the run id, and the metric
    is flushed with the others."""

    @functools.wraps(handler)
    def counted(*args: Any, **kwargs: Any) -> Any:
        with throttles.counting() as tally:
            try:
                return handler(*args, **kwargs)
            finally:
                report_throttled(tally.counts())

    return counted  # type: ignore[return-value]
