"""moto's SQS with the engine's fix 15: a deep queue drains 10 at a time in batch-sized work, and
ReceiveMessage and DeleteMessage keep SQS's semantics (each message once, retention, bad handles)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration


@pytest.fixture
def sqs(patched_moto: None) -> Any:
    import boto3

    return boto3.client("sqs", region_name="us-east-1")


def fill(sqs: Any, queue_url: str, count: int) -> None:
    for start in range(0, count, 10):
        sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "MessageBody": f"m{n:05d}"} for n in range(start, min(start + 10, count))])


def test_a_deep_queue_drains_each_message_once_without_reading_every_attribute(
        sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sqs.models import Queue

    queue_url = sqs.create_queue(QueueName="deep")["QueueUrl"]
    fill(sqs, queue_url, 2_000)
    # moto built every attribute of the queue (three counts over all its messages) for each message
    # it received; with the fix a receive reads none of them, so draining costs the messages only.
    built = {"attributes": 0}
    original: Any = Queue.__dict__["attributes"].fget

    def counted(self: Any) -> Any:
        built["attributes"] += 1
        return original(self)

    monkeypatch.setattr(Queue, "attributes", property(counted))
    seen: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        seen += [m["Body"] for m in messages]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)])
    assert sorted(seen) == [f"m{n:05d}" for n in range(2_000)]
    assert built["attributes"] == 0
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_delete_keeps_sqs_semantics(sqs: Any) -> None:
    queue_url = sqs.create_queue(QueueName="semantics")["QueueUrl"]
    fill(sqs, queue_url, 3)
    first, *rest = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=first["ReceiptHandle"])
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=first["ReceiptHandle"])  # again: not an error
    with pytest.raises(ClientError, match="ReceiptHandleIsInvalid"):
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle="no-such-handle")
    sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=[
        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for n, m in enumerate(rest)])
    again = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in again) == sorted(m["Body"] for m in rest)


def test_a_message_past_the_queues_retention_is_not_received(sqs: Any) -> None:
    queue_url = sqs.create_queue(QueueName="short", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    fill(sqs, queue_url, 1)
    from moto.sqs.models import sqs_backends

    [queue] = [q for q in sqs_backends["123456789012"]["us-east-1"].queues.values() if q.name == "short"]
    message: Any = queue._messages[0]
    message.sent_timestamp = int((time.time() - 61) * 1000)  # sent 61 s ago
    assert sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []) == []
