"""Publishing a model version: its fp32 and full-integer int8 TF-Lite forms, the int8 gate, and the
choice of the form that serves, recorded in metrics.json (needs TensorFlow: training image only)."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract.resource_spec import COMPILED_FILE, INT8_FILE
from inference_image.classifier import LiteRTForward, available_cpus
from lambdas.model_registry import ModelRegistry
from lambdas.records import probabilities_kept

# int8 serves only when it gives (nearly) the same answers as the fp32 model and loses at most
# half a point of accuracy on the held-out set; otherwise fp32 serves and the metrics say why.
MIN_AGREEMENT = 0.99
MAX_ACCURACY_DROP_POINTS = 0.5
# Enough images for the calibrator to see each activation's range; more only costs conversion time.
CALIBRATION_IMAGES = 128
# The served form's forward pass is timed on a batch of this many held-out images when a version is published:
# the capacity plan (`batchinfer plan`, contract/capacity.py) takes its seconds per batch from there.
TIMED_BATCH = 32
TIMED_ROUNDS = 3


@dataclass
class Forms:
    """A version's TF-Lite forms and the serving decision, as publish_forms stores them."""

    fp32: bytes
    int8: bytes | None
    serving: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        return {COMPILED_FILE: self.fp32, **({INT8_FILE: self.int8} if self.int8 is not None else {})}


def _convert(converter: Any) -> bytes:
    # The converter prints its SavedModel's signatures to stdout, where CLI output (--json) goes.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


# A converter factory gives a fresh tf.lite.TFLiteConverter for the model each time it is called.
Converter = Callable[[], Any]


def keras_converter(model_file: Path) -> Converter:
    """The converter factory of a Keras model file (.keras or .h5)."""

    def make() -> Any:
        import keras
        import tensorflow as tf

        return tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(model_file, compile=False))

    return make


def compile_model(model: Path | Converter) -> bytes:
    """The TF-Lite (fp32) form of a Keras model file or a converter factory; the same weights and outputs."""
    converter = model() if callable(model) else keras_converter(model)()
    return _convert(converter)


