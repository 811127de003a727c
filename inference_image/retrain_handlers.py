"""Lambda entry points of the TensorFlow steps of the retraining branch (same image as ClassifyBatch)."""

from __future__ import annotations

from typing import Any

from inference_image.evaluation import evaluate_candidate
from inference_image.training import train_candidate
from lambdas.dependencies import stores
from lambdas.observability import logger
from lambdas.records import BadRecord


def _collect(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("collect"), dict):
        raise BadRecord("the retraining steps need an object with 'run_id' and 'collect'")
    return dict(event["collect"])


@logger.inject_lambda_context(clear_state=True)
def train(event: dict[str, Any], context: Any) -> dict[str, Any]:
    collect = _collect(event)
    s = stores()
    result = train_candidate(collect, s.settings, s.source, s.open_registry)
    logger.info("candidate trained", extra={"candidate": result["candidate_version"], **result["metrics"]})
    return result


@logger.inject_lambda_context(clear_state=True)
def evaluate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    collect = _collect(event)
    s = stores()
    training: dict[str, Any] = event["training"] if isinstance(event.get("training"), dict) else {}
    result = evaluate_candidate(collect, training, s.settings, s.source, s.open_registry)
    logger.info("candidate evaluated", extra={k: result[k] for k in ("candidate_version", "candidate_accuracy",
                                                                     "current_accuracy", "held_out")})
    return result
