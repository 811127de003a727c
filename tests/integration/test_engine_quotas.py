"""AWS's throughput quotas on the embedded engine (engine/throttling.py), each scaled down so that it binds in a
second: a DynamoDB partition's write and read units, an S3 prefix's request rates, Lambda's account concurrency.
Each answers with AWS's error, and the clients' retries and the state machine's Retry ride it out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from engine import lambda_bridge, throttling
from engine.local_engine import LocalConfig, LocalEngine
from lambdas.stores import to_item
from tests.integration.small_machines import run_small_machine

pytestmark = pytest.mark.integration

NO_RETRIES = Config(retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalEngine]:
    with LocalEngine(LocalConfig(name="quotas", quotas="")) as running:
        lambda_bridge.add(lambda_bridge.FunctionSpec(
            "slow", "tests.integration.bridge_handlers.sleep_then_report", timeout_seconds=60))
        yield running


@pytest.fixture
def quotas(stack: LocalEngine) -> Iterator[Any]:
    """Set the engine's quotas for one test (off again after it)."""
    def set_quotas(spec: str) -> None:
        throttling.configure(throttling.Quotas.parse(spec), time_scale=1.0)

    yield set_quotas
    throttling.configure(throttling.Quotas())


def prediction(image_id: str) -> dict[str, Any]:
    return to_item({"image_id": image_id, "sk": "MODEL#v1", "predicted_class": "3"})


def test_a_partition_past_its_write_units_answers_provisioned_throughput_exceeded(
        stack: LocalEngine, quotas: Any) -> None:
    quotas("dynamodb.partition_writes=5,dynamodb.partitions=1")
    dynamodb = stack.client("dynamodb")
    bare = boto3.client("dynamodb", region_name=stack.config.region, config=NO_RETRIES)
    for n in range(5):
        bare.put_item(TableName=stack.predictions_table, Item=prediction(f"img-{n}"))
    with pytest.raises(ClientError) as refused:
        bare.put_item(TableName=stack.predictions_table, Item=prediction("img-5"))
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert "Throughput exceeds the current capacity" in refused.value.response["Error"]["Message"]
    # A transaction on the throttled partition is cancelled with ThrottlingError for each of its actions.
    with pytest.raises(ClientError) as cancelled:
        bare.transact_write_items(TransactItems=[
            {"Put": {"TableName": stack.predictions_table, "Item": prediction(f"tx-{n}")}} for n in range(2)])
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in cancelled.value.response["CancellationReasons"]] == ["ThrottlingError"] * 2
    assert throttling.throttled()["dynamodb"] == 2
    # Nothing of the refused requests was written; the bucket refills with time, one second's worth at most.
    assert "Item" not in dynamodb.get_item(TableName=stack.predictions_table, Key=to_item(
        {"image_id": "tx-0", "sk": "MODEL#v1"}))
    time.sleep(0.5)
    bare.transact_write_items(TransactItems=[
        {"Put": {"TableName": stack.predictions_table, "Item": prediction(f"tx-{n}")}} for n in range(2)])


def test_a_partition_past_its_read_units_throttles_get_item_and_the_sdk_retries_ride_it_out(
        stack: LocalEngine, quotas: Any) -> None:
    quotas("dynamodb.partition_reads=4,dynamodb.partitions=1")
    bare = boto3.client("dynamodb", region_name=stack.config.region, config=NO_RETRIES)
    key = to_item({"image_id": "absent", "sk": "MODEL#v1"})
    for _ in range(4):  # strongly consistent: one unit each
        bare.get_item(TableName=stack.predictions_table, Key=key, ConsistentRead=True)
    with pytest.raises(ClientError) as refused:
        bare.get_item(TableName=stack.predictions_table, Key=key, ConsistentRead=True)
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    # The functions' clients (standard retry mode, 8 attempts) wait and get every answer.
    retrying = boto3.client("dynamodb", region_name=stack.config.region,
                            config=Config(retries={"mode": "standard", "max_attempts": 8}))
    started = time.monotonic()
    for _ in range(12):
        retrying.get_item(TableName=stack.predictions_table, Key=key)  # eventually consistent: half a unit
    assert throttling.throttled()["dynamodb"] > 1
    assert time.monotonic() - started > 0.5  # 6 units a second at 4 a second, past the first second's 4


