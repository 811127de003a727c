"""The built-in training hook: fine-tunes the current Keras model on the labelled images and
registers the result as a candidate version (never promoted here).

The hook contract, which any training hook keeps (a Lambda function in its place, or a
SageMaker training job whose container reads the same manifests):
  in:  {"run_id", "collect": {"train_manifest", "holdout_manifest", "labels", "model_registry",
        "current_version", "candidate_version", "epochs"}}  (manifests: JSON lists of
        {"bucket", "key", "label"})
  out: {"candidate_version", "model_location", "metrics": {...}, "excluded": [{"object", "reason"}]}
       with model.keras, labels.json and metrics.json written under model_location.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from contract.settings import Settings
from inference_image.labelled_sets import load_labelled_set
from inference_image.publishing import publish_model
from lambdas.model_registry import MODEL_FILE, RETRAINING, ModelRegistry
from lambdas.records import BadRecord
from lambdas.steps import TrainingHookRequest, TrainingHookResult
from lambdas.stores import ImageSource


def train_candidate(request: TrainingHookRequest, settings: Settings, source: ImageSource,
                    open_registry: Callable[[str], ModelRegistry]) -> TrainingHookResult:
    import keras

    collect = request.collect

    registry = open_registry(collect["model_registry"])
    base = registry.fetch(collect["current_version"], file=MODEL_FILE)
    model = keras.models.load_model(base.model_path, compile=False)
    height, width, channels = model.input_shape[1:4]
    labels = list(collect["labels"])
    data = load_labelled_set(source, collect["train_manifest"], labels, (height, width), channels,
                             settings.max_image_bytes, settings.max_image_pixels, settings.read_threads)
    if len(data.targets) == 0:
        raise BadRecord("no usable labelled image to train on: " + "; ".join(
            f"{e['object']}: {e['reason']}" for e in data.excluded[:5]))
    keras.utils.set_random_seed(11)
    model.compile(optimizer=keras.optimizers.Adam(5e-4), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(data.images.astype("float32"), data.targets, epochs=int(collect.get("epochs") or 5),
                        batch_size=32, verbose=0, shuffle=True)
    metrics = {
        "base_version": base.version,
        "trained_on": int(len(data.targets)),
        "excluded": len(data.excluded),
        "epochs": int(collect.get("epochs") or 5),
        "train_accuracy": round(float(history.history["accuracy"][-1]), 4),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    # The int8 form is calibrated on these training images and checked on the held-out ones.
    held = None
    if collect.get("holdout_manifest"):
        held = load_labelled_set(source, collect["holdout_manifest"], labels, (height, width), channels,
                                 settings.max_image_bytes, settings.max_image_pixels, settings.read_threads)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / MODEL_FILE
        model.save(path)
        recorded = publish_model(registry, collect["candidate_version"], path, labels, metrics,
                                 calibration=data.images, held_out=held.images if held else None,
                                 targets=held.targets if held else None)
    registry.record("published", collect["candidate_version"], RETRAINING, detail={"run_id": request.run_id})
    metrics["serving"] = recorded["serving"]
    return TrainingHookResult(
        candidate_version=collect["candidate_version"],
        model_location=f"{registry.location}/{collect['candidate_version']}/",
        metrics=metrics,
        excluded=data.excluded,
    )
