"""Lambda entry point of the ClassifyBatch step (the container image's CMD)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from inference_image.classifier import ClassifierCache
from inference_image.classify import classify_batch
from lambdas.dependencies import stores
from lambdas.observability import (
    BATCH_SECONDS,
    IMAGES_FAILED,
    IMAGES_SCORED,
    RUN_ID_PATH,
    count,
    count_failures_by_stage,
    counts_throttles,
    logger,
    metrics,
    tracer,
)
from lambdas.steps import ClassifyBatchRequest


@lru_cache(maxsize=1)
def classifiers() -> ClassifierCache:
    s = stores()
    return ClassifierCache(s.registry, s.settings.model_refresh_seconds)


def reset() -> None:
    classifiers.cache_clear()


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = ClassifyBatchRequest.from_event(event)
    logger.append_keys(batch_id=request.batch.batch_id)
    s = stores()
    result = classify_batch(
        request, s.settings, classifiers().current(), s.source, s.predictions, s.failures, s.state
    )
    for failure in result.failures:
        logger.warning("image failed", extra={"image_id": failure["image_id"], "stage": failure["stage"],
                                              "reason": failure["reason"]})
    metrics.add_metric(name=IMAGES_SCORED, unit="Count", value=result.scored)
    metrics.add_metric(name=IMAGES_FAILED, unit="Count", value=result.failed)
    metrics.add_metric(name=BATCH_SECONDS, unit="Seconds", value=result.seconds.total)
    count(DuplicatesSkipped=result.duplicates)
    count_failures_by_stage(failure["stage"] for failure in result.failures)
    logger.info("batch classified", extra={"scored": result.scored, "failed": result.failed,
                                           "counted": result.counted, "duplicates": result.duplicates,
                                           "throttled": result.throttled})
    return result.to_dict()
