"""Metrics: EMF records in AWS; locally, with metrics off, nothing on stdout and no warnings."""

from __future__ import annotations

import json
import warnings

import pytest

from lambdas.observability import count, metrics

pytestmark = pytest.mark.unit


def test_disabled_metrics_print_nothing_however_many_batches(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No application metrics to publish" would fail here
        for _ in range(150):  # past Powertools' 100 values a metric, where it prints even when disabled
            count(ImagesScored=8)
        metrics.flush_metrics()
    assert capsys.readouterr().out == "" and not metrics.metric_set


def test_enabled_metrics_print_one_emf_record_a_flush(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "batchinfer")
    count(ImagesScored=8, ImagesFailed=1)
    metrics.flush_metrics()
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert (record["ImagesScored"], record["ImagesFailed"]) == ([8.0], [1.0])
