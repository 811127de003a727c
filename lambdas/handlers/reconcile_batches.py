"""Lambda entry point of the ReconcileBatches step (after the Classify map)."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import logger
from lambdas.reconciliation import ReconcileRequest, reconcile_batches


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = ReconcileRequest.from_event(event)
    logger.append_keys(run_id=request.run_id)
    s = stores()
    result = reconcile_batches(request, s.source, s.predictions, s.failures, s.state)
    if result["batches_without_result"]:
        logger.warning("batches without a result recorded as failed", extra=result)
    return result
