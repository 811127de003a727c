"""ClassifyBatch on the in-memory stores with a small deterministic model: predictions written
once, bad images turned into failure records, a retried batch counted as this run's work."""

from __future__ import annotations

from typing import Any

import pytest

from inference_image.classify import classify_batch
from lambdas.records import Batch
from lambdas.steps import ClassifyBatchRequest
from lambdas.stores import COUNTED, FAILED
from tests.unit.conftest import BUCKET, World, png, settings

pytestmark = pytest.mark.unit


def classify(world: World, batch: Batch, run_id: str = "run-1", **overrides: str) -> dict[str, Any]:
    chosen = settings(**overrides) if overrides else world.settings
    return classify_batch(ClassifyBatchRequest(run_id, batch), chosen, world.model, world.source, world.predictions,
                          world.failures, world.state).to_dict()


def test_a_batch_is_classified_written_and_counted(world: World) -> None:
    dark = world.upload("incoming/dark.png", png(20), "2026-11-20T10:00:00+00:00")
    light = world.upload("incoming/light.png", png(230), "2026-11-21T10:00:00+00:00")
    result = classify(world, Batch("b0", [dark, light]))
    assert {k: result[k] for k in ("batch_id", "model_version", "images", "written", "counted", "duplicates",
                                   "scored", "failed", "dates", "failures")} == {
        "batch_id": "b0", "model_version": "v1", "images": 2, "written": 2, "counted": 2, "duplicates": 0,
        "scored": 2, "failed": 0, "dates": ["2026-11-20", "2026-11-21"], "failures": []}
    assert set(result["seconds"]) == {"read_decode", "inference", "total"}
    assert world.predictions.day_counts("2026-11-20") == {"dark": 1}
    assert world.predictions.day_counts("2026-11-21") == {"light": 1}
    row = next(r for r in world.predictions.predictions_for(light.image_id) if r["sk"] == "MODEL#v1")
    assert row["predicted_class"] == "light" and row["confidence"] == pytest.approx(230 / 255, abs=1e-5)
    assert world.state.batch_results("run-1")[0]["counted"] == 2


def test_a_bad_image_becomes_a_failure_and_the_rest_is_scored(world: World) -> None:
    good = world.upload("incoming/good.png", png(10))
    bad = world.upload("incoming/bad.png", b"this is not an image")
    result = classify(world, Batch("b0", [good, bad]))
    assert (result["scored"], result["failed"], result["counted"]) == (1, 1, 1)
    assert result["failures"][0]["image_id"] == bad.image_id and result["failures"][0]["stage"] == "decode"
    recorded = world.failures.for_run("run-1")
    assert [(r["image_id"], r["stage"], r["error_type"]) for r in recorded] == [(bad.image_id, "decode", "BadImage")]
    assert world.predictions.ledger([bad.image_id]) == {bad.image_id: {FAILED}}


def test_a_deleted_version_fails_at_read_with_a_clear_reason(world: World) -> None:
    gone = world.upload("incoming/gone.png", png(10))
    world.source.delete_version(BUCKET, "incoming/gone.png", gone.version_id)
    result = classify(world, Batch("b0", [gone]))
    assert result["failures"] == [{"image_id": gone.image_id, "stage": "read",
                                   "reason": "the object version was deleted before it was scored"}]
    assert world.failures.for_run("run-1")[0]["error_type"] == "NoSuchVersion"


def test_a_denied_read_is_a_failure_not_a_crash(world: World) -> None:
    denied = world.upload("incoming/secret.png", png(10))
    world.source.denied.add((BUCKET, "incoming/secret.png"))
    result = classify(world, Batch("b0", [denied]))
    assert result["failures"][0]["reason"] == "access denied reading the object version"
    assert world.failures.for_run("run-1")[0]["error_type"] == "AccessDenied"


def test_an_image_above_the_byte_limit_is_a_failure(world: World) -> None:
    big = world.upload("incoming/big.png", png(10, (300, 300)))
    result = classify(world, Batch("b0", [big]), BATCHINFER_MAX_IMAGE_BYTES="100")
    assert result["failed"] == 1 and "above the limit of 100 bytes" in result["failures"][0]["reason"]
    assert world.failures.for_run("run-1")[0]["error_type"] == "ImageTooLarge"


def test_a_retried_batch_finds_its_own_writes_and_still_counts_them(world: World) -> None:
    images = [world.upload(f"incoming/{n}.png", png(n * 20)) for n in range(3)]
    first = classify(world, Batch("b0", images))
    again = classify(world, Batch("b0", images))
    assert (first["written"], first["counted"]) == (3, 3)
    assert (again["written"], again["counted"], again["duplicates"]) == (0, 3, 3)
    assert sum(world.predictions.day_counts(images[0].capture_date(world.settings.zone)).values()) == 3


def test_another_run_scoring_the_same_versions_counts_nothing(world: World) -> None:
    images = [world.upload(f"incoming/{n}.png", png(n * 20)) for n in range(2)]
    classify(world, Batch("b0", images), run_id="run-1")
    other = classify(world, Batch("b0", images), run_id="run-2")
    assert (other["written"], other["counted"], other["duplicates"]) == (0, 0, 2)


def test_a_new_model_version_writes_a_prediction_but_no_second_count(world: World) -> None:
    image = world.upload("incoming/a.png", png(40))
    classify(world, Batch("b0", [image]))
    world.model.version = "v2"
    result = classify(world, Batch("b0", [image]), run_id="run-2")
    assert (result["written"], result["counted"]) == (1, 0)
    assert {r["sk"] for r in world.predictions.predictions_for(image.image_id)} == {"MODEL#v1", "MODEL#v2", COUNTED}


def test_images_go_through_the_model_in_sub_batches(world: World) -> None:
    images = [world.upload(f"incoming/{n:02d}.png", png(n)) for n in range(19)]
    images.insert(5, world.upload("incoming/broken.png", b""))
    result = classify(world, Batch("b0", images))
    assert world.model.calls == [7, 8, 4]  # sub-batches of 8 items, less the broken one
    assert (result["scored"], result["failed"]) == (19, 1)


def test_an_empty_batch_writes_nothing(world: World) -> None:
    result = classify(world, Batch("b0", []))
    assert (result["images"], result["written"], result["dates"]) == (0, 0, [])
    assert world.model.calls == []
