"""ListNewVersions: find the image versions not scored yet and write them to S3 as a manifest of batches."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_plus

from contract.settings import Settings
from lambdas.manifests import write_manifest
from lambdas.observability import logger
from lambdas.records import BadRecord, ImageVersion, parse_timestamp
from lambdas.stores import COUNTED, ImageSource, PredictionStore


@dataclass(frozen=True)
class ObjectRef:
    """An object version named by an S3 event: no LastModified yet, it is read with HeadObject."""

    bucket: str
    key: str
    version_id: str


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


def parse_s3_events(records: list[Any]) -> tuple[list[ObjectRef], list[str]]:
    """Object versions from SQS records carrying EventBridge "Object Created" events.

    A record that is not such an event is set aside with a reason; the others go on.
    """
    objects: dict[tuple[str, str, str], ObjectRef] = {}
    rejected: list[str] = []
    for index, record in enumerate(records):
        try:
            body = record.get("body", record) if isinstance(record, dict) else record
            event = json.loads(body) if isinstance(body, str) else body
            if not isinstance(event, dict):
                raise ValueError("the body is not a JSON object")
            detail = event.get("detail") or {}
            if event.get("detail-type") != "Object Created":
                raise ValueError(f"detail-type is {event.get('detail-type')!r}, not 'Object Created'")
            bucket = detail["bucket"]["name"]
            key = unquote_plus(detail["object"]["key"]) if "%" in detail["object"]["key"] else detail["object"]["key"]
            version_id = detail["object"].get("version-id")
            if not version_id:
                raise ValueError(f"s3://{bucket}/{key} has no version-id: is versioning on?")
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as error:
            rejected.append(f"record {index}: not an S3 Object Created event ({error})")
            continue
        objects[(bucket, key, version_id)] = ObjectRef(bucket, key, version_id)
    return list(objects.values()), rejected


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
    request: ListRequest,
    settings: Settings,
    source: ImageSource,
    predictions: PredictionStore,
    checkpoint: str | None,
) -> dict[str, Any]:
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
    return {
        **manifest,
        "already_done": len(candidates) - len(new) - failed_before,
        "checkpoint": {"scope": scope, "last_modified": high_water} if high_water else None,
        "notes": list(request.rejected_events) + missing,
    }


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
