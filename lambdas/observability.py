"""Logging and metrics in one place: JSON logs with run, batch and image ids; EMF metrics."""

from __future__ import annotations

import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

SERVICE = "batchinfer"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="batchinfer", service=SERVICE)
_metrics_lock = threading.Lock()


def publish_batch_metrics(scored: int, failed: int, seconds: float) -> None:
    """One EMF record for a classified batch.

    Locally (POWERTOOLS_METRICS_DISABLED, which the embedded engine sets) nothing is added at all:
    Powertools keeps disabled metrics, and prints them anyway once a metric holds 100 values, which
    put EMF JSON into the demo's output. The lock keeps batches on parallel threads (the local Map)
    from flushing one another's metrics, which Powertools reports as "No application metrics".
    """
    if is_metrics_disabled():
        return
    with _metrics_lock:
        metrics.add_metric(name="ImagesScored", unit="Count", value=scored)
        metrics.add_metric(name="ImagesFailed", unit="Count", value=failed)
        metrics.add_metric(name="BatchSeconds", unit="Seconds", value=seconds)
        metrics.flush_metrics()
