"""Batch metrics: EMF records in AWS; locally, with metrics off, nothing on stdout and no warnings."""

from __future__ import annotations

import json
import warnings

import pytest

from lambdas.observability import metrics, publish_batch_metrics

pytestmark = pytest.mark.unit


def test_disabled_metrics_print_nothing_however_many_batches(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No application metrics to publish" would fail here
        for _ in range(150):  # past Powertools' 100 values a metric, where it prints even when disabled
            publish_batch_metrics(8, 0, 0.5)
    assert capsys.readouterr().out == "" and not metrics.metric_set


def test_enabled_metrics_print_one_emf_record_a_batch(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "batchinfer")
    publish_batch_metrics(8, 1, 0.5)
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert (record["ImagesScored"], record["ImagesFailed"], record["BatchSeconds"]) == ([8.0], [1.0], [0.5])
