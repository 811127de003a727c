"""Lambda entry point of the ReconcileBatches step (after the Classify map)."""

from typing import Any

from lambdas.batch_reconciliation import ReconcileRequest, reconcile_batches
from lambdas.dependencies import stores
from lambdas.observability import RUN_ID_PATH, count, counts_throttles, logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = ReconcileRequest.from_event(event)
    s = stores()
    result = reconcile_batches(request, s.source, s.predictions, s.failures, s.state)
    if result["batches_without_result"]:
        logger.warning("batches without a result recorded as failed", extra=result)
    count(BatchesWithoutResult=result["batches_without_result"])
    return result
