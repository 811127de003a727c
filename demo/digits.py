"""The demo workload: scikit-learn's bundled handwritten digits, rendered as PNG uploads, and a
small Keras CNN trained on them through the same decode path the classify function serves with."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contract.settings import cache_dir
from inference_image.preprocess import decode_image

INPUT_SIZE = (32, 32)
LABELS = [str(d) for d in range(10)]
RENDER_SIZE = 96
TRAINING_RECIPE = {"epochs": 30, "input": INPUT_SIZE, "render": RENDER_SIZE, "seed": 7, "net": "cnn-16-32-64"}


@dataclass(frozen=True)
class Digit:
    index: int
    label: str
    png: bytes


def render_digit(pixels: np.ndarray) -> bytes:
    """An 8x8 digit (0..16) as a 96x96 RGB PNG: dark ink on paper, like a scanned upload."""
    grey = (255 - pixels.reshape(8, 8) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(grey).resize((RENDER_SIZE, RENDER_SIZE), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def split() -> tuple[list[Digit], list[Digit]]:
    """(training, held out): a fixed 75/25 split of the 1,797 digits, stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    indices = np.arange(len(data.target))
    train_idx, held_idx = train_test_split(
        indices, test_size=0.25, random_state=0, stratify=data.target
    )

    def digits(idx: np.ndarray) -> list[Digit]:
        return [Digit(int(i), str(int(data.target[i])), render_digit(data.images[i])) for i in idx]

    return digits(train_idx), digits(held_idx)


def to_arrays(digits: list[Digit]) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([decode_image(d.png, INPUT_SIZE, 3) for d in digits]).astype(np.float32)
    y = np.array([LABELS.index(d.label) for d in digits])
    return x, y


def build_model() -> Any:
    import keras
    from keras import layers

    inputs = keras.Input(shape=(*INPUT_SIZE, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0)(inputs)  # preprocessing lives in the model
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(len(LABELS), activation="softmax")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train(train_set: list[Digit], held_out: list[Digit], epochs: int, seed: int = 7) -> tuple[Any, dict[str, Any]]:
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = to_arrays(train_set)
    started = time.perf_counter()
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    seconds = time.perf_counter() - started
    hx, hy = to_arrays(held_out)
    accuracy = float((model.predict(hx, verbose=0).argmax(axis=1) == hy).mean())
    metrics = {"accuracy": round(accuracy, 4), "held_out": len(held_out), "trained_on": len(train_set),
               "epochs": epochs, "train_seconds": round(seconds, 2)}
    return model, metrics


def trained_demo_model() -> tuple[Path, dict[str, Any]]:
    """The demo model file and its metrics, trained once per recipe and reused after that."""
    recipe = hashlib.sha256(json.dumps(TRAINING_RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir() / f"digits-{recipe}"
    model_file, metrics_file = folder / "model.keras", folder / "metrics.json"
    if model_file.exists() and metrics_file.exists():
        return model_file, json.loads(metrics_file.read_text())
    train_set, held_out = split()
    model, metrics = train(train_set, held_out, epochs=int(TRAINING_RECIPE["epochs"]))  # type: ignore[call-overload]
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        partial = Path(scratch) / "model.keras"
        model.save(partial)
        partial.replace(model_file)
    metrics_file.write_text(json.dumps(metrics, indent=2))
    return model_file, metrics


def demo_model_forms(model_file: Path) -> Any:
    """The demo model's fp32 and int8 TF-Lite forms and the serving decision: int8 calibrated on the
    training digits and checked on the held-out ones. Made once per model file, like the model."""
    from inference_image.publishing import Forms, prepare_forms

    folder = model_file.parent
    fp32_file, int8_file, decision_file = folder / "model.tflite", folder / "model.int8.tflite", folder / "serving.json"
    if fp32_file.exists() and decision_file.exists():
        return Forms(fp32_file.read_bytes(), int8_file.read_bytes() if int8_file.exists() else None,
                     json.loads(decision_file.read_text()))
    train_set, held_out = split()
    calibration, _ = to_arrays(train_set)
    held_x, held_y = to_arrays(held_out)
    forms = prepare_forms(model_file, calibration, held_x, held_y)
    if forms.int8 is not None:
        int8_file.write_bytes(forms.int8)
    fp32_file.write_bytes(forms.fp32)
    decision_file.write_text(json.dumps(forms.serving, indent=2))  # last: it marks the set complete
    return forms
