"""The local stand-in for the EventBridge Pipe: drains the upload queue in batches and starts
one execution per batch, with the same input an SQS → Step Functions pipe delivers."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from operate.operations import new_run_name


@dataclass
class LocalPipe:
    sqs: Any
    sfn: Any
    queue_url: str
    queue_arn: str
    state_machine_arn: str
    region: str
    batch_size: int = 100
    window_seconds: float = 20.0
    started: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }

    def poll_batch(self, wait: bool = True) -> list[dict[str, Any]]:
        """Messages until the batch is full or the window since the first one has passed."""
        batch: list[dict[str, Any]] = []
        first_at: float | None = None
        while len(batch) < self.batch_size and not self._stop.is_set():
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(batch)),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            )
            messages = response.get("Messages", [])
            if messages:
                first_at = first_at or time.monotonic()
                batch.extend(messages)
                continue
            if not batch or not wait or time.monotonic() - (first_at or 0) >= self.window_seconds:
                break
            time.sleep(0.2)
        return batch

    def drain_once(self, wait: bool = True) -> str | None:
        """Start one execution for one batch; None when the queue was empty."""
        batch = self.poll_batch(wait)
        if not batch:
            return None
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=new_run_name("pipe"),
            input=json.dumps([self._record(m) for m in batch]),
        )["executionArn"]
        for chunk in range(0, len(batch), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                         for i, m in enumerate(batch[chunk: chunk + 10])],
            )
        self.started.append(arn)
        return str(arn)

    def drain(self) -> list[str]:
        """Drain the queue now: every message lands in some execution (tests, `start` of a burst)."""
        started = []
        while (arn := self.drain_once(wait=False)) is not None:
            started.append(arn)
        return started

    def run_forever(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="local-pipe", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.drain_once() is None:
                    self._stop.wait(1.0)
            except Exception:  # keep the pipe alive, as the managed one retries
                self._stop.wait(2.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
