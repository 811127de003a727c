"""The retraining branch on the embedded engine: collect, train (real Keras), evaluate, promote."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from demo import digits
from lambdas.model_registry import ModelRegistry
from lambdas.stores import stable_shard
from tests.conftest import cli, cli_json, output_of, prediction_rows, upload

pytestmark = pytest.mark.workflow


def is_held_out(key: str) -> bool:
    return stable_shard(key, 100) < 20  # the default BATCHINFER_HOLDOUT_PERCENT


def upload_labelled(engine: Any, items: list[Any], wrong_on_training_side: bool = False) -> None:
    for digit in items:
        key_name = f"d{digit.index:04d}.png"
        label = digit.label
        if wrong_on_training_side and not is_held_out(f"labels/{label}/{key_name}"):
            label = str((int(label) + 1) % 10)
        upload(engine, f"labels/{label}/{key_name}", digit.png)


def event_queue(engine: Any) -> str:
    sqs, events = engine.client("sqs"), engine.client("events")
    url = sqs.create_queue(QueueName="retraining-outcomes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="retraining", EventPattern=json.dumps({"source": ["batchinfer"]}))
    events.put_targets(Rule="retraining", Targets=[{"Id": "q", "Arn": arn}])
    return str(url)


@pytest.fixture
def weak_engine(engine: Any, demo_model: Any, held_out_digits: list[Any]) -> Any:
    """The stack with a v1 that confuses 1 with 7 and 3 with 8 (about 80 % right), so that retraining
    on correct labels has a real lead to show. (A model trained on a few images for a few epochs is
    stuck at chance, and fine-tuning does not move it.)"""
    import keras
    import numpy as np

    train_set, _ = digits.split()
    model = keras.models.load_model(demo_model[0], compile=False)
    x, y = digits.to_arrays(train_set[:300])
    swapped = {1: 7, 7: 1, 3: 8, 8: 3}
    keras.utils.set_random_seed(7)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, np.array([swapped.get(int(label), int(label)) for label in y]), epochs=3, batch_size=64,
              verbose=0)
    hx, hy = digits.to_arrays(held_out_digits)
    metrics = {"accuracy": round(float((model.predict(hx, verbose=0).argmax(axis=1) == hy).mean()), 4),
               "held_out": len(held_out_digits), "trained_on": 300}
    assert metrics["accuracy"] < 0.9
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.keras"
        model.save(path)
        registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", path, digits.LABELS, metrics)
        registry.promote("v1")
    return engine


def test_new_labels_train_a_better_version_that_is_promoted_and_then_serves(
    weak_engine: Any, held_out_digits: list[Any]
) -> None:
    engine = weak_engine
    train_set, _ = digits.split()
    upload_labelled(engine, train_set[:300])
    for n in range(3):  # corrupt labelled images are reported and left out
        upload(engine, f"labels/3/corrupt-{n}.png", b"\x89PNG\r\n\x1a\n" + bytes(range(40)))
    queue = event_queue(engine)

    description = engine.run({"mode": "retrain"}, timeout=900)
    assert description["status"] == "SUCCEEDED", description
    result = output_of(description)
    outcome = result["outcome"]
    assert outcome["outcome"] == "promoted", outcome
    assert outcome["candidate_accuracy"] >= outcome["current_accuracy"]
    assert outcome["previous_version"] == "v1" and outcome["current_version"] != "v1"
    corrupt = [e for e in outcome["excluded"] if "corrupt-" in e["object"]]
    assert len(corrupt) == 3 and all(e["reason"].startswith("not an image") for e in corrupt)
    assert result["collected"]["train_count"] + result["collected"]["holdout_count"] == 303

    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    new_version = outcome["current_version"]
    assert registry.current_version() == new_version and registry.versions() == sorted(["v1", new_version])
    assert registry.metrics(new_version)["accuracy"] == outcome["candidate_accuracy"]
    changes = [(e["event"], e["version"], e["by"]) for e in registry.history() if e["version"] == new_version]
    assert changes == [("published", new_version, "retraining"), ("promoted", new_version, "retraining")]
    assert "one-sided exact McNemar" in outcome["significance"] and outcome["p_value"] <= 0.05

    # What `batchinfer show` reports of it: the outcome, labels, both versions on the same images.
    from operate.operations import show_run

    shown = show_run(engine.target(), description["name"])["retrain"]
    assert (shown["outcome"], shown["serving"], shown["previous_version"]) == ("promoted", new_version, "v1")
    assert shown["held_out"] == outcome["held_out"] and shown["new_labels"] == 303
    assert shown["candidate_accuracy"] > shown["current_accuracy"]

    (message,) = engine.client("sqs").receive_message(QueueUrl=queue)["Messages"]
    event = json.loads(message["Body"])
    assert event["detail-type"] == "batchinfer retraining outcome"
    assert event["detail"]["outcome"] == "promoted" and event["detail"]["current_version"] == new_version

    # Scoring afterwards uses the promoted version, without any redeploy, and records it.
    upload(engine, "incoming/after.png", held_out_digits[0].png)
    assert engine.run({"mode": "score"})["status"] == "SUCCEEDED"
    (row,) = prediction_rows(engine)
    assert row["model_version"] == new_version

    # The labels are used up: the next round has too little new data and is skipped.
    again = output_of(engine.run({"mode": "retrain"}))["outcome"]
    assert again["outcome"] == "skipped"
    assert again["reason"].startswith("too little new labelled data: 0 new labelled image(s)")


def test_a_worse_candidate_is_not_promoted(scoring_engine: Any, held_out_digits: list[Any]) -> None:
    engine = scoring_engine
    train_set, _ = digits.split()
    upload_labelled(engine, train_set[:300], wrong_on_training_side=True)
    outcome = output_of(engine.run({"mode": "retrain"}, timeout=900))["outcome"]
    assert outcome["outcome"] == "rejected", outcome
    assert outcome["candidate_accuracy"] < outcome["current_accuracy"]
    assert outcome["reason"].startswith("not promoted: candidate")
    assert outcome["significance"].startswith("the candidate alone is right on")
    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    assert registry.current_version() == "v1"
    assert outcome["candidate_version"] in registry.versions()  # kept, with its metrics, for inspection


def test_too_little_new_data_skips_training_with_the_reason(scoring_engine: Any) -> None:
    engine = scoring_engine
    train_set, _ = digits.split()
    upload_labelled(engine, train_set[:10])
    upload(engine, "labels/cat/c.png", train_set[0].png)  # not a class of the model
    result = output_of(engine.run({"mode": "retrain"}))
    assert result["outcome"]["outcome"] == "skipped"
    assert result["outcome"]["reason"] == (
        "too little new labelled data: 10 new labelled image(s) since the last training, at least 50 needed")
    assert result["collected"]["notes"] == ["labels/cat/: 1 image(s) left out, 'cat' is not a class of model v1"]
    assert ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3")).versions() == ["v1"]


def test_low_confidence_predictions_are_exported_for_labelling(scoring_engine: Any, held_out_digits: list[Any]) -> None:
    engine = scoring_engine
    import io

    from PIL import Image

    noise = io.BytesIO()
    Image.effect_noise((96, 96), 90).convert("RGB").save(noise, format="PNG")
    upload(engine, "incoming/noise.png", noise.getvalue())
    for digit in held_out_digits[:5]:
        upload(engine, f"incoming/{digit.index}.png", digit.png)
    assert engine.run({"mode": "score"})["status"] == "SUCCEEDED"
    collected = output_of(engine.run({"mode": "retrain"}))["collected"]
    uncertain = [r for r in prediction_rows(engine) if r["confidence"] < 0.6]
    assert collected["low_confidence_count"] == len(uncertain)
    bucket, key = collected["low_confidence_export"].removeprefix("s3://").split("/", 1)
    lines = engine.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode().split("\n")
    exported = [json.loads(line) for line in lines if line]
    assert sorted(e["image_uri"] for e in exported) == sorted(r["image_uri"] for r in uncertain)


def test_cli_start_retrain_and_models(served: Any) -> None:
    train_set, _ = digits.split()
    upload_labelled(served, train_set[:80])
    started = cli_json("start", "--mode", "retrain", "--wait")
    assert started["status"] == "SUCCEEDED" and started["mode"] == "retrain"
    outcome = started["output"]["outcome"]
    assert outcome["outcome"] in ("promoted", "rejected")
    rows = cli_json("models")
    by_version = {r["version"]: r for r in rows}
    assert set(by_version) == {"v1", outcome["candidate_version"]}
    assert by_version[outcome["candidate_version"]]["accuracy"] == outcome["candidate_accuracy"]
    serving = [r["version"] for r in rows if r["current"]]
    assert serving == [outcome["current_version"]]
    table = cli("models")
    assert "serving" in table.stdout and outcome["candidate_version"] in table.stdout

    # Every version's accuracy is on the same held-out images, the ones this round compared them on.
    assert by_version["v1"]["accuracy"] == outcome["current_accuracy"]
    assert {r["held_out"] for r in rows} == {outcome["held_out"]}
    assert {r["held_out_set"] for r in rows} == {started["output"]["collected"]["holdout_manifest"]}
    # A lead on a few images is not enough: the outcome says how many images differed and why.
    assert "held-out images" in outcome["reason"]
    shown = cli("show", started["run_id"]).stdout
    assert f"retraining: {'promoted' if outcome['outcome'] == 'promoted' else 'kept'}" in shown
    assert f"on the same {outcome['held_out']} held-out image(s): candidate {outcome['candidate_version']}" in shown
