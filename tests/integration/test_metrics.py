"""The functions emit the CloudWatch metrics the dashboard shows (EMF lines on stdout, as in Lambda)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inference_image import handler as classify_handler
from lambdas import observability
from lambdas.handlers import record_batch_failure
from tests.conftest import png_bytes, upload
from tests.integration.test_handlers import context, listed_batch

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def metrics_on(scoring_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local engine turns metrics off; here they are on, as in Lambda. Metrics added while they
    were off (earlier tests in this process) were never flushed: start from none."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    observability.metrics.clear_metrics()


def _emitted(output: str) -> list[tuple[str, dict[str, str], float]]:
    """(metric name, dimensions, value) of every EMF record printed."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == observability.NAMESPACE
            dimensions = {d: str(record[d]) for group in directive["Dimensions"] for d in group}
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]  # a list when one flush holds several data points
                found.append((metric["Name"], dimensions, float(sum(value) if isinstance(value, list) else value)))
    return found


def test_classify_batch_emits_scored_failed_by_stage_and_cold_start(
        scoring_engine: Any, held_out_digits: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    from aws_lambda_powertools.metrics.provider import cold_start

    for digit in held_out_digits[:4]:
        upload(scoring_engine, f"incoming/{digit.index}.png", digit.png)
    upload(scoring_engine, "incoming/broken.png", b"\x89PNG\r\n\x1a\n garbage")
    batch = listed_batch(scoring_engine)
    capsys.readouterr()
    cold_start.reset_cold_start_flag()
    classify_handler.handler({"run_id": "run-1", "batch": batch}, context("classify"))
    emitted = _emitted(capsys.readouterr().out)
    service = {"service": observability.SERVICE}
    assert (observability.IMAGES_SCORED, service, 4.0) in emitted
    assert (observability.IMAGES_FAILED, service, 1.0) in emitted
    assert (observability.IMAGES_FAILED, {**service, "stage": "decode"}, 1.0) in emitted
    assert (observability.COLD_START, {**service, "function_name": "classify"}, 1.0) in emitted


def test_record_batch_failure_emits_the_failed_batch_and_its_items(
        scoring_engine: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for n in range(3):
        upload(scoring_engine, f"incoming/{n}.png", png_bytes())
    batch = listed_batch(scoring_engine)
    error = {"Error": "RuntimeError", "Cause": json.dumps({"errorType": "RuntimeError", "errorMessage": "boom"})}
    capsys.readouterr()
    record_batch_failure.handler({"run_id": "run-1", "batch": batch, "error": error}, context("record"))
    emitted = _emitted(capsys.readouterr().out)
    service = {"service": observability.SERVICE}
    assert (observability.BATCHES_FAILED, service, 1.0) in emitted
    assert (observability.IMAGES_FAILED, {**service, "stage": "batch"}, 3.0) in emitted
