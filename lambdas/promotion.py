"""PromoteIfBetter: a candidate becomes the current model only if it beats the current one."""

from __future__ import annotations

from lambdas.model_registry import ModelRegistry
from lambdas.steps import PromoteIfBetterRequest, PromoteIfBetterResult
from lambdas.stores import RunStateStore
from lambdas.training_data import TRAINING_SCOPE


def promote_if_better(
    request: PromoteIfBetterRequest,
    registry: ModelRegistry,
    state: RunStateStore,
    margin: float,
) -> PromoteIfBetterResult:
    collect, evaluation = request.collect, request.evaluation
    candidate, candidate_accuracy = request.candidate_version, request.candidate_accuracy
    current_accuracy = evaluation.get("current_accuracy")
    current = collect.get("current_version")
    bar = (request.current_accuracy if request.current_accuracy is not None else 0.0) + margin
    promoted = current is None or candidate_accuracy >= bar
    if promoted:
        registry.promote(candidate)
    # The labelled data up to here has been used, promoted or not: the next round needs new data.
    if collect.get("labels_high_water"):
        state.advance_checkpoint(f"{TRAINING_SCOPE}/{registry.name}", collect["labels_high_water"], request.run_id)
    comparison = (f"candidate {candidate} accuracy {candidate_accuracy:.4f} vs current {current} "
                  f"{float(current_accuracy or 0):.4f} + margin {margin:.4f}")
    return PromoteIfBetterResult(
        outcome="promoted" if promoted else "rejected",
        reason=("promoted: " if promoted else "not promoted: ") + comparison,
        model_name=registry.name,
        candidate_version=candidate,
        current_version=candidate if promoted else current,
        previous_version=current,
        candidate_accuracy=candidate_accuracy,
        current_accuracy=current_accuracy,
        margin=margin,
        held_out=evaluation.get("held_out"),
        excluded=evaluation.get("excluded", []) + evaluation.get("training_excluded", []),
    )
