"""The nightly listing from the ingest ledger: move queued upload events into it, then drain it.

Its cost grows with the versions that are new since the last run, never with the bucket's history:
no step lists the bucket. Versions that never produced an event are put in the ledger by the
reconciliation (lambdas/reconciliation.py).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from contract.settings import Settings
from lambdas.ingest_stores import IngestLedger, UploadEventQueue
from lambdas.records import ImageVersion
from lambdas.steps import parse_s3_events
from lambdas.stores import COUNTED, ImageSource, PredictionStore
from lambdas.upload_events import resolve_event_objects

MAX_NOTES = 20  # the notes travel in the state's output (256 KiB): a summary beyond this many


@dataclass
class PendingVersions:
    versions: list[ImageVersion] = field(default_factory=list)
    ingested: int = 0  # upload events moved from the queue into the ledger by this run
    already_done: int = 0  # ledger entries found counted, and removed
    failed_before: int = 0  # ledger entries found failed (replay takes them), and removed
    more_waiting: bool = False  # the run's cap was reached; the rest stays for the next run
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text)
        elif len(self.notes) == MAX_NOTES:
            self.notes.append("more notes left out; see the function's logs")


def ingest_upload_events(
    settings: Settings, source: ImageSource, uploads: UploadEventQueue, ledger: IngestLedger,
    pending: PendingVersions, deadline: float, clock: Callable[[], float] = time.monotonic,
) -> None:
    """Queued upload events into the ledger, ten at a time, until the queue is empty or time is up.

    Each message is deleted only once its version is in the ledger (or it was found unusable), so
    a crash in between delivers it again; the ledger keys make that second delivery harmless.
    """
    while clock() < deadline:
        messages = uploads.receive()
        if not messages:
            return
        refs, rejected = parse_s3_events([{"body": m["Body"]} for m in messages])
        found, missing = resolve_event_objects(tuple(refs), settings, source, settings.images_prefix)
        ledger.record(found, seen_by="event")
        uploads.delete(messages)
        pending.ingested += len(found)
        for text in rejected + missing:
            pending.note(text)
    pending.note("the listing's time budget ran out with upload events still queued: the next run takes them")


def drain_ledger(
    run_id: str, prefix: str, cap: int, predictions: PredictionStore, ledger: IngestLedger, pending: PendingVersions,
) -> None:
    """The ledger's entries under prefix that are neither counted nor failed, up to `cap` of them.

    Entries found counted or failed are removed as they are read, so the ledger holds about one
    night of uploads. Those this run itself counted or failed, in an earlier slice, are removed without
    being reported as done before. Shards are read from a different one each run, so that a capped run does
    not always leave the same shards for later.
    """
    first = zlib.crc32(run_id.encode()) % ledger.shards
    for n in range(ledger.shards):
        shard = f"{(first + n) % ledger.shards:02d}"
        for page in ledger.pages(shard):
            wanted = [v for v in page if v.key.startswith(prefix)]
            owners = predictions.ledger_owners([v.image_id for v in wanted])
            for kinds in owners.values():
                if run_id in kinds.values():
                    continue  # an earlier slice of this run scored or failed it
                if COUNTED in kinds:
                    pending.already_done += 1
                else:
                    pending.failed_before += 1
            ledger.remove(list(owners))
            for version in wanted:
                if version.image_id in owners:
                    continue
                if len(pending.versions) >= cap:
                    pending.more_waiting = True
                    return
                pending.versions.append(version)


def pending_versions(
    run_id: str, prefix: str, cap: int, settings: Settings, source: ImageSource, predictions: PredictionStore,
    ledger: IngestLedger, uploads: UploadEventQueue, clock: Callable[[], float] = time.monotonic,
) -> PendingVersions:
    """Up to `cap` versions waiting under prefix, after moving the queued upload events into the ledger."""
    pending = PendingVersions()
    ingest_upload_events(settings, source, uploads, ledger, pending,
                         deadline=clock() + settings.listing_budget_seconds, clock=clock)
    drain_ledger(run_id, prefix, cap, predictions, ledger, pending)
    if pending.failed_before:
        pending.note(f"{pending.failed_before} version(s) that failed in an earlier run were left out: "
                     "`batchinfer replay RUN` retries a run's failures")
    return pending
