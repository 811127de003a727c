"""Faults: Lambda errors, timeouts and throttles are retried by the definition's policy, then
caught and recorded; DynamoDB throttling loses no write; S3 read errors are retried or recorded
as they deserve; a crash in the middle of a batch, then a replay, leaves the counts exact."""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.config import Config
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from engine import lambda_bridge
from engine.faults import FaultPlan, FaultSpecError
from lambdas.records import Failure, ImageVersion, Prediction
from lambdas.stores import FailureStore, PredictionStore, scan_all
from tests.conftest import counted_rows, output_of, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.reliability


def make_engine(demo_model: Any, name: str, faults: str = "", batch_size: int = 4) -> Any:
    from demo import digits
    from engine.local_engine import LocalConfig, LocalEngine
    from lambdas.model_registry import ModelRegistry

    engine = LocalEngine(LocalConfig(name=name, batch_size=batch_size, max_concurrency=2, faults=faults))
    engine.start()
    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
    registry.promote("v1")
    return engine


@pytest.fixture
def fault_engine(request: pytest.FixtureRequest, demo_model: Any) -> Iterator[Any]:
    engine = make_engine(demo_model, "rel-faults", getattr(request, "param", ""))
    try:
        yield engine
    finally:
        engine.stop()


def seed(engine: Any, digits: list[Any], count: int) -> list[str]:
    return [upload(engine, f"incoming/{d.index:04d}.png", d.png) for d in digits[:count]]


def failures_of(engine: Any, run_id: str) -> dict[str, dict[str, Any]]:
    rows = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run(run_id)
    return {r["image"]["key"]: r for r in rows}


def batch_of(key: str, batches: list[dict[str, Any]]) -> str:
    return next(b["batch_id"][-5:] for b in batches for i in b["items"] if i["key"] == key)


# -- Lambda errors, timeouts and throttles, through the fault plan ----------------------------------
PLAN = ",".join([
    "ClassifyBatch:throttle:batch-00000:2",  # clears after two attempts: retried, then scored
    "ClassifyBatch:timeout:batch-00001:1",  # one timeout: retried, then scored
    "ClassifyBatch:throttle:batch-00002",  # never clears: retried four times, then recorded
    "ClassifyBatch:error:batch-00003",  # never clears: retried twice, then recorded
])


@pytest.mark.parametrize("fault_engine", [PLAN], indirect=True)
def test_throttles_timeouts_and_errors_are_retried_then_caught(fault_engine: Any, held_out_digits: list[Any]) -> None:
    engine = fault_engine
    seed(engine, held_out_digits, 20)  # five batches of four
    description = engine.run({"mode": "score"}, timeout=600)
    assert description["status"] == "SUCCEEDED", description
    summary = output_of(description)
    assert summary["images_scored"] == 12 and summary["images_failed"] == 8

    injected = engine.faults.injected
    by_batch: dict[tuple[str, str | None], int] = {}
    for _, kind, batch_id in injected:
        key = (kind, batch_id[-5:] if batch_id else None)
        by_batch[key] = by_batch.get(key, 0) + 1
    assert by_batch == {("throttle", "00000"): 2, ("timeout", "00001"): 1, ("throttle", "00002"): 5,
                        ("error", "00003"): 3}

    failures = list(failures_of(engine, summary["run_id"]).values())
    reasons = {f["batch_id"][-5:]: (f["error_type"], f["reason"]) for f in failures}
    assert set(reasons) == {"00002", "00003"}
    assert reasons["00002"][0] == "Lambda.TooManyRequestsException"
    assert "failed after its retries: Lambda.TooManyRequestsException: Rate Exceeded" in reasons["00002"][1]
    assert reasons["00003"][0] == "InjectedError"
    rows = prediction_rows(engine)
    assert {r["batch_id"][-5:] for r in rows} == {"00000", "00001", "00004"} and len(rows) == 12
    assert stored_counts(engine) == recount(engine) == summary["daily_counts"]


