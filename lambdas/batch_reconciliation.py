"""ReconcileBatches: after the Classify map, every batch with no recorded result becomes failure records.

A batch records its result in the run-state table when it is classified (ClassifyBatch) or when its
failure is caught (RecordBatchFailure). A child execution that fails outright — killed at EXPRESS's
5-minute limit, crashed, throttled past its retries, or failing in RecordBatchFailure itself — records
nothing, and the Map only counts it. This step finds those batches from the manifest and records
their items as failures with a reason, so that `batchinfer replay RUN` scores them. It reads the
manifest one page of batches at a time and writes in batches, so its memory does not grow with the run.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lambdas.failures import describe_error
from lambdas.records import Batch, Failure
from lambdas.stores import COUNTED, FailureStore, ImageSource, PredictionStore, RunStateStore

# Batches looked up together: one BatchGetItem of run-state keys (at most 100 keys per call).
BATCHES_PER_PAGE = 100
MAX_REASON_DETAIL = 300
_DELIMITERS = ",] \t\r\n"


@dataclass(frozen=True)
class ReconcileRequest:
    run_id: str
    manifest_bucket: str
    manifest_key: str
    classify: dict[str, Any]  # the Map's output ({MapRunArn, ResultWriterDetails}) or its caught error

    @classmethod
    def from_event(cls, event: Any) -> ReconcileRequest:
        from lambdas.records import BadRecord

        if not isinstance(event, dict):
            raise BadRecord("ReconcileBatches needs an object with 'run_id', 'manifest_bucket' and 'manifest_key'")
        missing = [k for k in ("run_id", "manifest_bucket", "manifest_key") if not event.get(k)]
        if missing:
            raise BadRecord(f"ReconcileBatches needs {', '.join(missing)}")
        classify = event.get("classify")
        return cls(
            run_id=str(event["run_id"]),
            manifest_bucket=str(event["manifest_bucket"]),
            manifest_key=str(event["manifest_key"]),
            classify=classify if isinstance(classify, dict) else {},
        )

    @property
    def map_failed(self) -> bool:
        """The Map state itself failed (its Catch output has "Error"), e.g. past the tolerated failures."""
        return "Error" in self.classify


def manifest_pages(source: ImageSource, bucket: str, key: str,
                   page_size: int = BATCHES_PER_PAGE) -> Iterator[list[Batch]]:
    """The manifest's batches, `page_size` at a time, parsed from the object as it streams in."""
    page: list[Batch] = []
    for value in iter_json_array(source.stream_object(bucket, key), f"s3://{bucket}/{key}"):
        page.append(Batch.from_dict(value))
        if len(page) == page_size:
            yield page
            page = []
    if page:
        yield page


def iter_json_array(chunks: Iterable[bytes], name: str) -> Iterator[Any]:
    """The elements of a JSON array, one at a time, from its bytes in chunks.

    The Lambda runtime has no streaming JSON parser, and a million-image manifest is far larger than
    what one element needs: only the unparsed tail of the last chunk is kept.
    """
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()  # a character can straddle two chunks
    buffer, position, started, chunks = "", 0, False, iter(chunks)
    while True:
        while position < len(buffer) and buffer[position] in " \t\r\n,":
            position += 1
        if not started and position < len(buffer):
            if buffer[position] != "[":
                raise ValueError(f"{name} is not a JSON array of batches")
            started, position = True, position + 1
            continue
        if position < len(buffer) and buffer[position] == "]":
            return
        try:
            value, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError:
            more = next(chunks, None)
            if more is None:
                raise ValueError(f"{name} ends before its JSON array does") from None
            buffer, position = buffer[position:] + text.decode(more), 0
            continue
        # A number or literal may go on in the next chunk ("-0" of "-0.5"): take it only up to a delimiter.
        if not isinstance(value, (dict, list, str)) and (end == len(buffer) or buffer[end] not in _DELIMITERS):
            more = next(chunks, None)
            if more is not None:
                buffer, position = buffer[position:] + text.decode(more), 0
                continue
            if end != len(buffer):
                raise ValueError(f"{name} has a malformed value at character {end}")
        yield value
        position = end


