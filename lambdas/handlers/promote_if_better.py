"""Lambda entry point of the PromoteIfBetter step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import logger
from lambdas.promotion import promote_if_better
from lambdas.steps import PromoteIfBetterRequest


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = PromoteIfBetterRequest.from_event(event)
    logger.append_keys(run_id=request.run_id)
    s = stores()
    result = promote_if_better(request, s.registry, s.state, s.settings.promotion_margin)
    logger.info("retraining outcome", extra={"outcome": result.outcome, "reason": result.reason})
    return result.to_dict()
