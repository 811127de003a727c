"""Logging and metrics in one place: JSON logs with run, batch and image ids; EMF metrics."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

SERVICE = "batchinfer"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace="batchinfer", service=SERVICE)
