"""Upload events: S3 "Object Created" records parsed into object versions, each resolved with HeadObject."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from contract.settings import Settings
from lambdas.records import ImageVersion
from lambdas.stores import ImageSource

# HeadObject waits on the network, not the CPU: a small function can keep this many in flight.
HEAD_THREADS = 32


@dataclass(frozen=True)
class ObjectRef:
    """An object version named by an S3 event: no LastModified yet, it is read with HeadObject."""

    bucket: str
    key: str
    version_id: str


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


def resolve_event_objects(
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
    with ThreadPoolExecutor(max_workers=HEAD_THREADS) as pool:
        for result in pool.map(head, wanted):
            if isinstance(result, str):
                notes.append(result)
            else:
                found.append(result)
    return found, notes
