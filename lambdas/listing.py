"""ListNewVersions: find the image versions not scored yet and write them to S3 as a manifest of batches."""

from __future__ import annotations

from typing import Any

from contract.settings import Settings
from lambdas.ingest_stores import IngestLedger, UploadEventQueue
from lambdas.ledger_listing import MAX_NOTES, pending_versions
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
    """An event-started run: the versions its events name. Any other: the next slice of the ingest ledger's
    pending ones, `max_images_per_run` at most, until the ledger holds no more or the run's `max_images`
    is reached."""
    previous = request.previous
    slice_number = previous.slice + 1
    prefix = request.prefix if request.prefix is not None else settings.images_prefix
    notes = list(request.rejected_events) + list(previous.notes)
    more, slices = False, slice_number
    if request.objects is not None:
        candidates, event_notes = resolve_event_objects(request.objects, settings, source, prefix)
        notes += event_notes
        done = predictions.ledger([c.image_id for c in candidates])
        failed_before = sum(1 for kinds in done.values() if COUNTED not in kinds)
        if failed_before:
            notes.append(f"{failed_before} version(s) that failed in an earlier run were left out: "
                         "`batchinfer replay RUN` retries a run's failures")
        new = [c for c in candidates if c.image_id not in done]
        already_done = len(candidates) - len(new) - failed_before
    else:
        left = None if request.max_images is None else request.max_images - previous.run_images
        cap = settings.max_images_per_run if left is None else max(0, min(settings.max_images_per_run, left))
        pending = pending_versions(request.run_id, prefix, cap, settings, source, predictions, ledger, uploads)
        new, already_done = pending.versions, pending.already_done
        notes += pending.notes
        reached = left is not None and len(new) >= left
        more = pending.more_waiting and not reached
        if more:
            # The ledger's size includes this slice's versions, which leave it once scored.
            slices = previous.slice + max(1, -(-ledger.approximate_size() // settings.max_images_per_run))
        elif pending.more_waiting:
            notes.append(f"the run stopped at its max_images of {request.max_images}: the versions still waiting "
                         "stay in the ingest ledger for the next run")
    if request.continues and slice_number == 1:
        notes.insert(0, f"part {request.continues[1]} of run {request.continues[0]}, which went on in this execution")
    next_execution = {}
    if more and slice_number >= settings.slices_per_execution:
        next_execution = _continuation(request, prefix, previous.run_images + len(new))
        notes.append(f"the run goes on in execution {next_execution['name']} after {slice_number} slices, inside "
                     "Step Functions' 25,000 history events")
    new.sort(key=lambda c: (c.last_modified, c.key))
    manifest = write_manifest(request.run_id, new, settings, source, slice_number, previous.run_batches)
    logger.info(
        "listed new versions",
        extra={"run_id": request.run_id, "slice": slice_number, "new": len(new), "already_done": already_done,
               "batches": manifest["batches"], "more": more},
    )
    return ListNewVersionsResult(
        **manifest,
        already_done=previous.already_done + already_done,
        checkpoint=None,  # the ledger needs no time checkpoint: entries leave it once scored
        notes=_capped(notes),
        slice=slice_number,
        slices=slices,
        more=more,
        run_batches=previous.run_batches + manifest["batches"],
        run_images=previous.run_images + manifest["images"],
        next_execution=next_execution,
    )


def _continuation(request: ListNewVersionsRequest, prefix: str, listed: int) -> dict[str, Any]:
    """The execution a run goes on in: the same prefix, what is left of max_images, and its part number."""
    first, part = request.continues or (request.run_id, 1)
    run_input: dict[str, Any] = {"mode": "score", "prefix": prefix, "continues": {"run": first, "part": part + 1}}
    if request.max_images is not None:
        run_input["max_images"] = request.max_images - listed  # above 0: the cap was not reached
    return {"name": f"{first[:68]}-part{part + 1:03d}", "input": run_input}


def _capped(notes: list[str]) -> list[str]:
    """Notes travel from slice to slice in the state's output (256 KiB): a summary beyond MAX_NOTES."""
    unique = list(dict.fromkeys(notes))
    if len(unique) <= MAX_NOTES:
        return unique
    return unique[:MAX_NOTES] + ["more notes left out; see the function's logs"]
