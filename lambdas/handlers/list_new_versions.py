"""Lambda entry point of the ListNewVersions step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.listing import check_prefix, list_new_versions
from lambdas.model_registry import require_serving_model
from lambdas.observability import RUN_ID_PATH, count, counts_throttles, logger, metrics, tracer
from lambdas.steps import ListNewVersionsRequest


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = ListNewVersionsRequest.from_event(event)
    s = stores()
    check_prefix(request.prefix, s.settings)
    require_serving_model(s.registry)
    result = list_new_versions(request, s.settings, s.source, s.predictions, s.ledger, s.uploads)
    count(ImagesListed=result.images, BatchesListed=result.batches, EventsRejected=len(request.rejected_events))
    return result.to_dict()
