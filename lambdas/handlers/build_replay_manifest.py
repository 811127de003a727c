"""Lambda entry point of the BuildReplayManifest step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.model_registry import require_serving_model
from lambdas.observability import logger
from lambdas.replay import build_replay_manifest
from lambdas.steps import BuildReplayManifestRequest


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = BuildReplayManifestRequest.from_event(event)
    logger.append_keys(run_id=request.run_id)
    s = stores()
    require_serving_model(s.registry)
    return build_replay_manifest(request, s.settings, s.source, s.predictions, s.failures).to_dict()
