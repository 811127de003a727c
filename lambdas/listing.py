"""ListNewVersions: find the image versions not scored yet and write them to S3 as a manifest of batches."""

from __future__ import annotations

from contract.settings import Settings
from lambdas.ingest_stores import IngestLedger, UploadEventQueue
from lambdas.ledger_listing import pending_versions
from lambdas.manifests import write_manifest
from lambdas.observability import logger
from lambdas.records import BadRecord
from lambdas.steps import ListNewVersionsRequest, ListNewVersionsResult
from lambdas.stores import COUNTED, ImageSource, PredictionStore
from lambdas.upload_events import resolve_event_objects


def check_prefix(prefix: str | None, settings: Settings) -> str:
    """The prefix to list: the images prefix, or one under it; anything else is refused by name.

    The function's role may list only under the images prefix: in AWS another prefix is AccessDenied
    halfway through a run, so it is refused up front, the same way on the embedded engine.
    """
    if prefix is None:
        return settings.images_prefix
    if not prefix.startswith(settings.images_prefix):
        raise BadRecord(
            f"prefix {prefix!r} is outside {settings.images_prefix!r}: runs score only uploads under "
            f"s3://{settings.bucket}/{settings.images_prefix} (for example {settings.images_prefix}camera-1/)"
        )
    return prefix


def list_new_versions(
    request: ListNewVersionsRequest,
    settings: Settings,
    source: ImageSource,
    predictions: PredictionStore,
    ledger: IngestLedger,
    uploads: UploadEventQueue,
) -> ListNewVersionsResult:
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
    return ListNewVersionsResult(
        **manifest,
        already_done=already_done,
        checkpoint=None,  # the ledger needs no time checkpoint: entries leave it once scored
        notes=list(request.rejected_events) + notes,
    )
