"""Lambda entry point of the RecordBatchFailure step (the Catch of ClassifyBatch)."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.failures import record_batch_failure
from lambdas.observability import (
    BATCHES_FAILED,
    RUN_ID_PATH,
    count_failures_by_stage,
    counts_throttles,
    logger,
    metrics,
    tracer,
)
from lambdas.steps import RecordBatchFailureRequest


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = RecordBatchFailureRequest.from_event(event)
    logger.append_keys(batch_id=request.batch.batch_id)
    s = stores()
    result = record_batch_failure(request, s.predictions, s.failures, s.state)
    metrics.add_metric(name=BATCHES_FAILED, unit="Count", value=1)
    count_failures_by_stage(["batch"] * int(result.failed))
    logger.warning("batch recorded as failed", extra={"failed": result.failed, "error": result.error})
    return result.to_dict()
