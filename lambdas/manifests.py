"""The manifest a run's Classify step reads, one per slice: its image versions in batches, as JSON in S3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contract.resource_spec import RUNS_PREFIX
from contract.settings import Settings
from lambdas.records import Batch, ImageVersion
from lambdas.stores import ImageSource, chunked


def manifest_key(run_id: str, slice_number: int = 1) -> str:
    """runs/<run>/manifest.json for a run's first slice, runs/<run>/manifest-<k>.json for slice k after it."""
    suffix = "" if slice_number <= 1 else f"-{slice_number:04d}"
    return f"{RUNS_PREFIX}{run_id}/manifest{suffix}.json"


def write_manifest(run_id: str, images: Sequence[ImageVersion], settings: Settings,
                   source: ImageSource, slice_number: int = 1, first_batch: int = 0) -> dict[str, Any]:
    """Write the slice's manifest; what the Map's ItemReader and the next steps need to know.

    Batch ids run on across a run's slices (`first_batch` is the number of batches before this slice), so
    that every batch of a run, whatever its slice, has its own id, result file and fold markers.
    """
    batches = [
        Batch(batch_id=f"{run_id[:40]}-{first_batch + n:05d}", items=list(items)).to_dict()
        for n, items in enumerate(chunked(list(images), settings.batch_size))
    ]
    key = manifest_key(run_id, slice_number)
    source.write_json(settings.bucket, key, batches)
    return {
        "manifest_bucket": settings.bucket,
        "manifest_key": key,
        "batches": len(batches),
        "images": len(images),
        "max_concurrency": settings.max_concurrency,
    }