def failed_child_errors(source: ImageSource, classify: dict[str, Any]) -> dict[str, str]:
    """batch id -> "Error: Cause" of each failed child, from the ResultWriter's FAILED files.

    On AWS the ResultWriter writes them beside its manifest.json; the embedded engine writes only the
    manifest, with empty lists, so locally every failed child gets the generic reason.
    """
    details = classify.get("ResultWriterDetails")
    if not isinstance(details, dict) or not details.get("Bucket") or not details.get("Key"):
        return {}
    manifest = source.read_json(details["Bucket"], details["Key"])
    errors: dict[str, str] = {}
    for result_file in (manifest.get("ResultFiles") or {}).get("FAILED") or []:
        for entry in source.read_json(manifest.get("DestinationBucket") or details["Bucket"], result_file["Key"]):
            try:
                child_input = entry.get("Input") or "{}"
                child_input = json.loads(child_input) if isinstance(child_input, str) else child_input
                batch_id = child_input["batch"]["batch_id"]
            except (KeyError, TypeError, ValueError):
                continue
            error_type, message = describe_error({"Error": entry.get("Error"), "Cause": entry.get("Cause")})
            errors[str(batch_id)] = f"{error_type}: {message}"[:MAX_REASON_DETAIL]
    return errors


def reconcile_batches(
    request: ReconcileRequest,
    source: ImageSource,
    predictions: PredictionStore,
    failures: FailureStore,
    state: RunStateStore,
) -> dict[str, Any]:
    if request.map_failed:
        error_type, message = describe_error(request.classify)
        general = f"the Classify map failed ({error_type}: {message[:MAX_REASON_DETAIL]})"
    else:
        general = ("it ended without a result: timed out (EXPRESS children end at 5 minutes), crashed, "
                   "or was throttled past its retries")
    child_errors = failed_child_errors(source, request.classify)
    batches_without_result = items_recorded = 0
    for page in manifest_pages(source, request.manifest_bucket, request.manifest_key):
        recorded = state.batches_with_result(request.run_id, [b.batch_id for b in page])
        unfinished = [b for b in page if b.batch_id not in recorded]
        if not unfinished:
            continue
        batches_without_result += len(unfinished)
        # A child can die after writing some predictions: those items are done, not failed, and enter the
        # counts here if it died before folding them.
        for batch in unfinished:
            predictions.fold_orphans(request.run_id, batch.batch_id, [item.image_id for item in batch.items])
        ledger = predictions.ledger([item.image_id for b in unfinished for item in b.items])
        page_failures: list[Failure] = []
        for batch in unfinished:
            reason = f"the batch's child execution failed: {child_errors.get(batch.batch_id, general)}"
            failed = [
                Failure(image=item, stage="batch", reason=reason, error_type="ChildExecutionFailed",
                        run_id=request.run_id, batch_id=batch.batch_id)
                for item in batch.items
                if COUNTED not in ledger.get(item.image_id, set())
            ]
            page_failures += failed
        failures.record(page_failures)
        predictions.mark_failed(page_failures)
        items_recorded += len(page_failures)
        # Results last: a retried reconciliation finds the batches still unfinished and records them again
        # (the writes are idempotent puts), never a result without its failure records.
        failed_per_batch: dict[str, int] = {}
        for failure in page_failures:
            failed_per_batch[failure.batch_id] = failed_per_batch.get(failure.batch_id, 0) + 1
        state.put_batch_results(request.run_id, [
            {
                "batch_id": batch.batch_id,
                "images": len(batch.items),
                "scored": len(batch.items) - failed_per_batch.get(batch.batch_id, 0),
                "counted": 0,
                "duplicates": 0,
                "failed": failed_per_batch.get(batch.batch_id, 0),
                "dates": [],
                "error": f"child execution failed: {child_errors.get(batch.batch_id, general)}"[:500],
                "reconciled": True,
            }
            for batch in unfinished
        ])
    return {
        "run_id": request.run_id,
        "batches_without_result": batches_without_result,
        "items_recorded": items_recorded,
        "map_failed": request.map_failed,
    }
