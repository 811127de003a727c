"""BuildReplayManifest, CollectTrainingData and PromoteIfBetter on the in-memory stores and registry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambdas.model_registry import ModelError
from lambdas.promotion import promote_if_better
from lambdas.records import Failure, Prediction
from lambdas.replay import build_replay_manifest
from lambdas.steps import BuildReplayManifestRequest, CollectTrainingDataRequest, PromoteIfBetterRequest
from lambdas.training_data import TRAINING_SCOPE, collect_training_data
from tests.unit.conftest import BUCKET, World, png, settings

pytestmark = pytest.mark.unit


def fail(world: World, image: Any, run: str = "run-1") -> None:
    world.failures.record([Failure(image, "decode", "bad", "BadImage", run, "b0")])
    world.predictions.mark_failed([Failure(image, "decode", "bad", "BadImage", run, "b0")])


def replay(world: World, of: str = "run-1") -> dict[str, Any]:
    return build_replay_manifest(BuildReplayManifestRequest("replay-1", of), world.settings, world.source,
                                 world.predictions, world.failures).to_dict()


# -- replay ---------------------------------------------------------------------------------
def test_replay_takes_the_failed_items_of_the_run(world: World) -> None:
    broken = [world.upload(f"incoming/{n}.png", b"") for n in range(3)]
    for image in broken:
        fail(world, image)
    result = replay(world)
    assert (result["images"], result["batches"], result["already_done"], result["checkpoint"]) == (3, 2, 0, None)
    assert sorted(i["version_id"] for b in world.manifest(result) for i in b["items"]) == sorted(
        i.version_id for i in broken)


def test_replay_scores_a_newer_upload_instead_of_the_broken_version(world: World) -> None:
    broken = world.upload("incoming/a.png", b"")
    fail(world, broken)
    fixed = world.upload("incoming/a.png", png(40))
    result = replay(world)
    assert [i["version_id"] for b in world.manifest(result) for i in b["items"]] == [fixed.version_id]
    assert result["notes"] == [f"{broken.image_id}: replaced by the newer upload {fixed.version_id}"]


def test_replay_leaves_out_what_has_been_counted_since(world: World) -> None:
    image = world.upload("incoming/a.png", png(40))
    fail(world, image)
    world.predictions.write([Prediction(image, "dark", 0.9, {"dark": 0.9}, "v1", "run-2", "b0", "2026-11-20")])
    result = replay(world)
    assert (result["images"], result["already_done"]) == (0, 1)


def test_replaying_a_run_without_failures_says_so(world: World) -> None:
    result = replay(world, "run-9")
    assert result["images"] == 0 and result["notes"] == ["run run-9 has no recorded failures: nothing to replay"]


# -- training data --------------------------------------------------------------------------
def collect(world: World, **overrides: str) -> dict[str, Any]:
    chosen = settings(**overrides) if overrides else world.settings
    return collect_training_data(CollectTrainingDataRequest("retrain-1"), chosen, world.source, world.registry,
                                 world.state, world.predictions).to_dict()


def test_training_data_needs_a_current_model(world: World) -> None:
    with pytest.raises(ModelError, match="retraining needs a current model to start from"):
        collect(world)


def test_labelled_images_are_split_and_written_as_manifests(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    for n in range(20):
        world.upload(f"labels/{'dark' if n % 2 else 'light'}/{n}.png", png(n))
    world.upload("labels/owl/1.png", png(1))
    world.upload("labels/loose.png", png(1))
    result = collect(world)
    assert result["enough"] is True and result["reason"] == ""
    assert result["train_count"] + result["holdout_count"] == 20 and result["holdout_count"] > 0
    assert (result["current_version"], result["model_name"], result["labels"]) == ("v1", "shades", ["dark", "light"])
    assert result["notes"] == ["labels/owl/: 1 image(s) left out, 'owl' is not a class of model v1"]
    train = world.source.read_json(BUCKET, "runs/retrain-1/train.json")
    held = world.source.read_json(BUCKET, "runs/retrain-1/holdout.json")
    assert len(train) == result["train_count"] and len(held) == result["holdout_count"]
    assert {i["key"] for i in train}.isdisjoint({i["key"] for i in held})
    assert result["train_manifest"] == f"s3://{BUCKET}/runs/retrain-1/train.json"


def test_the_split_is_stable_from_one_round_to_the_next(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    for n in range(20):
        world.upload(f"labels/dark/{n}.png", png(n))
    first = collect(world)
    held_first = {i["key"] for i in world.source.read_json(BUCKET, "runs/retrain-1/holdout.json")}
    second = collect(world)
    held_second = {i["key"] for i in world.source.read_json(BUCKET, "runs/retrain-1/holdout.json")}
    assert held_first == held_second and first["holdout_count"] == second["holdout_count"]


def test_too_few_new_labels_since_the_last_training_is_not_enough(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    for n in range(10):
        world.upload(f"labels/dark/{n}.png", png(n), f"2026-11-20T10:00:{n:02d}+00:00")
    world.upload("labels/light/new.png", png(200), "2026-11-22T10:00:00+00:00")
    world.state.advance_checkpoint(f"{TRAINING_SCOPE}/shades", "2026-11-21T00:00:00+00:00", "retrain-0")
    result = collect(world)
    assert (result["enough"], result["new_labels"]) == (False, 1)
    assert result["reason"] == ("too little new labelled data: 1 new labelled image(s) since the last training, "
                                "at least 3 needed")
    assert result["labels_high_water"] == "2026-11-22T10:00:00+00:00"


def test_no_held_out_image_is_not_enough(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    for n in range(5):
        world.upload(f"labels/dark/{n}.png", png(n))
    result = collect(world, BATCHINFER_HOLDOUT_PERCENT="1")
    if result["holdout_count"] == 0:
        assert result["reason"] == "too little labelled data to hold some out for evaluation"
        assert result["enough"] is False
    else:  # the stable split happened to hold one out: then there is enough
        assert result["enough"] is (result["train_count"] > 0)


def test_low_confidence_predictions_of_the_current_model_are_exported(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    unsure = world.upload("incoming/unsure.png", png(128))
    sure = world.upload("incoming/sure.png", png(0))
    world.predictions.write([
        Prediction(unsure, "light", 0.51, {"dark": 0.49, "light": 0.51}, "v1", "run-1", "b0", "2026-11-20"),
        Prediction(sure, "dark", 0.99, {"dark": 0.99, "light": 0.01}, "v1", "run-1", "b0", "2026-11-20"),
    ])
    result = collect(world)
    assert result["low_confidence_count"] == 1
    text = world.source.read_object(BUCKET, "runs/retrain-1/low_confidence.jsonl").decode()
    assert [json.loads(line) for line in text.splitlines()] == [
        {"image_uri": unsure.image_id, "predicted_class": "light", "confidence": 0.51, "date": "2026-11-20"}]


# -- promotion ------------------------------------------------------------------------------
def promote(world: World, candidate: float, current: float | None, margin: float = 0.0,
            high_water: str | None = "2026-11-22T10:00:00+00:00", held_out: int = 120,
            only_candidate: int = 6, only_current: int = 0) -> dict[str, Any]:
    collect_result = {"current_version": "v1" if current is not None else None, "labels_high_water": high_water}
    evaluation = {"candidate_version": "v2", "candidate_accuracy": candidate, "current_accuracy": current,
                  "held_out": held_out, "only_candidate_right": only_candidate, "only_current_right": only_current,
                  "excluded": [], "training_excluded": []}
    request = PromoteIfBetterRequest.from_event({"run_id": "retrain-1", "collect": collect_result,
                                                 "evaluation": evaluation})
    return promote_if_better(request, world.registry, world.state, margin).to_dict()


def test_a_better_candidate_is_promoted(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    world.publish("v2", ["dark", "light"])
    result = promote(world, 0.95, 0.9)
    assert (result["outcome"], result["current_version"], result["previous_version"]) == ("promoted", "v2", "v1")
    assert result["reason"] == ("promoted: candidate v2 accuracy 0.9500 vs current v1 0.9000 + margin 0.0000; the "
                                "candidate alone is right on 6 and the current version alone on 0 of 120 held-out "
                                "images (one-sided exact McNemar p=0.0156 <= 0.05)")
    assert world.registry.current_version() == "v2"
    assert world.state.checkpoint(f"{TRAINING_SCOPE}/shades") == "2026-11-22T10:00:00+00:00"
    (change,) = [e for e in world.registry.history() if e["version"] == "v2"]
    assert (change["event"], change["by"], change["detail"]) == ("promoted", "retraining", {"previous": "v1"})
    assert change["reason"] == "run retrain-1: " + result["reason"].removeprefix("promoted: ")


def test_a_candidate_short_of_the_margin_is_rejected_and_the_data_still_used(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    world.publish("v2", ["dark", "light"])
    result = promote(world, 0.92, 0.9, margin=0.05)
    assert (result["outcome"], result["current_version"]) == ("rejected", "v1")
    assert result["reason"].startswith("not promoted: ")
    assert world.registry.current_version() == "v1"
    assert not [e for e in world.registry.history() if e["version"] == "v2"]  # nothing changed for it
    assert world.state.checkpoint(f"{TRAINING_SCOPE}/shades") == "2026-11-22T10:00:00+00:00"


def test_a_lead_of_one_image_is_not_promoted_and_says_why(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    world.publish("v2", ["dark", "light"])
    result = promote(world, 1.0, 0.973, held_out=37, only_candidate=1, only_current=0)
    assert (result["outcome"], result["current_version"]) == ("rejected", "v1")
    assert result["significance"] == (
        "the candidate alone is right on 1 and the current version alone on 0 of 37 held-out images (one-sided "
        "exact McNemar p=0.5): with 1 disagreement(s) no lead can be significant at 0.05; at least 5 are needed, "
        "so label more held-out images")
    assert world.registry.current_version() == "v1"


def test_a_lead_that_may_be_chance_is_not_promoted(world: World) -> None:
    world.publish("v1", ["dark", "light"], promote=True)
    world.publish("v2", ["dark", "light"])
    result = promote(world, 0.6, 0.5, held_out=100, only_candidate=30, only_current=20)
    assert result["outcome"] == "rejected" and result["significance"].endswith("> 0.05): the lead may be chance")
    assert round(result["p_value"], 3) == 0.101


def test_a_candidate_with_nothing_to_beat_is_promoted(world: World) -> None:
    world.publish("v2", ["dark", "light"])
    assert promote(world, 0.1, None)["outcome"] == "promoted" and world.registry.current_version() == "v2"


