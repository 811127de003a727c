"""A run's result files in S3: one JSONL file of predictions per batch, the run's failures, and the index
files the Glue tables read (contract/results.py names them and defines their fields).

ClassifyBatch writes its batch's file as soon as its predictions are in the table, named by the batch, so
that a retried batch (or a redriven child) writes the same object again, never a second one. WriteRunResults,
after the Classify map, pages through the manifest, writes the file of any batch whose child died before
it wrote one (from the table), streams the run's failures into failures.jsonl, and writes the index files.
Nothing holds the run in memory: a page of batches, a page of failures, a batch's lines at a time.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from contract.results import (
    FAILURE_FIELDS,
    FAILURES_TABLE,
    PREDICTION_FIELDS,
    PREDICTIONS_TABLE,
    failures_key,
    index_key,
    prediction_part_key,
    predictions_prefix,
)
from lambdas.batch_reconciliation import manifest_pages
from lambdas.records import ImageVersion, Prediction
from lambdas.steps import WriteRunResultsRequest, WriteRunResultsResult
from lambdas.stores import FailureStore, ImageSource, PredictionStore

JSONL = "application/x-ndjson"
# Failures written to a local file before the upload: past this many bytes the file spills to disk.
_SPOOL_BYTES = 8 << 20


def _kept(value: float) -> float:
    """A number as the tables keep it (lambdas/stores.py rounds to 6 places)."""
    return round(float(value), 6)


def prediction_line(prediction: Prediction, counted: bool) -> dict[str, Any]:
    image = prediction.image
    values = {
        "image_uri": image.image_id,
        "bucket": image.bucket,
        "key": image.key,
        "version_id": image.version_id,
        "class": prediction.predicted_class,
        "confidence": _kept(prediction.confidence),
        "probabilities": {label: _kept(p) for label, p in prediction.probabilities.items()},
        "counted": counted,
        "model_version": prediction.model_version,
        "runtime": prediction.runtime,
        "captured_at": image.captured_at().isoformat(),
        "date": prediction.date,
        "run": prediction.run_id,
        "batch": prediction.batch_id,
    }
    return {f.name: values[f.name] for f in PREDICTION_FIELDS}


def failure_line(row: dict[str, Any]) -> dict[str, Any]:
    """A line of failures.jsonl from a row of the failures table (FailureStore)."""
    image = ImageVersion.from_dict(row["image"])
    values = {
        "image_uri": image.image_id,
        "bucket": image.bucket,
        "key": image.key,
        "version_id": image.version_id,
        "stage": row.get("stage", ""),
        "error_type": row.get("error_type", ""),
        "reason": row.get("reason", ""),
        "run": row["run_id"],
        "batch": row.get("batch_id", ""),
        "recorded_at": row.get("recorded_at", ""),
    }
    return {f.name: values[f.name] for f in FAILURE_FIELDS}


def jsonl(lines: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, sort_keys=False) + "\n" for line in lines)


def write_batch_predictions(source: ImageSource, bucket: str, run_id: str, batch_id: str,
                            lines: list[tuple[Prediction, bool]]) -> str:
    """The batch's file, in batch order; an empty batch gets an empty file (the run has it, with no line)."""
    key = prediction_part_key(run_id, batch_id)
    source.write_text(bucket, key, jsonl(prediction_line(p, counted) for p, counted in lines), JSONL)
    return key


def batch_lines(written: list[Prediction], counted_ids: set[str], duplicates: list[Prediction],
                own: dict[str, bool]) -> list[tuple[Prediction, bool]]:
    """The batch's predictions that are this run's: those it wrote now, and those a retry finds it wrote
    before, with whether each counted (a duplicate another run wrote is that run's line, not this one's)."""
    lines = [(p, p.image.image_id in counted_ids) for p in written]
    return lines + [(p, own[p.image.image_id]) for p in duplicates if p.image.image_id in own]


def result_links(bucket: str, run_id: str) -> dict[str, str]:
    """Where a run's result files are: the run summary links them."""
    return {"predictions": f"s3://{bucket}/{predictions_prefix(run_id)}",
            "failures": f"s3://{bucket}/{failures_key(run_id)}"}


# -- WriteRunResults ------------------------------------------------------------------------------------
def _existing_parts(source: ImageSource, bucket: str, run_id: str) -> Iterator[str]:
    prefix = predictions_prefix(run_id)
    for key, _ in source.list_objects(bucket, prefix):
        if key.endswith(".jsonl"):
            yield key


def write_run_results(request: WriteRunResultsRequest, bucket: str, source: ImageSource,
                      predictions: PredictionStore, failures: FailureStore) -> WriteRunResultsResult:
    run_id = request.run_id
    # One key per batch of the run so far: a few thousand names a slice (max_images_per_run / batch size).
    existing = set(_existing_parts(source, bucket, run_id))
    part_keys: list[str] = []
    filled = 0
    for page in manifest_pages(source, request.manifest_bucket, request.manifest_key):
        for batch in page:
            key = prediction_part_key(run_id, batch.batch_id)
            if key not in existing:
                write_batch_predictions(source, bucket, run_id, batch.batch_id,
                                        predictions.run_predictions(run_id, batch.items))
                filled += 1
            part_keys.append(key)
    # The index lists every file of the run: the earlier slices' (found above) and this slice's.
    return _index_with_failures(bucket, run_id, source, failures, sorted(existing | set(part_keys)), filled)


def write_stopped_run_results(bucket: str, run_id: str, source: ImageSource,
                              failures: FailureStore) -> WriteRunResultsResult:
    """A stopped run's result files: the files its batches wrote, indexed, and its failures. No batch file is
    filled from the table: the batches the run did not reach are not its own, their versions wait in the ledger."""
    return _index_with_failures(bucket, run_id, source, failures, sorted(_existing_parts(source, bucket, run_id)), 0)


def _index_with_failures(bucket: str, run_id: str, source: ImageSource, failures: FailureStore,
                         part_keys: list[str], filled: int) -> WriteRunResultsResult:
    """The run's index of prediction files, its failures.jsonl and that file's index."""
    source.write_text(bucket, index_key(PREDICTIONS_TABLE, run_id),
                      "".join(f"s3://{bucket}/{key}\n" for key in part_keys), "text/plain")
    lines = 0
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        for row in failures.each_for_run(run_id):
            spool.write((json.dumps(failure_line(row)) + "\n").encode())
            lines += 1
        spool.seek(0)
        source.upload_file(bucket, failures_key(run_id), spool, JSONL)
    source.write_text(bucket, index_key(FAILURES_TABLE, run_id), f"s3://{bucket}/{failures_key(run_id)}\n",
                      "text/plain")
    return WriteRunResultsResult(
        **result_links(bucket, run_id),
        prediction_files=len(part_keys),
        filled_from_table=filled,
        failure_lines=lines,
    )
