"""ReconcileVersions: a resumable sweep of the bucket that puts every version no event announced
(lost, late, or uploaded with the event path off) into the ingest ledger.

One invocation reads pages for at most the reconciliation budget and returns a cursor; the state
machine calls it again until the sweep is done, so no invocation nears Lambda's 15 minutes and
none holds more than one page. A sweep looks up only versions newer than the start of the last
complete sweep (less the overlap for uploads that finish late): older ones were all looked at then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from contract.settings import Settings
from lambdas.ingest_stores import IngestLedger, ReconciliationState
from lambdas.observability import logger
from lambdas.records import BadRecord, parse_timestamp, utc_now
from lambdas.stores import ImageSource, PredictionStore


@dataclass(frozen=True)
class ReconcileRequest:
    run_id: str
    cursor: dict[str, str] | None = None  # where the previous invocation of this sweep stopped
    started_at: str | None = None  # when this sweep began; None on its first invocation
    pages: int = 0
    recorded: int = 0

    @classmethod
    def from_event(cls, event: Any) -> ReconcileRequest:
        if not isinstance(event, dict) or not event.get("run_id"):
            raise BadRecord("ReconcileVersions needs an object with 'run_id' and 'input'")
        run_input = event.get("input") or {}
        if not isinstance(run_input, dict):
            raise BadRecord("the execution input must be a JSON object")
        previous = run_input.get("reconciliation") or {}
        if not isinstance(previous, dict):
            raise BadRecord("'reconciliation' must be the previous step's output")
        cursor = previous.get("cursor")
        if cursor is not None and not (isinstance(cursor, dict) and cursor.get("key_marker")):
            raise BadRecord("'reconciliation.cursor' must name a key_marker")
        return cls(run_id=str(event["run_id"]), cursor=cursor, started_at=previous.get("started_at"),
                   pages=int(previous.get("pages") or 0), recorded=int(previous.get("recorded") or 0))


def reconcile_versions(
    request: ReconcileRequest,
    settings: Settings,
    source: ImageSource,
    predictions: PredictionStore,
    ledger: IngestLedger,
    sweeps: ReconciliationState,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    scope = f"{settings.bucket}/{settings.images_prefix}"
    started_at = request.started_at or utc_now()
    last_sweep = sweeps.swept_since(scope)
    floor = parse_timestamp(last_sweep) - timedelta(seconds=settings.checkpoint_overlap_seconds) if last_sweep else None
    deadline = clock() + settings.reconcile_budget_seconds
    pages, looked_up, recorded = 0, 0, 0
    cursor = request.cursor
    done = False
    for page in source.version_pages(settings.bucket, settings.images_prefix, cursor):
        pages += 1
        recent = [v for v in page.versions if floor is None or v.captured_at() > floor]
        if recent:
            looked_up += len(recent)
            known = predictions.ledger([v.image_id for v in recent])
            unseen = [v for v in recent if v.image_id not in known]
            ledger.record(unseen, seen_by="reconciliation")
            recorded += len(unseen)
        cursor = page.cursor
        if cursor is None:
            done = True
            break
        if clock() >= deadline:
            break
    if done:
        sweeps.record_sweep(scope, started_at, request.run_id)
    logger.info("reconciled versions", extra={"run_id": request.run_id, "pages": pages, "looked_up": looked_up,
                                              "recorded": recorded, "done": done})
    return {
        "done": done,
        "cursor": None if done else cursor,
        "started_at": started_at,
        "pages": request.pages + pages,
        "recorded": request.recorded + recorded,
    }
