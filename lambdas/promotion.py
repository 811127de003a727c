"""PromoteIfBetter: a candidate becomes the current model only if it beats the current one."""

from __future__ import annotations

import math
from typing import Any

from lambdas.model_registry import RETRAINING, ModelRegistry
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
    significance = paired_significance(int(evaluation.get("only_candidate_right") or 0),
                                       int(evaluation.get("only_current_right") or 0),
                                       int(evaluation.get("held_out") or 0))
    promoted = current is None or (candidate_accuracy >= bar and significance["significant"])
    comparison = (f"candidate {candidate} accuracy {candidate_accuracy:.4f} vs current {current} "
                  f"{float(current_accuracy or 0):.4f} + margin {margin:.4f}")
    if current is not None:
        comparison += f"; {significance['reason']}"
    if promoted:
        registry.promote(candidate, by=RETRAINING, reason=f"run {request.run_id}: {comparison}")
    # The labelled data up to here has been used, promoted or not: the next round needs new data.
    if collect.get("labels_high_water"):
        state.advance_checkpoint(f"{TRAINING_SCOPE}/{registry.name}", collect["labels_high_water"], request.run_id)
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
        significance=significance["reason"] if current is not None else None,
        p_value=significance["p_value"] if current is not None else None,
        held_out=evaluation.get("held_out"),
        excluded=evaluation.get("excluded", []) + evaluation.get("training_excluded", []),
    )


# A candidate must beat the current model by more than chance on the held-out images: the one-sided
# exact McNemar test on the images where exactly one of them is right, at this level.
SIGNIFICANCE_LEVEL = 0.05


def paired_significance(only_candidate: int, only_current: int, held_out: int) -> dict[str, Any]:
    """Whether the candidate's lead on the same images is more than chance, and why, in words.

    Under "no difference", each disagreement is a fair coin: the p-value is the chance of the candidate
    winning at least `only_candidate` of the `only_candidate + only_current` disagreements.
    """
    disagreements = only_candidate + only_current
    # The fewest disagreements at which even a clean sweep is significant: 0.5 ** n <= level.
    needed = math.ceil(math.log(SIGNIFICANCE_LEVEL) / math.log(0.5))
    if disagreements == 0:
        return {"significant": False, "p_value": 1.0,
                "reason": f"the two versions agree on every one of the {held_out} held-out images: no evidence "
                          "either is better"}
    p_value = sum(math.comb(disagreements, k) for k in range(only_candidate, disagreements + 1)) / 2**disagreements
    significant = p_value <= SIGNIFICANCE_LEVEL
    counts = (f"the candidate alone is right on {only_candidate} and the current version alone on {only_current} "
              f"of {held_out} held-out images (one-sided exact McNemar p={p_value:.3g}")
    if significant:
        return {"significant": True, "p_value": p_value, "reason": f"{counts} <= {SIGNIFICANCE_LEVEL})"}
    if disagreements < needed:
        why = (f"{counts}): with {disagreements} disagreement(s) no lead can be significant at "
               f"{SIGNIFICANCE_LEVEL}; at least {needed} are needed, so label more held-out images")
    else:
        why = f"{counts} > {SIGNIFICANCE_LEVEL}): the lead may be chance"
    return {"significant": False, "p_value": p_value, "reason": why}
