"""Lambda entry point of the CollectTrainingData step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import logger
from lambdas.steps import CollectTrainingDataRequest
from lambdas.training_data import collect_training_data


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = CollectTrainingDataRequest.from_event(event)
    logger.append_keys(run_id=request.run_id)
    s = stores()
    return collect_training_data(request, s.settings, s.source, s.registry, s.state, s.predictions).to_dict()