def test_the_fault_switch_reads_its_setting_and_refuses_bad_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.local_engine import LocalConfig, LocalEngine

    monkeypatch.setenv("BATCHINFER_FAULTS", "ClassifyBatch:throttle:2, ListNewVersions:error")
    engine = LocalEngine(LocalConfig())
    assert engine.faults.describe() == ["ClassifyBatch: throttle on the first 2 invocation(s)",
                                        "ListNewVersions: error on every invocation"]
    for bad, message in [
        ("ClassifyBatch", "expected FUNCTION:KIND"),
        ("Classify:error", "unknown function 'Classify'"),
        ("ClassifyBatch:explode", "unknown kind 'explode'"),
        ("ClassifyBatch:error:0", "'0' is neither a count above zero nor batch-NNNNN"),
        ("ClassifyBatch:error:3:2", "TIMES only follows a batch-NNNNN"),
    ]:
        with pytest.raises(FaultSpecError, match=message):
            FaultPlan.parse(bad)
    from cli.app import app

    for command in (["demo"], ["local", "serve"]):
        result = CliRunner().invoke(app, [*command, "--fault", "ClassifyBatch:explode"])
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [
            "error: bad fault 'ClassifyBatch:explode': unknown kind 'explode'; choose one of error, throttle, timeout"]


def test_the_demo_rehearses_a_failing_batch(demo_model: Any) -> None:
    from cli.app import app

    result = CliRunner().invoke(app, ["demo", "--images", "16", "--batch-size", "8", "--concurrency", "3",
                                      "--fault", "ClassifyBatch:error:batch-00000"])
    assert result.exit_code == 0, result.output
    # The first batch (eight digits) fails for good; the three bad objects fail on their own.
    assert "images scored: 8   failed: 11" in result.output
    assert "InjectedError" in result.output
    assert re.search(r"whole workflow, 3\s+batches in flight", result.output), result.output


