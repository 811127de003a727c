"""Lambda entry point of the PromoteIfBetter step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import RUN_ID_PATH, count, counts_throttles, logger, metrics, tracer
from lambdas.promotion import promote_if_better
from lambdas.steps import PromoteIfBetterRequest


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = PromoteIfBetterRequest.from_event(event)
    s = stores()
    result = promote_if_better(request, s.registry, s.state, s.settings.promotion_margin)
    count(ModelsPromoted=1 if result.outcome == "promoted" else 0)
    logger.info("retraining outcome", extra={"outcome": result.outcome, "reason": result.reason})
    return result.to_dict()