def representative_sample(images: np.ndarray, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """Up to `count` images spread evenly over the set (a set is often grouped by class)."""
    if len(images) <= count:
        return images
    return images[np.linspace(0, len(images) - 1, count).astype(int)]


def quantize_model(model: Path | Converter, calibration: np.ndarray) -> bytes:
    """The full-integer int8 form: weights and activations int8, calibrated on `calibration`
    (uint8 or float images as the model takes them). Input and output stay float32, so it is
    called exactly as the fp32 form is (the model's own Rescaling stays inside it)."""
    import tensorflow as tf

    if len(calibration) == 0:
        raise ValueError("int8 calibration needs at least one of the version's training images")
    sample = calibration.astype(np.float32)
    converter = model() if callable(model) else keras_converter(model)()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[n: n + 1]] for n in range(len(sample)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return _convert(converter)


def _predict(model: bytes, images: np.ndarray, batch: int = 32) -> np.ndarray:
    forward = LiteRTForward(model, available_cpus())
    parts = [forward(images[n: n + batch].astype(np.float32)) for n in range(0, len(images), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def choose_form(fp32: bytes, int8: bytes | None, held_out: np.ndarray, targets: np.ndarray | None,
                calibration_images: int, int8_error: str | None = None) -> dict[str, Any]:
    """The serving decision for metrics.json: both forms on the same held-out images, through the
    runtime that serves them (LiteRT), and the form that serves with the reason."""
    decision: dict[str, Any] = {"runtime": "litert", "min_agreement": MIN_AGREEMENT,
                                "max_accuracy_drop_points": MAX_ACCURACY_DROP_POINTS,
                                "calibration_images": calibration_images, "held_out": int(len(held_out))}
    if int8 is None:
        return {**decision, "form": "fp32", "reason": f"no int8 form: {int8_error or 'not produced'}"}
    if len(held_out) == 0:
        return {**decision, "form": "fp32", "reason": "no held-out images to check the int8 form on"}
    fp32_top = _predict(fp32, held_out).argmax(axis=1)
    int8_top = _predict(int8, held_out).argmax(axis=1)
    agreement = float((fp32_top == int8_top).mean())
    decision["int8_agreement"] = round(agreement, 4)
    reasons = []
    if agreement < MIN_AGREEMENT:
        reasons.append(f"int8 agrees with fp32 on {agreement:.2%} of the held-out images, under {MIN_AGREEMENT:.0%}")
    if targets is not None:
        fp32_accuracy, int8_accuracy = float((fp32_top == targets).mean()), float((int8_top == targets).mean())
        drop = round((fp32_accuracy - int8_accuracy) * 100, 2)
        decision.update({"fp32_accuracy": round(fp32_accuracy, 4), "int8_accuracy": round(int8_accuracy, 4),
                         "accuracy_drop_points": drop})
        if drop > MAX_ACCURACY_DROP_POINTS:
            reasons.append(f"int8 loses {drop} points of accuracy, over {MAX_ACCURACY_DROP_POINTS}")
    else:
        decision["accuracy_note"] = "the held-out images have no labels: agreement with fp32 is the only check"
    if reasons:
        return {**decision, "form": "fp32", "reason": "; ".join(reasons)}
    return {**decision, "form": "int8", "reason": f"int8 agrees with fp32 on {agreement:.2%}"
            + (f" and loses {decision['accuracy_drop_points']} points" if targets is not None else "")}


def prepare_forms(model_file: Path | Converter, calibration: np.ndarray | None, held_out: np.ndarray | None,
                  targets: np.ndarray | None) -> Forms:
    """Both TF-Lite forms of a Keras model file (or a converter factory) and which one serves.

    `calibration`: the version's own training images (a representative sample is taken);
    `held_out`/`targets`: images it was not trained on, with their labels when known."""
    fp32 = compile_model(model_file)
    if calibration is None or len(calibration) == 0:
        serving = choose_form(fp32, None, np.zeros((0,)), None, 0, "no training images to calibrate on")
        return Forms(fp32, None, timed(serving, fp32, held_out))
    sample = representative_sample(calibration)
    try:
        int8 = quantize_model(model_file, sample)
    except Exception as error:  # the converter raises many types for an op it cannot quantize
        serving = choose_form(fp32, None, np.zeros((0,)), None, len(sample),
                              f"conversion failed: {type(error).__name__}: {str(error)[:200]}")
        return Forms(fp32, None, timed(serving, fp32, held_out))
    held = held_out if held_out is not None else np.zeros((0,))
    serving = choose_form(fp32, int8, held, targets, len(sample))
    served = int8 if serving["form"] == "int8" else fp32
    return Forms(fp32, int8, timed(serving, served, held_out))


def forward_seconds(model: bytes, images: np.ndarray, batch: int = TIMED_BATCH) -> float | None:
    """Seconds of one forward pass of `model` over `batch` images (the held-out ones, repeated to fill it),
    the best of TIMED_ROUNDS after a warm-up, through LiteRT on this machine's CPUs; None without images."""
    if len(images) == 0:
        return None
    sample = np.resize(images, (batch, *images.shape[1:])).astype(np.float32)
    forward = LiteRTForward(model, available_cpus())
    forward(sample)
    best = float("inf")
    for _ in range(TIMED_ROUNDS):
        started = time.perf_counter()
        forward(sample)
        best = min(best, time.perf_counter() - started)
    return round(best, 4)


def timed(serving: dict[str, Any], served: bytes, images: np.ndarray | None) -> dict[str, Any]:
    """The serving decision with the served form's forward seconds per batch, when there are images to time."""
    seconds = forward_seconds(served, images) if images is not None else None
    if seconds is None:
        return serving
    return {**serving, "forward_seconds_per_batch": seconds, "timed_batch": TIMED_BATCH}


def publish_forms(registry: ModelRegistry, version: str, model_file: Path, labels: list[str],
                  metrics: dict[str, Any], forms: Forms) -> dict[str, Any]:
    """Store a version with its TF-Lite forms and the serving decision in its metrics (not promoted)."""
    # What each prediction keeps of its probabilities: all of them, or the top few for many classes.
    recorded = {**metrics, "serving": forms.serving, "stored_probabilities": probabilities_kept(len(labels))}
    registry.publish(version, model_file, labels, recorded, forms=forms.files())
    return recorded


def publish_model(registry: ModelRegistry, version: str, model_file: Path, labels: list[str],
                  metrics: dict[str, Any], calibration: np.ndarray | None = None,
                  held_out: np.ndarray | None = None, targets: np.ndarray | None = None) -> dict[str, Any]:
    """Store a version with its fp32 and int8 forms; returns the metrics as recorded."""
    forms = prepare_forms(model_file, calibration, held_out, targets)
    return publish_forms(registry, version, model_file, labels, metrics, forms)