# -- DynamoDB throttling ------------------------------------------------------------------------------
class ThrottledDynamoDB:
    """The real (moto) client, but the first calls of each kind are throttled as DynamoDB throttles
    them: batch items left unprocessed, batch keys handed back, and a ProvisionedThroughputExceededException
    on the wire of BatchWriteItem and of the predictions' conditional PutItem, for botocore's own retries."""

    def __init__(self, client: Any, throttled_calls: int = 2):
        self._client = client
        self._left = {"put": throttled_calls, "batch_write": throttled_calls, "batch_get": throttled_calls}
        self.throttled: dict[str, int] = {k: 0 for k in self._left}
        self._lock = threading.Lock()
        self._wire = {"left": throttled_calls}
        client.meta.events.register_first("before-send.dynamodb.BatchWriteItem", self._on_the_wire)
        client.meta.events.register_first("before-send.dynamodb.PutItem", self._put_on_the_wire)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def _take(self, kind: str) -> bool:
        with self._lock:
            if self._left[kind] > 0:
                self._left[kind] -= 1
                self.throttled[kind] += 1
                return True
            return False

    @staticmethod
    def _throttled_response(request: Any) -> AWSResponse:
        body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                           "message": "The level of configured provisioned throughput for the table was exceeded."})

        class Raw(io.BytesIO):
            def stream(self, **_: Any) -> Iterator[bytes]:
                yield self.getvalue()

        headers = HTTPHeaders.from_dict({"x-amzn-RequestId": "throttled"})
        return AWSResponse(request.url, 400, headers, Raw(body.encode()))

    def _on_the_wire(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        with self._lock:
            if self._wire["left"] <= 0:
                return None
            self._wire["left"] -= 1
        return self._throttled_response(request)

    def _put_on_the_wire(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        return self._throttled_response(request) if self._take("put") else None

    def batch_write_item(self, **kwargs: Any) -> Any:
        if not self._take("batch_write"):
            return self._client.batch_write_item(**kwargs)
        # Write half, hand the other half back unprocessed.
        processed: dict[str, Any] = {}
        unprocessed: dict[str, Any] = {}
        for table, requests in kwargs["RequestItems"].items():
            half = len(requests) // 2
            processed[table], unprocessed[table] = requests[:half], requests[half:]
        if any(processed.values()):
            self._client.batch_write_item(RequestItems={t: r for t, r in processed.items() if r})
        return {"UnprocessedItems": {t: r for t, r in unprocessed.items() if r}}

    def batch_get_item(self, **kwargs: Any) -> Any:
        if self._take("batch_get"):
            return {"Responses": {}, "UnprocessedKeys": kwargs["RequestItems"]}
        return self._client.batch_get_item(**kwargs)


def test_dynamodb_throttling_is_retried_and_no_write_is_lost(engine: Any) -> None:
    client = engine.client("dynamodb")
    # Configured as lambdas/dependencies.py configures the functions' clients.
    retrying = boto3.client("dynamodb", region_name=engine.config.region,
                            config=Config(retries={"mode": "standard", "max_attempts": 8}))
    throttled = ThrottledDynamoDB(retrying)
    store = PredictionStore(throttled, engine.predictions_table, engine.counts_table, 8)
    failures = FailureStore(throttled, engine.failures_table)
    images = [ImageVersion("b", f"incoming/{n:03d}.png", f"v{n}", "2026-03-0{}T10:00:00+00:00".format(1 + n % 3))
              for n in range(90)]
    predictions = [Prediction(image=i, predicted_class=str(n % 4), confidence=0.9, probabilities={str(n % 4): 0.9},
                              model_version="v1", run_id="run-1", batch_id="b-0", date=i.last_modified[:10])
                   for n, i in enumerate(images[:60])]
    outcome = store.write(predictions)
    failed = [Failure(image=i, stage="decode", reason="not an image", error_type="BadImage", run_id="run-1",
                      batch_id="b-0") for i in images[60:]]
    failures.record(failed)
    store.mark_failed(failed)
    ledger = store.ledger([i.image_id for i in images])

    assert throttled.throttled == {"put": 2, "batch_write": 2, "batch_get": 2}
    assert throttled._wire["left"] == 0  # botocore retried the throttled requests on the wire
    assert len(outcome.written) == 60 and len(outcome.counted) == 60 and not outcome.duplicates
    assert len(prediction_rows(engine)) == 60 and len(counted_rows(engine)) == 60
    assert len(list(scan_all(client, TableName=engine.failures_table))) == 30
    assert sum(1 for marks in ledger.values() if marks == {"FAILED"}) == 30
    expected: dict[str, dict[str, int]] = {}
    for p in predictions:
        expected.setdefault(p.date, {}).setdefault(p.predicted_class, 0)
        expected[p.date][p.predicted_class] += 1
    assert {d: store.day_counts(d) for d in expected} == expected


# -- S3 read errors -----------------------------------------------------------------------------------
class FlakyS3:
    """The real (moto) S3 client; GetObject of chosen keys fails as S3 fails it, after botocore's
    own retries: `transient` keys with SlowDown for their first `times` reads, `denied` keys always."""

    def __init__(self, client: Any, transient: set[str], denied: set[str], times: int = 1):
        self._client = client
        self.transient, self.denied = transient, denied
        self._left = {k: times for k in transient}
        self.raised: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_object(self, **kwargs: Any) -> Any:
        key = kwargs["Key"]
        code = None
        with self._lock:
            if key in self.denied:
                code = "AccessDenied"
            elif self._left.get(key, 0) > 0:
                self._left[key] -= 1
                code = "SlowDown"
            if code:
                self.raised.append((key, code))
        if code:
            raise ClientError({"Error": {"Code": code, "Message": f"{code} (test double)"}}, "GetObject")
        return self._client.get_object(**kwargs)


def test_s3_read_errors_transient_ones_retried_denied_ones_recorded(
    fault_engine: Any, held_out_digits: list[Any]
) -> None:
    from lambdas.dependencies import stores

    engine = fault_engine
    seed(engine, held_out_digits, 12)  # three batches of four
    slow, denied = f"incoming/{held_out_digits[1].index:04d}.png", f"incoming/{held_out_digits[9].index:04d}.png"
    source = stores().source  # the classify function's image source, cached as in a warm container
    flaky = FlakyS3(source.client, transient={slow}, denied={denied})
    source.client = flaky

    description = engine.run({"mode": "score"}, timeout=300)
    assert description["status"] == "SUCCEEDED", description
    summary = output_of(description)
    assert summary["images_scored"] == 11 and summary["images_failed"] == 1
    assert (slow, "SlowDown") in flaky.raised
    errors = [name for name, _, error in lambda_bridge.invocations() if name.endswith("ClassifyBatch") and error]
    assert errors == []  # the slow read backed off and was read again inside its batch (stores._s3_call)
    (failure,) = failures_of(engine, summary["run_id"]).values()
    assert failure["image"]["key"] == denied and failure["stage"] == "read"
    assert failure["reason"] == "access denied reading the object version"
    assert len(prediction_rows(engine)) == 11 and stored_counts(engine) == recount(engine)


# -- a crash in the middle of a batch, then a replay --------------------------------------------------
def score_with(engine: Any, monkeypatch: pytest.MonkeyPatch, method: str, replacement: Any) -> dict[str, Any]:
    """A score run with one PredictionStore method replaced for its duration; it must succeed."""
    original = getattr(PredictionStore, method)
    monkeypatch.setattr(PredictionStore, method, replacement)
    description = engine.run({"mode": "score"}, timeout=300)
    monkeypatch.setattr(PredictionStore, method, original)
    assert description["status"] == "SUCCEEDED", description
    return dict(description)


def test_a_crash_mid_batch_then_a_replay_leaves_counts_exact(
    fault_engine: Any, held_out_digits: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = fault_engine
    seed(engine, held_out_digits, 10)  # batches of 4, 4, 2
    original = PredictionStore.write
    crashes: list[int] = []

    def write_half_then_crash(self: PredictionStore, predictions: Any) -> Any:
        if predictions and predictions[0].batch_id.endswith("-00000"):
            crashes.append(len(predictions))
            original(self, list(predictions)[:2])  # two predictions land, then the container dies
            raise RuntimeError("the container was killed in the middle of the batch")
        return original(self, predictions)

    first = score_with(engine, monkeypatch, "write", write_half_then_crash)
    assert len(crashes) == 3  # the first attempt and two retries, each crashing after two writes
    summary = output_of(first)
    failed = failures_of(engine, summary["run_id"])
    assert len(failed) == 2  # the two predictions that landed are not failures
    assert all("the container was killed in the middle of the batch" in f["reason"] for f in failed.values())
    assert len(counted_rows(engine)) == 8 and stored_counts(engine) == recount(engine)
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == 8

    replay = engine.run({"mode": "replay", "run": summary["run_id"]}, timeout=300)
    assert replay["status"] == "SUCCEEDED"
    assert output_of(replay)["images_scored"] == 2 and output_of(replay)["images_failed"] == 0
    assert len(counted_rows(engine)) == 10 and len(prediction_rows(engine)) == 10
    assert stored_counts(engine) == recount(engine)
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == 10


# -- a batch killed between its writes: its items landed, its fold did not -------------------------------
@pytest.mark.parametrize("deaths", [1, 3], ids=["the-retry-folds", "record-batch-failure-folds"])
def test_a_batch_killed_between_its_writes_leaves_counts_equal_to_a_recount(
    fault_engine: Any, held_out_digits: list[Any], monkeypatch: pytest.MonkeyPatch, deaths: int
) -> None:
    """The first batch's predictions land (their COUNTED items), then its container dies before the fold
    adds them to the day's counts: once (the retry finds its own items and folds them), or on every
    attempt (RecordBatchFailure folds what the batch left). Either way each image counts once."""
    engine = fault_engine
    seed(engine, held_out_digits, 10)  # batches of 4, 4, 2
    original = PredictionStore.fold
    killed: list[int] = []

    def die_before_the_fold(self: PredictionStore, items: Any) -> Any:
        if items and items[0].batch_id.endswith("-00000") and len(killed) < deaths:
            killed.append(len(items))
            raise RuntimeError("the container was killed between the predictions and the fold")
        return original(self, items)

    description = score_with(engine, monkeypatch, "fold", die_before_the_fold)
    assert killed == [4] * deaths  # every attempt that died had written all four items
    summary = output_of(description)
    assert failures_of(engine, summary["run_id"]) == {}  # the items landed: nothing to replay
    assert len(counted_rows(engine)) == 10 and len(prediction_rows(engine)) == 10
    assert stored_counts(engine) == recount(engine)
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == 10
