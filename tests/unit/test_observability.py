"""Metrics: EMF records in AWS; locally, with metrics off, nothing on stdout and no warnings."""

from __future__ import annotations

import json
import threading
import warnings
from typing import Any

import pytest

from lambdas import throttles
from lambdas.observability import THROTTLED_REQUESTS, count, counts_throttles, metrics

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


# -- throttled requests ----------------------------------------------------------------------------------
THROTTLED_BODY = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                             "message": "The level of configured provisioned throughput for the table was exceeded."})


def _dynamodb_answering(answers: list[tuple[int, str]]) -> Any:
    """A real botocore DynamoDB client whose HTTP answers are `answers`, in turn (no network, no moto): the SDK
    parses, retries and emits its events as it does against AWS."""
    import boto3
    from botocore.awsrequest import AWSResponse, HTTPHeaders
    from botocore.config import Config

    client = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
                          # More attempts than any test has throttled answers: however threads interleave, one
                          # request may take them all and still get its answer.
                          config=Config(retries={"mode": "standard", "max_attempts": 8}))
    lock = threading.Lock()

    def answer(request: Any, **_: Any) -> AWSResponse:
        with lock:
            status, body = answers.pop(0) if answers else (200, "{}")
        return AWSResponse(request.url, status, HTTPHeaders.from_dict({"x-amzn-requestid": "r"}), _Raw(body.encode()))

    client.meta.events.register("before-send.dynamodb", answer)  # type: ignore[arg-type]  # it answers the call
    return throttles.watch(client)


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


def test_a_throttled_request_the_sdk_retries_is_counted_in_the_invocations_tally(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda *_: 0)
    client = _dynamodb_answering([(400, THROTTLED_BODY), (400, THROTTLED_BODY), (200, '{"Item": {}}')])
    client.get_item(TableName="t", Key={"pk": {"S": "a"}})  # outside an invocation: nothing is kept
    client = _dynamodb_answering([(400, THROTTLED_BODY), (400, THROTTLED_BODY), (200, '{"Item": {}}')])
    with throttles.counting() as tally:
        response = client.get_item(TableName="t", Key={"pk": {"S": "a"}})
        assert throttles.current() == {"dynamodb": 2}
    assert response["ResponseMetadata"]["RetryAttempts"] == 2  # the SDK rode them out silently
    assert tally.counts() == {"dynamodb": 2} and throttles.current() == {}


def test_pool_threads_count_in_their_invocation_and_concurrent_invocations_apart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine runs batches on threads sharing one client; a batch's own pool carries its tally along."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda *_: 0)
    client = _dynamodb_answering([(400, THROTTLED_BODY)] * 6)
    request = {"TableName": "t", "Key": {"pk": {"S": "a"}}}

    def invocation(calls: int) -> dict[str, int]:
        with throttles.counting():
            with ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(throttles.carrying_context(lambda _: client.get_item(**request)), range(calls)))
            return throttles.current()

    with ThreadPoolExecutor(max_workers=2) as invocations:
        first, second = invocations.map(invocation, (1, 2))
    assert sum(first.values()) + sum(second.values()) == 6  # every throttle answered, each in one tally
    assert first.keys() <= {"dynamodb"} and second.keys() <= {"dynamodb"}


@pytest.mark.parametrize(("parsed", "throttled"), [
    ({"Error": {"Code": "SlowDown"}}, True),
    ({"Error": {"Code": "TooManyRequestsException"}}, True),
    ({"Error": {"Code": "RequestLimitExceeded"}}, True),
    ({"Error": {"Code": "TransactionCanceledException"},
      "CancellationReasons": [{"Code": "None"}, {"Code": "ThrottlingError"}]}, True),
    ({"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": [{"Code": "ConditionalCheckFailed"}]},
     False),
    ({"UnprocessedItems": {"t": [{"PutRequest": {}}]}}, True),
    ({"UnprocessedItems": {}}, False),
    ({"Error": {"Code": "ConditionalCheckFailedException"}}, False),
    (None, False),
])
def test_what_counts_as_throttled(parsed: Any, throttled: bool) -> None:
    assert throttles.is_throttled(parsed) is throttled


def test_the_run_summary_sums_its_batches_throttles() -> None:
    from decimal import Decimal

    results: list[dict[str, Any]] = [{"throttled": {"dynamodb": Decimal(3)}}, {},
                                     {"throttled": {"dynamodb": 1, "s3": 2}}]
    assert throttles.total(results) == {"dynamodb": 4, "s3": 2}
    assert throttles.total([{}, {"throttled": {}}]) == {}


def test_an_invocation_reports_its_throttles_in_a_log_line_and_a_metric_per_service(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")

    @counts_throttles
    def handler(event: Any, context: Any) -> dict[str, Any]:
        tally = throttles._tally.get()
        assert tally is not None
        tally.add("dynamodb", 3)
        tally.add("s3")
        raise RuntimeError("the batch failed")  # reported all the same

    with pytest.raises(RuntimeError):
        handler({}, None)
    (log,) = [r for r in caplog.records if r.getMessage() == "AWS requests throttled (retried)"]
    assert log.levelname == "WARNING" and log.throttled == {"dynamodb": 3, "s3": 1}  # type: ignore[attr-defined]
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emitted = {(r["aws_service"], r[THROTTLED_REQUESTS][0]) for r in records if THROTTLED_REQUESTS in r}
    assert emitted == {("dynamodb", 3.0), ("s3", 1.0)}
