"""The domain steps' world in memory: settings, the in-memory stores and registry, a small
deterministic model, and images to upload. Nothing here imports moto or TensorFlow."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from contract.settings import Settings, load_settings
from lambdas.fakes import (
    InMemoryFailureStore,
    InMemoryImageSource,
    InMemoryPredictionStore,
    InMemoryRegistryStorage,
    InMemoryRunStateStore,
)
from lambdas.model_registry import ModelRegistry
from lambdas.records import ImageVersion

BUCKET = "images"
ENV = {
    "BATCHINFER_BUCKET": BUCKET,
    "BATCHINFER_PREDICTIONS_TABLE": "predictions",
    "BATCHINFER_COUNTS_TABLE": "counts",
    "BATCHINFER_FAILURES_TABLE": "failures",
    "BATCHINFER_STATE_TABLE": "state",
    "BATCHINFER_MODEL_REGISTRY": "memory://models/shades",
    "BATCHINFER_BATCH_SIZE": "2",
    "BATCHINFER_MIN_NEW_LABELS": "3",
    "BATCHINFER_READ_THREADS": "2",
}


@dataclass
class ShadeModel:
    """A deterministic stand-in for the TensorFlow classifier: how light the image is, on average.

    It keeps the classifier's interface (version, labels, input size, channels, predict), so
    classify_batch runs exactly as it does with the real model; the real one stays covered by the
    workflow tests.
    """

    version: str = "v1"
    labels: list[str] = field(default_factory=lambda: ["dark", "light"])
    input_size: tuple[int, int] = (8, 8)
    channels: int = 3
    calls: list[int] = field(default_factory=list)  # the size of each forward pass

    def predict(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        light = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return np.stack([1.0 - light, light], axis=1)


def png(shade: int, size: tuple[int, int] = (12, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (shade, shade, shade)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class World:
    settings: Settings
    source: InMemoryImageSource
    predictions: InMemoryPredictionStore
    failures: InMemoryFailureStore
    state: InMemoryRunStateStore
    registry: ModelRegistry
    model: ShadeModel

    def upload(self, key: str, data: bytes, last_modified: str | None = None) -> ImageVersion:
        return self.source.put(self.settings.bucket, key, data, last_modified)

    def manifest(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.source.read_json(result["manifest_bucket"], result["manifest_key"]))

    def publish(self, version: str, labels: list[str], accuracy: float | None = None, promote: bool = False) -> None:
        scratch = Path(self.registry.cache_dir) / "published.keras"
        scratch.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_bytes(b"weights of " + version.encode())
        self.registry.publish(version, scratch, labels, {} if accuracy is None else {"accuracy": accuracy})
        if promote:
            self.registry.promote(version)


def settings(**overrides: str) -> Settings:
    return load_settings({**ENV, **overrides})


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(
        settings=settings(),
        source=InMemoryImageSource(),
        predictions=InMemoryPredictionStore(count_shards=4),
        failures=InMemoryFailureStore(),
        state=InMemoryRunStateStore(),
        registry=ModelRegistry(storage=InMemoryRegistryStorage(ENV["BATCHINFER_MODEL_REGISTRY"]),
                               cache_dir=str(tmp_path / "models")),
        model=ShadeModel(),
    )
