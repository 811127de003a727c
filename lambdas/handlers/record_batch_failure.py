"""Lambda entry point of the RecordBatchFailure step (the Catch of ClassifyBatch)."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.failures import record_batch_failure
from lambdas.observability import logger
from lambdas.steps import RecordBatchFailureRequest


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = RecordBatchFailureRequest.from_event(event)
    logger.append_keys(run_id=request.run_id, batch_id=request.batch.batch_id)
    s = stores()
    result = record_batch_failure(request, s.predictions, s.failures, s.state)
    logger.warning("batch recorded as failed", extra={"failed": result.failed, "error": result.error})
    return result.to_dict()
