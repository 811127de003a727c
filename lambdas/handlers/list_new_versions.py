"""Lambda entry point of the ListNewVersions step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.listing import check_prefix, list_new_versions
from lambdas.model_registry import require_serving_model
from lambdas.observability import logger
from lambdas.steps import ListNewVersionsRequest


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = ListNewVersionsRequest.from_event(event)
    logger.append_keys(run_id=request.run_id)
    s = stores()
    prefix = check_prefix(request.prefix, s.settings)
    require_serving_model(s.registry)
    checkpoint = s.state.checkpoint(f"{s.settings.bucket}/{prefix}")
    return list_new_versions(request, s.settings, s.source, s.predictions, checkpoint).to_dict()
