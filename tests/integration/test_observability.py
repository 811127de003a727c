"""What Powertools records for a step: EMF metrics with a cold-start metric, logs correlated by run id."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from engine.lambda_bridge import LambdaContext
from lambdas.handlers import list_new_versions
from tests.conftest import upload

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(engine: Any) -> Any:
    """The empty stack with a model pointer in place: ListNewVersions lists only once a model serves."""
    from contract.resource_spec import POINTER_FILE

    bucket, _, prefix = engine.config.model_registry.removeprefix("s3://").partition("/")
    engine.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{POINTER_FILE}", Body=b'{"version": "v1"}')
    return engine


def test_a_step_emits_its_counts_and_a_cold_start_metric(engine: Any, monkeypatch: pytest.MonkeyPatch,
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    from aws_lambda_powertools.metrics.provider import cold_start

    for n in range(3):
        upload(engine, f"incoming/{n}.png", b"x")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # the engine turns them off for the terminal
    monkeypatch.setattr(cold_start, "is_cold_start", True)
    context = LambdaContext("list", 1024, "arn:aws:lambda:us-east-1:1:function:list", 60)
    capfd.readouterr()
    list_new_versions.handler({"run_id": "run-7", "input": {"mode": "score"}}, context)
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    emitted = {m["Name"]: sum(line[m["Name"]]) if isinstance(line[m["Name"]], list) else line[m["Name"]]
               for line in lines if "_aws" in line
               for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert emitted["ColdStart"] == 1.0
    assert emitted["ImagesListed"] == 3.0 and emitted["BatchesListed"] == 1.0 and emitted["EventsRejected"] == 0.0


def test_log_lines_carry_the_run_id_as_correlation_id(engine: Any) -> None:
    from lambdas.observability import logger

    buffer = io.StringIO()
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous_stream = handler.setStream(buffer)
    before = logger.log_level
    logger.setLevel("INFO")
    try:
        context = LambdaContext("list", 1024, "arn:aws:lambda:us-east-1:1:function:list", 60)
        list_new_versions.handler({"run_id": "run-8", "input": {"mode": "score"}}, context)
    finally:
        logger.setLevel(before)
        handler.setStream(previous_stream)
    logged = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert logged and all(line["correlation_id"] == "run-8" for line in logged)


def test_metrics_stay_quiet_and_do_not_pile_up_while_their_output_is_off(
    engine: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from aws_lambda_powertools.metrics.provider import cold_start

    from lambdas.observability import metrics

    monkeypatch.setattr(cold_start, "is_cold_start", True)
    context = LambdaContext("list", 1024, "arn:aws:lambda:us-east-1:1:function:list", 60)
    capsys.readouterr()
    for n in range(3):
        list_new_versions.handler({"run_id": f"run-{n}", "input": {"mode": "score"}}, context)
    assert metrics.provider.metric_set == {}
    assert "_aws" not in capsys.readouterr().out  # not even the cold-start metric
