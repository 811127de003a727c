"""RecordBatchFailure: a batch that failed after its retries becomes failure records, item by item."""

from __future__ import annotations

import json
from typing import Any

from lambdas.records import Failure
from lambdas.steps import RecordBatchFailureRequest, RecordBatchFailureResult
from lambdas.stores import COUNTED, FailureStore, PredictionStore, RunStateStore


def describe_error(error: Any) -> tuple[str, str]:
    """(error type, message) from a Catch's error output {"Error", "Cause"}."""
    if not isinstance(error, dict):
        return "UnknownError", str(error)
    error_type = str(error.get("Error") or "UnknownError")
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict) and parsed.get("errorMessage"):
            return str(parsed.get("errorType") or error_type), str(parsed["errorMessage"])
    except (TypeError, ValueError):
        pass
    return error_type, str(cause) or error_type


def record_batch_failure(
    request: RecordBatchFailureRequest,
    predictions: PredictionStore,
    failures: FailureStore,
    state: RunStateStore,
) -> RecordBatchFailureResult:
    run_id, batch = request.run_id, request.batch
    error_type, message = describe_error(request.error)
    # A batch can fail after writing some predictions (a crash, a timeout): those are done, and enter
    # the counts here if the batch died before folding them.
    predictions.fold_orphans(run_id, batch.batch_id, [item.image_id for item in batch.items])
    ledger = predictions.ledger([item.image_id for item in batch.items])
    failed = [
        Failure(
            image=item,
            stage="batch",
            reason=f"the classify batch failed after its retries: {error_type}: {message}",
            error_type=error_type,
            run_id=run_id,
            batch_id=batch.batch_id,
        )
        for item in batch.items
        if COUNTED not in ledger.get(item.image_id, set())
    ]
    failures.record(failed)
    predictions.mark_failed(failed)
    result = RecordBatchFailureResult(
        batch_id=batch.batch_id,
        scored=len(batch.items) - len(failed),
        counted=0,
        duplicates=0,
        failed=len(failed),
        dates=[],
        error=f"{error_type}: {message}"[:500],
    )
    state.put_batch_result(run_id, batch.batch_id, result.to_dict())
    return result
