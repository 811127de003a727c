"""Lambda entry point of the BuildReplayManifest step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.model_registry import require_serving_model
from lambdas.observability import RUN_ID_PATH, count, counts_throttles, logger, metrics, tracer
from lambdas.replay import build_replay_manifest
from lambdas.steps import BuildReplayManifestRequest


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = BuildReplayManifestRequest.from_event(event)
    s = stores()
    require_serving_model(s.registry)
    result = build_replay_manifest(request, s.settings, s.source, s.predictions, s.failures)
    count(ImagesToReplay=result.images, BatchesListed=result.batches)
    return result.to_dict()
