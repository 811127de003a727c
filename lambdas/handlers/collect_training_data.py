"""Lambda entry point of the CollectTrainingData step."""

from typing import Any

from lambdas.dependencies import stores
from lambdas.observability import RUN_ID_PATH, count, counts_throttles, logger, metrics, tracer
from lambdas.steps import CollectTrainingDataRequest
from lambdas.training_data import collect_training_data


@logger.inject_lambda_context(clear_state=True, correlation_id_path=RUN_ID_PATH)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@counts_throttles
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = CollectTrainingDataRequest.from_event(event)
    s = stores()
    result = collect_training_data(request, s.settings, s.source, s.registry, s.state, s.predictions)
    count(LabelledImages=result.train_count + result.holdout_count, NewLabels=result.new_labels,
          LowConfidenceExported=result.low_confidence_count)
    return result.to_dict()
