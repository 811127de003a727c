"""ListNewVersions: find the image versions not scored yet and write them to S3 as a manifest of batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.settings import Settings
from lambdas.ingest_stores import IngestLedger, UploadEventQueue
from lambdas.ledger_listing import pending_versions
from lambdas.manifests import write_manifest
from lambdas.observability import logger
from lambdas.records import BadRecord
from lambdas.stores import COUNTED, ImageSource, PredictionStore
from lambdas.upload_events import ObjectRef, parse_s3_events, resolve_event_objects

__all__ = ["ListRequest", "ObjectRef", "list_new_versions", "parse_s3_events"]


@dataclass(frozen=True)
class ListRequest:
    run_id: str
    prefix: str | None = None
    objects: tuple[ObjectRef, ...] | None = None  # set when the run was started by S3 events
    rejected_events: tuple[str, ...] = ()

    @classmethod
    def from_event(cls, event: Any) -> ListRequest:
        if not isinstance(event, dict) or not event.get("run_id"):
            raise BadRecord("ListNewVersions needs an object with 'run_id' and 'input'")
        run_input = event.get("input") or {}
        if not isinstance(run_input, dict):
            raise BadRecord("the execution input must be a JSON object")
        prefix = run_input.get("prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise BadRecord("'prefix' must be a string")
        events = run_input.get("events")
        if events is None:
            return cls(run_id=str(event["run_id"]), prefix=prefix)
        if not isinstance(events, list):
            raise BadRecord("'events' must be a list of S3 event records")
        objects, rejected = parse_s3_events(events)
        return cls(
            run_id=str(event["run_id"]), prefix=prefix, objects=tuple(objects), rejected_events=tuple(rejected)
        )


def list_new_versions(
    request: ListRequest,
    settings: Settings,
    source: ImageSource,
    predictions: PredictionStore,
    ledger: IngestLedger,
    uploads: UploadEventQueue,
) -> dict[str, Any]:
    """An event-started run: the versions its events name. Any other: the ingest ledger's pending ones."""
    prefix = request.prefix if request.prefix is not None else settings.images_prefix
    if request.objects is not None:
        candidates, notes = resolve_event_objects(request.objects, settings, source, prefix)
        done = predictions.ledger([c.image_id for c in candidates])
        failed_before = sum(1 for kinds in done.values() if COUNTED not in kinds)
        if failed_before:
            notes.append(f"{failed_before} version(s) that failed in an earlier run were left out: "
                         "`batchinfer replay RUN` retries a run's failures")
        new = [c for c in candidates if c.image_id not in done]
        already_done = len(candidates) - len(new) - failed_before
    else:
        pending = pending_versions(request.run_id, prefix, settings, source, predictions, ledger, uploads)
        new, already_done, notes = pending.versions, pending.already_done, pending.notes
    new.sort(key=lambda c: (c.last_modified, c.key))
    manifest = write_manifest(request.run_id, new, settings, source)
    logger.info(
        "listed new versions",
        extra={"run_id": request.run_id, "new": len(new), "already_done": already_done,
               "batches": manifest["batches"]},
    )
    return {
        **manifest,
        "already_done": already_done,
        "checkpoint": None,  # the ledger needs no time checkpoint: entries leave it once scored
        "notes": list(request.rejected_events) + notes,
    }
