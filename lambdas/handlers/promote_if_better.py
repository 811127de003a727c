"""Lambda entry point of the PromoteIfBetter step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import logger
from lambdas.promotion import promote_if_better
from lambdas.records import BadRecord


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not all(k in event for k in ("run_id", "collect", "evaluation")):
        raise BadRecord("PromoteIfBetter needs 'run_id', 'collect' and 'evaluation'")
    logger.append_keys(run_id=event["run_id"])
    s = stores()
    result = promote_if_better(str(event["run_id"]), event["collect"], event["evaluation"], s.registry, s.state,
                               s.settings.promotion_margin)
    logger.info("retraining outcome", extra={"outcome": result["outcome"], "reason": result["reason"]})
    return result
