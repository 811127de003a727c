"""Lambda entry points of the TensorFlow steps of the retraining branch (same image as ClassifyBatch)."""

from __future__ import annotations

from typing import Any

from inference_image.evaluation import evaluate_candidate
from inference_image.training import train_candidate
from lambdas.dependencies import stores
from lambdas.observability import logger
from lambdas.steps import EvaluateCandidateRequest, TrainingHookRequest


@logger.inject_lambda_context(clear_state=True)
def train(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = TrainingHookRequest.from_event(event)
    s = stores()
    result = train_candidate(request, s.settings, s.source, s.open_registry)
    logger.info("candidate trained", extra={"candidate": result.candidate_version, **result.metrics})
    return result.to_dict()


@logger.inject_lambda_context(clear_state=True)
def evaluate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = EvaluateCandidateRequest.from_event(event)
    s = stores()
    result = evaluate_candidate(request, s.settings, s.source, s.open_registry)
    logger.info("candidate evaluated", extra={"candidate_version": result.candidate_version,
                                              "candidate_accuracy": result.candidate_accuracy,
                                              "current_accuracy": result.current_accuracy,
                                              "held_out": result.held_out})
    return result.to_dict()
