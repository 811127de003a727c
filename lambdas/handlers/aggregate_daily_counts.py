"""Lambda entry point of the AggregateDailyCounts step."""

from typing import Any

from lambdas.counting import aggregate_daily_counts
from lambdas.dependencies import stores
from lambdas.observability import RUN_ID_PATH, count, counts_throttles, logger, metrics, tracer
from lambdas.steps import AggregateDailyCountsRequest


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = AggregateDailyCountsRequest.from_event(event)
    s = stores()
    summary = aggregate_daily_counts(request, s.predictions, s.failures, s.state, s.settings.bucket)
    count(RunImagesScored=summary.images_scored, RunImagesFailed=summary.images_failed)
    return summary.to_dict()
