"""The benchmark's workload: the seed's ResNet-50 (3 moth classes) and camera-size JPEGs."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

LABELS = ["AAW", "ECLW", "FAW"]


@dataclass(frozen=True)
class Workload:
    """Full: the seed's architecture at 224x224 on 1280x960 photos. Smoke: the same shapes of
    everything, a tiny network and small photos, so CI runs the whole benchmark in seconds."""

    smoke: bool
    input_size: int
    photo_size: tuple[int, int]  # (width, height)
    workflow_images: int
    batch_sizes: tuple[int, ...]
    classify_images: dict[int, int]  # images classified per batch size in the ClassifyBatch runs
    seed_images: int  # images through the seed's way, one at a time
    seed_threads: int
    seed_concurrent_images: int
    min_seconds: float  # least time measured per ceiling figure
    repeats: int  # fresh-process repeats of each cold start
    calibration_images: int  # the workload's own photos int8 is calibrated on
    check_images: int  # other photos int8 is checked on against fp32

    @property
    def ceiling_batch(self) -> int:
        return max(self.batch_sizes)


FULL = Workload(
    smoke=False, input_size=224, photo_size=(1280, 960), workflow_images=1024, batch_sizes=(1, 8, 32),
    classify_images={1: 16, 8: 48, 32: 192}, seed_images=64, seed_threads=4, seed_concurrent_images=96,
    min_seconds=4.0, repeats=2, calibration_images=32, check_images=64,
)
SMOKE = Workload(
    smoke=True, input_size=64, photo_size=(320, 240), workflow_images=6, batch_sizes=(1, 2),
    classify_images={1: 2, 2: 4}, seed_images=3, seed_threads=2, seed_concurrent_images=4,
    min_seconds=0.3, repeats=1, calibration_images=2, check_images=2,
)


def build_model(workload: Workload, classes: int = len(LABELS)) -> Any:
    """The seed's network: ResNet-50, random weights (no download), 3 softmax classes (or `classes`),
    with its preprocessing (scaling to [-1, 1]) inside the model. Smoke: a tiny CNN of the same interface."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(6)
    shape = (workload.input_size, workload.input_size, 3)
    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(inputs)
    if workload.smoke:
        x = layers.Conv2D(8, 3, strides=2, activation="relu")(x)
        x = layers.Conv2D(16, 3, strides=2, activation="relu")(x)
        x = layers.GlobalAveragePooling2D()(x)
        outputs = layers.Dense(classes, activation="softmax")(x)
        return keras.Model(inputs, outputs, name="smoke_cnn")
    resnet = keras.applications.ResNet50(
        weights=None, input_shape=shape, classes=classes, classifier_activation="softmax"
    )
    return keras.Model(inputs, resnet(x), name="resnet50_moths")


def save_model(workload: Workload, folder: Path) -> Path:
    path = folder / "model.keras"
    build_model(workload).save(path)
    return path


class PhotoMaker:
    """Synthetic camera photos: smooth colour fields and a light gradient (what a trap camera
    sees), plus sensor grain, saved as JPEG quality 90 — so decoding costs what a real photo costs."""

    def __init__(self, size: tuple[int, int], seed: int = 11):
        self.width, self.height = size
        self.rng = np.random.default_rng(seed)
        # One grain field, shifted per photo: cheap, and still a different photo each time.
        self.grain = self.rng.normal(0.0, 6.0, (self.height, self.width, 3)).astype(np.float32)
        ramp = np.linspace(-25.0, 25.0, self.width, dtype=np.float32)
        self.gradient = np.broadcast_to(ramp[None, :, None], (self.height, self.width, 3))

    def photo(self) -> bytes:
        coarse = self.rng.uniform(30, 225, (9, 12, 3)).astype(np.uint8)
        smooth = np.asarray(
            Image.fromarray(coarse, "RGB").resize((self.width, self.height), Image.Resampling.BICUBIC),
            dtype=np.float32,
        )
        dy, dx = (int(v) for v in self.rng.integers(0, [self.height, self.width]))
        grain = np.roll(self.grain, (dy, dx), axis=(0, 1))
        pixels = np.clip(smooth + self.gradient * self.rng.uniform(-1, 1) + grain, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    def photos(self, count: int) -> list[bytes]:
        return [self.photo() for _ in range(count)]
