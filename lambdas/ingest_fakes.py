"""In-memory stand-ins for the ingest ledger's stores (lambdas/ingest_stores.py), for unit tests and
the scale benchmark; tests/contract runs the same tests on these and on moto."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from contract.resource_spec import LEDGER_SHARDS
from lambdas.ingest_stores import IngestLedger, ReconciliationState, UploadEventQueue
from lambdas.records import ImageVersion, utc_now


class InMemoryIngestLedger(IngestLedger):
    def __init__(self, shards: int = LEDGER_SHARDS):
        super().__init__(None, "ledger", shards)
        self.rows: dict[str, dict[str, dict[str, Any]]] = {f"{n:02d}": {} for n in range(shards)}
        self._lock = threading.Lock()

    def record(self, versions: Sequence[ImageVersion], seen_by: str) -> None:
        now = utc_now()
        with self._lock:
            for v in versions:
                self.rows[self.shard_of(v.image_id)][v.image_id] = {
                    "shard": self.shard_of(v.image_id), "image_id": v.image_id, **v.to_dict(),
                    "seen_by": seen_by, "recorded_at": now}

    def remove(self, image_ids: Sequence[str]) -> None:
        with self._lock:
            for image_id in image_ids:
                self.rows[self.shard_of(image_id)].pop(image_id, None)

    def pages(self, shard: str, page_size: int = 500) -> Iterator[list[ImageVersion]]:
        with self._lock:
            rows = [self.rows[shard][k] for k in sorted(self.rows[shard])]
        for first in range(0, len(rows), page_size):
            yield [ImageVersion.from_dict(row) for row in rows[first:first + page_size]]

    def approximate_size(self) -> int:
        with self._lock:
            return sum(len(rows) for rows in self.rows.values())

    def all_entries(self) -> list[dict[str, Any]]:
        return [dict(row) for shard in sorted(self.rows) for _, row in sorted(self.rows[shard].items())]


class InMemoryUploadEventQueue(UploadEventQueue):
    """A queue of message bodies; a received message stays hidden until it is deleted."""

    def __init__(self) -> None:
        super().__init__(None, "memory://ingest")
        self.waiting: dict[str, str] = {}  # message id -> body
        self.in_flight: dict[str, str] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def send(self, body: str) -> None:
        with self._lock:
            self.waiting[f"m{next(self._ids)}"] = body

    def receive(self) -> list[dict[str, Any]]:
        with self._lock:
            taken = list(self.waiting.items())[:10]
            for message_id, _ in taken:
                self.in_flight[message_id] = self.waiting.pop(message_id)
        return [{"MessageId": m, "ReceiptHandle": m, "Body": b} for m, b in taken]

    def delete(self, messages: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            for message in messages:
                self.in_flight.pop(message["ReceiptHandle"], None)


class InMemoryReconciliationState(ReconciliationState):
    def __init__(self) -> None:
        super().__init__(None, "state")
        self.sweeps: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def swept_since(self, scope: str) -> str | None:
        row = self.sweeps.get(scope)
        return row["started_at"] if row else None

    def record_sweep(self, scope: str, started_at: str, run_id: str) -> bool:
        with self._lock:
            row = self.sweeps.get(scope)
            if row is not None and not row["started_at"] < started_at:
                return False
            self.sweeps[scope] = {"started_at": started_at, "run_id": run_id, "updated_at": utc_now()}
            return True