def test_a_batch_write_returns_the_throttled_requests_unprocessed(stack: LocalEngine, quotas: Any) -> None:
    quotas("dynamodb.partition_writes=3,dynamodb.partitions=1")
    bare = boto3.client("dynamodb", region_name=stack.config.region, config=NO_RETRIES)
    requests: list[Any] = [{"PutRequest": {"Item": prediction(f"batch-{n}")}} for n in range(5)]
    response = bare.batch_write_item(RequestItems={stack.predictions_table: requests})
    assert len(response["UnprocessedItems"][stack.predictions_table]) == 2
    with pytest.raises(ClientError) as refused:  # nothing left in the bucket: the whole call is refused
        bare.batch_write_item(RequestItems={stack.predictions_table: requests[3:]})
    assert refused.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"


def test_a_prefix_past_its_request_rates_answers_slow_down(stack: LocalEngine, quotas: Any) -> None:
    quotas("s3.prefix_writes=3,s3.prefix_reads=2")
    bare = boto3.client("s3", region_name=stack.config.region, config=NO_RETRIES)
    bucket = stack.config.bucket
    for n in range(3):
        bare.put_object(Bucket=bucket, Key=f"hot/{n}.txt", Body=b"x")
    with pytest.raises(ClientError) as refused:
        bare.put_object(Bucket=bucket, Key="hot/3.txt", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "SlowDown"
    assert refused.value.response["Error"]["Message"] == "Please reduce your request rate."
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    bare.put_object(Bucket=bucket, Key="cold/0.txt", Body=b"x")  # another prefix has its own rate
    for _ in range(2):
        bare.get_object(Bucket=bucket, Key="hot/0.txt")["Body"].read()
    with pytest.raises(ClientError) as slow:
        bare.head_object(Bucket=bucket, Key="hot/0.txt")
    assert slow.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert throttling.throttled_by_key() == {("s3", f"{bucket}/hot"): 2}
    # A client with the SDK's retries gets through, later.
    retrying = boto3.client("s3", region_name=stack.config.region,
                            config=Config(retries={"mode": "standard", "max_attempts": 8}))
    for n in range(6):
        retrying.put_object(Bucket=bucket, Key=f"hot/r{n}.txt", Body=b"x")
    assert throttling.throttled()["s3"] > 2


def test_lambda_past_the_account_concurrency_answers_too_many_requests_and_retry_rides_it_out(
        stack: LocalEngine, quotas: Any) -> None:
    quotas("lambda.concurrency=1")
    client = boto3.client("lambda", region_name=stack.config.region, config=NO_RETRIES)
    running = threading.Thread(target=client.invoke, kwargs={
        "FunctionName": "slow", "Payload": json.dumps({"seconds": 3.0}).encode()})
    running.start()
    time.sleep(1.0)  # well inside the first call's 3 s, even on a busy machine
    with pytest.raises(ClientError) as refused:
        client.invoke(FunctionName="slow", Payload=b"{}")
    running.join()
    assert refused.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert refused.value.response["Reason"] == "ConcurrentInvocationLimitExceeded"  # type: ignore[typeddict-item]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    # Three Map iterations at once on one concurrent execution: Step Functions sees
    # Lambda.TooManyRequestsException and its Retry (as the definition's) gets every one through.
    definition = {
        "StartAt": "Each",
        "States": {"Each": {
            "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 3, "End": True,
            "ItemProcessor": {"StartAt": "Slow", "States": {"Slow": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "slow", "Payload": {"seconds": 1.0}},
                "Retry": [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 1,
                           "MaxAttempts": 8, "BackoffRate": 1.0, "JitterStrategy": "FULL"}],
                "ResultSelector": {"ok": True}, "End": True}}},
        }},
    }
    result = run_small_machine(stack, definition, {"items": [1, 2, 3]}, timeout=60)
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == [{"ok": True}] * 3
    assert throttling.throttled()["lambda"] >= 3  # the direct call's, and at least two of the Map's


def test_a_bad_quota_is_refused_with_its_syntax() -> None:
    with pytest.raises(throttling.QuotaSpecError, match="unknown quota 'dynamodb.partition_write'"):
        throttling.Quotas.parse("dynamodb.partition_write=5")
    with pytest.raises(throttling.QuotaSpecError, match="must be above 0"):
        throttling.Quotas.parse("s3.prefix_reads=0")
    quotas = throttling.Quotas.parse("aws, dynamodb.partitions=8")
    assert quotas.dynamodb and quotas.s3 and quotas.lambda_ and quotas.dynamodb_partitions == 8
    assert quotas.dynamodb_partition_writes == 1000 and quotas.s3_prefix_reads == 5500
    assert not throttling.Quotas.parse("")
    from typer.testing import CliRunner

    from cli.app import app

    result = CliRunner().invoke(app, ["local", "serve", "--quota", "s3", "--quota", "lambda.concurrency=none"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: bad quota 'lambda.concurrency=none': 'none' is not a whole number"]
