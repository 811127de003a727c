"""The served form of a version: int8 only when it passes the gate, fetched alone at a cold start,
run on LiteRT, and recorded with every prediction; serving imports no TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.resource_spec import COMPILED_FILE, INT8_FILE, MODEL_FILE
from lambdas.model_registry import ModelRegistry
from tests.conftest import prediction_rows, upload

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_model_serves_int8_which_agrees_with_keras(demo_model: Any, demo_model_forms: Any) -> None:
    import keras

    from demo import digits
    from inference_image.classifier import Classifier
    from lambdas.model_registry import ModelVersion

    serving = demo_model_forms.serving
    assert serving["form"] == "int8", serving["reason"]
    assert serving["int8_agreement"] >= 0.99 and serving["accuracy_drop_points"] <= 0.5
    assert serving["held_out"] == 450 and serving["calibration_images"] == 128

    _, held_out = digits.split()
    x, y = digits.to_arrays(held_out)
    keras_top = keras.models.load_model(demo_model[0], compile=False).predict(x, verbose=0).argmax(axis=1)
    folder = demo_model[0].parent
    served = Classifier.load(ModelVersion("v1", folder / INT8_FILE, digits.LABELS, {}))
    assert served.runtime == "litert-int8"
    served_top = served.predict(x.astype(np.uint8)).argmax(axis=1)
    assert float((served_top == keras_top).mean()) >= 0.99
    assert float((served_top == y).mean()) >= demo_model[1]["accuracy"] - 0.005


def test_an_int8_form_that_disagrees_too_much_is_not_served(demo_model: Any, tmp_path: Path) -> None:
    from demo import digits
    from inference_image.classifier import load_version
    from inference_image.publishing import publish_model

    # Calibrated on blank grey scans, the int8 form never sees the range of paper and ink: its
    # activations clip and its answers drift (about 72% agreement), so fp32 must serve.
    blank = np.full((64, *digits.INPUT_SIZE, 3), 128, dtype=np.uint8)
    _, held_out = digits.split()
    held_x, held_y = digits.to_arrays(held_out)
    registry = ModelRegistry(str(tmp_path / "registry"))
    recorded = publish_model(registry, "v1", demo_model[0], digits.LABELS, {"accuracy": 0.98},
                             calibration=blank, held_out=held_x, targets=held_y)

    serving = recorded["serving"]
    assert serving["form"] == "fp32"
    assert serving["int8_agreement"] < 0.99
    assert "under 99%" in serving["reason"] and "points of accuracy" in serving["reason"]
    assert (tmp_path / "registry" / "v1" / INT8_FILE).exists()  # kept for inspection, not served
    assert registry.metrics("v1")["serving"] == serving
    assert load_version(registry, "v1").runtime == "litert-fp32"


def test_a_cold_start_fetches_only_the_form_that_serves(scoring_engine: Any, tmp_path: Path) -> None:
    from inference_image.classifier import load_version

    registry = ModelRegistry(scoring_engine.config.model_registry, s3_client=scoring_engine.client("s3"),
                             cache_dir=str(tmp_path))
    classifier = load_version(registry, "v1")
    assert classifier.runtime == "litert-int8"
    fetched = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert fetched == [INT8_FILE]
    assert MODEL_FILE not in fetched and COMPILED_FILE not in fetched


def test_every_prediction_records_its_model_version_and_runtime(scoring_engine: Any,
                                                                held_out_digits: list[Any]) -> None:
    from engine.lambda_bridge import LambdaContext
    from inference_image import handler as classify_handler
    from lambdas.handlers import list_new_versions

    for digit in held_out_digits[:4]:
        upload(scoring_engine, f"incoming/{digit.index}.png", digit.png, digit.label)
    context = LambdaContext("f", 1024, "arn:aws:lambda:us-east-1:1:function:f", 60)
    listed = list_new_versions.handler({"run_id": "run-1", "input": {"mode": "score"}}, context)
    body = scoring_engine.client("s3").get_object(Bucket=listed["manifest_bucket"], Key=listed["manifest_key"])
    batch = json.loads(body["Body"].read())[0]
    result = classify_handler.handler({"run_id": "run-1", "batch": batch}, context)
    assert result["runtime"] == "litert-int8"
    rows = prediction_rows(scoring_engine)
    assert len(rows) == 4
    assert {(r["model_version"], r["runtime"]) for r in rows} == {("v1", "litert-int8")}


SERVE_IN_A_FRESH_PROCESS = """
import json, sys
import inference_image.handler
from inference_image.classifier import ClassifierCache
from lambdas.model_registry import ModelRegistry
classifier = ClassifierCache(ModelRegistry(sys.argv[1]), 30.0).current()
import numpy as np
classifier.predict(np.zeros((2, *classifier.input_size, classifier.channels), dtype=np.uint8))
print(json.dumps({"runtime": classifier.runtime,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))}))
"""


def test_serving_imports_no_tensorflow(demo_model: Any, demo_model_forms: Any, tmp_path: Path) -> None:
    from demo import digits
    from inference_image.publishing import publish_forms

    registry = ModelRegistry(str(tmp_path / "registry"))
    publish_forms(registry, "v1", demo_model[0], digits.LABELS, demo_model[1], demo_model_forms)
    registry.promote("v1")
    env = {**os.environ, "PYTHONPATH": str(REPO), "AWS_DEFAULT_REGION": "us-east-1",
           "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true"}
    completed = subprocess.run([sys.executable, "-c", SERVE_IN_A_FRESH_PROCESS, str(tmp_path / "registry")],
                               env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-2000:]
    seen = json.loads(completed.stdout.strip().splitlines()[-1])
    assert seen == {"runtime": "litert-int8", "loaded": []}


def test_models_shows_the_served_form_and_the_int8_check(scoring_engine: Any) -> None:
    from operate.operations import list_models

    (row,) = list_models(scoring_engine.target())
    assert (row["version"], row["current"], row["serves"]) == ("v1", True, "int8")
    assert row["int8_agreement"] >= 0.99 and row["int8_accuracy_drop_points"] <= 0.5
    assert row["serving_reason"].startswith("int8 agrees with fp32 on")


def test_a_version_pointed_at_by_hand_serves_only_once_approved(demo_model: Any, demo_model_forms: Any,
                                                               tmp_path: Path) -> None:
    from demo import digits
    from inference_image.classifier import ClassifierCache
    from inference_image.publishing import publish_forms
    from lambdas.model_registry import ModelError

    registry = ModelRegistry(str(tmp_path / "registry"))
    publish_forms(registry, "v1", demo_model[0], digits.LABELS, demo_model[1], demo_model_forms)
    registry.request_approval("v1", by="ci")
    registry.storage.write("current.json", b'{"version": "v1"}')
    cache = ClassifierCache(registry, refresh_seconds=0.0)  # the pointer is read at every call
    with pytest.raises(ModelError, match="v1 is named in current.json but its approval is pending"):
        cache.current()
    registry.approve("v1", by="bob")
    reads: list[str] = []
    read = registry.storage.read

    def counted(relative: str) -> bytes:
        reads.append(relative)
        return read(relative)

    object.__setattr__(registry.storage, "read", counted)
    for _ in range(3):  # three batches: the approval is read when the version loads, not per batch
        classifier = cache.current()
        assert classifier.predict(np.zeros((1, *classifier.input_size, classifier.channels), np.uint8)).shape == (1, 10)
    assert reads.count("v1/approval.json") == 1 and reads.count("current.json") == 3
