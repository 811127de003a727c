"""Lambda entry point of the WriteRunResults step (after the Classify map)."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import RUN_ID_PATH, count, counts_throttles, logger, metrics, tracer
from lambdas.results import write_run_results
from lambdas.steps import WriteRunResultsRequest


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = WriteRunResultsRequest.from_event(event)
    s = stores()
    result = write_run_results(request, s.settings.bucket, s.source, s.predictions, s.failures)
    if result.filled_from_table:
        logger.warning("result files written from the table for batches whose child wrote none",
                       extra={"batches": result.filled_from_table})
    count(ResultFilesFromTable=result.filled_from_table)
    return result.to_dict()
