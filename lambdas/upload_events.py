"""Upload events' object versions resolved with HeadObject, for their capture time and size."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from contract.settings import Settings
from lambdas.records import ImageVersion
from lambdas.steps import ObjectRef
from lambdas.stores import ImageSource
from lambdas.throttles import carrying_context

# HeadObject waits on the network, not the CPU: a small function can keep this many in flight.
HEAD_THREADS = 32


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
        for result in pool.map(carrying_context(head), wanted):
            if isinstance(result, str):
                notes.append(result)
            else:
                found.append(result)
    return found, notes
