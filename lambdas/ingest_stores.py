"""The ingest ledger's stores: the ledger table, the upload events' ingest queue, the last sweep."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from contract.resource_spec import LEDGER_SHARDS
from lambdas.records import ImageVersion, utc_now
from lambdas.stores import _MAX_ATTEMPTS, _backoff, chunked, from_item, query_all, stable_shard, to_item


class IngestLedger:
    """Image versions known to exist and not yet seen scored or failed, spread over shards.

    A version is put once per sighting (an event, a reconciliation); putting it again is harmless.
    It leaves the ledger only when a drain finds it COUNTED or FAILED, so a run that dies after
    listing it loses nothing: the next drain lists it again.
    """

    def __init__(self, client: Any, table: str, shards: int = LEDGER_SHARDS):
        self.client = client
        self.table = table
        self.shards = shards

    def shard_of(self, image_id: str) -> str:
        return f"{stable_shard(image_id, self.shards):02d}"

    def record(self, versions: Sequence[ImageVersion], seen_by: str) -> None:
        unique = {v.image_id: v for v in versions}  # one request may not name a key twice
        now = utc_now()
        self._batch(
            [
                {"PutRequest": {"Item": to_item({"shard": self.shard_of(i), "image_id": i, **v.to_dict(),
                                                 "seen_by": seen_by, "recorded_at": now})}}
                for i, v in unique.items()
            ]
        )

    def remove(self, image_ids: Sequence[str]) -> None:
        self._batch(
            [
                {"DeleteRequest": {"Key": to_item({"shard": self.shard_of(i), "image_id": i})}}
                for i in dict.fromkeys(image_ids)
            ]
        )

    def pages(self, shard: str, page_size: int = 500) -> Iterator[list[ImageVersion]]:
        """One shard's entries, a page at a time, oldest key first; no page holds more than page_size."""
        paginator = self.client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "shard"},
            ExpressionAttributeValues=to_item({":s": shard}),
            ConsistentRead=True,
            PaginationConfig={"PageSize": page_size},
        ):
            rows = [from_item(item) for item in page["Items"]]
            if rows:
                yield [ImageVersion.from_dict(row) for row in rows]

    def approximate_size(self) -> int:
        """About how many entries the ledger holds: DynamoDB's item count, which AWS refreshes about every
        six hours (exact on the embedded engine). Enough to say about how many slices a run has left."""
        return int(self.client.describe_table(TableName=self.table)["Table"].get("ItemCount", 0))

    def all_entries(self) -> list[dict[str, Any]]:
        """Every entry, for tests and the CLI: never called by a run."""
        return [row for n in range(self.shards) for row in query_all(
            self.client, TableName=self.table, KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "shard"}, ExpressionAttributeValues=to_item({":s": f"{n:02d}"}),
            ConsistentRead=True)]

    def _batch(self, requests: list[dict[str, Any]]) -> None:
        for chunk in chunked(requests, 25):
            request: dict[str, Any] = {self.table: list(chunk)}
            for attempt in range(_MAX_ATTEMPTS):
                response = self.client.batch_write_item(RequestItems=request)
                request = response.get("UnprocessedItems") or {}
                if not request:
                    break
                _backoff(attempt)
            else:
                raise RuntimeError(f"{self.table}: items still unprocessed after {_MAX_ATTEMPTS} attempts")


class UploadEventQueue:
    """The ingest queue: EventBridge's Object Created events, read ten at a time."""

    def __init__(self, client: Any, queue_url: str):
        self.client = client
        self.queue_url = queue_url

    def receive(self) -> list[dict[str, Any]]:
        response = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300
        )
        return list(response.get("Messages", []))

    def delete(self, messages: Sequence[dict[str, Any]]) -> None:
        """Delete after the ledger holds them: a crash in between only delivers them again."""
        for chunk in chunked(list(messages), 10):
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)]
            for attempt in range(_MAX_ATTEMPTS):
                response = self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                failed = {f["Id"] for f in response.get("Failed", []) if not f.get("SenderFault")}
                entries = [e for e in entries if e["Id"] in failed]
                if not entries:
                    break
                _backoff(attempt)


class ReconciliationState:
    """When the last complete sweep of a scope started: versions older than that were all seen."""

    def __init__(self, client: Any, table: str):
        self.client = client
        self.table = table

    def swept_since(self, scope: str) -> str | None:
        item = self.client.get_item(
            TableName=self.table, Key=to_item({"pk": "reconciled", "sk": scope}), ConsistentRead=True
        ).get("Item")
        return from_item(item)["started_at"] if item else None

    def record_sweep(self, scope: str, started_at: str, run_id: str) -> bool:
        """Move forward only: a slower sweep that started earlier cannot move it back."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item({"pk": "reconciled", "sk": scope, "started_at": started_at, "run_id": run_id,
                              "updated_at": utc_now()}),
                ConditionExpression="attribute_not_exists(started_at) OR started_at < :t",
                ExpressionAttributeValues=to_item({":t": started_at}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True
