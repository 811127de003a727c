"""Lambda entry points of the TensorFlow steps (the training image, Dockerfile.training): the retraining
branch's TrainingHook and EvaluateCandidate, and PublishModel."""

from __future__ import annotations

from typing import Any

from inference_image.artifact_publishing import publish_artifact
from inference_image.evaluation import evaluate_candidate
from inference_image.training import train_candidate
from lambdas.dependencies import stores
from lambdas.observability import RUN_ID_PATH, count, logger, metrics, tracer
from lambdas.steps import EvaluateCandidateRequest, PublishModelRequest, TrainingHookRequest


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def train(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = TrainingHookRequest.from_event(event)
    s = stores()
    result = train_candidate(request, s.settings, s.source, s.open_registry)
    count(TrainedOn=result.metrics["trained_on"], TrainingImagesExcluded=len(result.excluded))
    logger.info("candidate trained", extra={"candidate": result.candidate_version, **result.metrics})
    return result.to_dict()


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def evaluate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = EvaluateCandidateRequest.from_event(event)
    s = stores()
    result = evaluate_candidate(request, s.settings, s.source, s.open_registry)
    count(HeldOutImages=result.held_out, HeldOutImagesExcluded=len(result.excluded))
    logger.info("candidate evaluated", extra={"candidate_version": result.candidate_version,
                                              "candidate_accuracy": result.candidate_accuracy,
                                              "current_accuracy": result.current_accuracy,
                                              "held_out": result.held_out})
    return result.to_dict()


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def publish(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = PublishModelRequest.from_event(event)
    s = stores()
    result = publish_artifact(request, s.settings, s.source, s.open_registry)
    count(ModelsPublished=1, ModelsPromoted=1 if result.outcome == "promoted" else 0)
    logger.info("model published", extra={"version": result.version, "outcome": result.outcome,
                                          "reason": result.reason})
    return result.to_dict()
