"""The manifest a run's Classify step reads: its image versions in batches, as JSON in S3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract.resource_spec import RUNS_PREFIX
from contract.settings import Settings
from lambdas.records import Batch, ImageVersion
from lambdas.stores import ImageSource, chunked


def write_manifest(run_id: str, images: Sequence[ImageVersion], settings: Settings,
                   source: ImageSource) -> dict[str, Any]:
    """Write runs/<run>/manifest.json; what the Map's ItemReader and the next steps need to know."""
    batches = [
        Batch(batch_id=f"{run_id[:40]}-{n:05d}", items=list(items)).to_dict()
        for n, items in enumerate(chunked(list(images), settings.batch_size))
    ]
    key = f"{RUNS_PREFIX}{run_id}/manifest.json"
    source.write_json(settings.bucket, key, batches)
    return {
        "manifest_bucket": settings.bucket,
        "manifest_key": key,
        "batches": len(batches),
        "images": len(images),
        "max_concurrency": settings.max_concurrency,
    }
