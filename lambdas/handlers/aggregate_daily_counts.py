"""Lambda entry point of the AggregateDailyCounts step."""

from typing import Any

from lambdas.counting import aggregate_daily_counts
from lambdas.dependencies import stores
from lambdas.observability import RUN_ID_PATH, count, logger, metrics, tracer
from lambdas.records import BadRecord


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not event.get("run_id"):
        raise BadRecord("AggregateDailyCounts needs 'run_id'")
    s = stores()
    summary = aggregate_daily_counts(
        str(event["run_id"]),
        str(event.get("mode") or "score"),
        event.get("checkpoint"),
        list(event.get("notes") or []),
        int(event.get("already_done") or 0),
        s.predictions,
        s.failures,
        s.state,
    )
    count(RunImagesScored=summary.get("images_scored", 0), RunImagesFailed=summary.get("images_failed", 0))
    return summary
