"""Lambda entry point of the AggregateDailyCounts step."""

from typing import Any

from lambdas.counting import aggregate_daily_counts
from lambdas.dependencies import stores
from lambdas.observability import logger
from lambdas.steps import AggregateDailyCountsRequest


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = AggregateDailyCountsRequest.from_event(event)
    logger.append_keys(run_id=request.run_id)
    s = stores()
    return aggregate_daily_counts(request, s.predictions, s.failures, s.state).to_dict()
