"""ListNewVersions: find the image versions not scored yet and write them to S3 as a manifest of batches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from contract.settings import Settings
from lambdas.manifests import write_manifest
from lambdas.observability import logger
from lambdas.records import BadRecord, ImageVersion, parse_timestamp
from lambdas.steps import ListNewVersionsRequest, ListNewVersionsResult, ObjectRef
from lambdas.stores import COUNTED, ImageSource, PredictionStore


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
    checkpoint: str | None,
) -> ListNewVersionsResult:
    prefix = request.prefix if request.prefix is not None else settings.images_prefix
    scope = f"{settings.bucket}/{prefix}"
    if request.objects is not None:
        candidates, missing = _resolve_event_objects(request.objects, settings, source, prefix)
        high_water = None  # an event-started run does not see all of history: leave the checkpoint
    else:
        candidates, high_water, missing = _list_since_checkpoint(settings, source, prefix, checkpoint), None, []
        if candidates:
            high_water = max(c.last_modified for c in candidates)
        high_water = _max_timestamp(high_water, checkpoint)
    ledger = predictions.ledger([c.image_id for c in candidates])
    failed_before = sum(1 for kinds in ledger.values() if COUNTED not in kinds)
    if failed_before:
        missing.append(f"{failed_before} version(s) that failed in an earlier run were left out: "
                       "`batchinfer replay RUN` retries a run's failures")
    new = sorted(
        (c for c in candidates if c.image_id not in ledger), key=lambda c: (c.last_modified, c.key)
    )
    manifest = write_manifest(request.run_id, new, settings, source)
    logger.info(
        "listed new versions",
        extra={"run_id": request.run_id, "listed": len(candidates), "new": len(new), "batches": manifest["batches"]},
    )
    return ListNewVersionsResult(
        **manifest,
        already_done=len(candidates) - len(new) - failed_before,
        checkpoint={"scope": scope, "last_modified": high_water} if high_water else None,
        notes=list(request.rejected_events) + missing,
    )


def _list_since_checkpoint(
    settings: Settings, source: ImageSource, prefix: str, checkpoint: str | None
) -> list[ImageVersion]:
    # S3 cannot filter a listing by time, so every page is read; the checkpoint keeps versions
    # older than it (less an overlap for uploads that finish late) out of the ledger look-ups.
    floor = None
    if checkpoint:
        floor = parse_timestamp(checkpoint) - timedelta(seconds=settings.checkpoint_overlap_seconds)
    return [
        version
        for version in source.list_versions(settings.bucket, prefix)
        if floor is None or version.captured_at() > floor
    ]


def _resolve_event_objects(
    objects: tuple[ObjectRef, ...], settings: Settings, source: ImageSource, prefix: str
) -> tuple[list[ImageVersion], list[str]]:
    notes: list[str] = []
    wanted = []
    for ref in objects:
        if ref.bucket != settings.bucket or not ref.key.startswith(prefix):
            notes.append(f"s3://{ref.bucket}/{ref.key}: outside s3://{settings.bucket}/{prefix}, ignored")
        else:
            wanted.append(ref)

    def head(ref: ObjectRef) -> ImageVersion | str:
        version = source.head(ref.bucket, ref.key, ref.version_id)
        if version is None:
            return f"s3://{ref.bucket}/{ref.key} version {ref.version_id}: deleted before it was scored"
        return version

    found: list[ImageVersion] = []
    with ThreadPoolExecutor(max_workers=settings.read_threads) as pool:
        for result in pool.map(head, wanted):
            if isinstance(result, str):
                notes.append(result)
            else:
                found.append(result)
    return found, notes


def _max_timestamp(a: str | None, b: str | None) -> str | None:
    values = [v for v in (a, b) if v]
    return max(values, key=parse_timestamp) if values else None
