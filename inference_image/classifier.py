"""A loaded model behind one forward pass (LiteRT for the TF-Lite forms, Keras only where TensorFlow
is installed), and a cache that follows promotions. Serving imports no TensorFlow."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract.resource_spec import COMPILED_FILE, INT8_FILE, MODEL_FILE
from lambdas.model_registry import ModelError, ModelRegistry, ModelVersion, require_approved

# How far from 1 a row of outputs may sum and still be probabilities: an int8 output's quantization step is
# 1/256, so N classes may be off by up to N/512 (0.02 for ten).
PROBABILITY_SUM_TOLERANCE = 0.05
# What serves a forward pass, by the file it comes from; every prediction records it.
RUNTIMES = {COMPILED_FILE: "litert-fp32", INT8_FILE: "litert-int8", MODEL_FILE: "keras"}


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _configure_threads() -> None:
    # Lambda gives vCPUs in proportion to memory; use them all, and no more, for one forward pass.
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(available_cpus())
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process


class LiteRTForward:
    """One LiteRT interpreter (XNNPACK on CPU) over a TF-Lite model, fp32 or int8; resized to each
    batch size it meets. Not thread-safe by itself, so calls take a lock (concurrent batches share
    one cached classifier)."""

    def __init__(self, model: Path | bytes, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, bytes):
            self._interpreter = Interpreter(model_content=model, num_threads=threads)
        else:
            self._interpreter = Interpreter(model_path=os.fspath(model), num_threads=threads)
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"the TF-Lite model has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 and 1")
        self._input, self._output = inputs[0], outputs[0]
        self.input_shape = tuple(int(d) for d in self._input["shape"])
        self.output_shape = tuple(int(d) for d in self._output["shape"])
        # As the model was built: -1 for a dimension it leaves free (the batch; for some models the size).
        signature = self._input.get("shape_signature", self._input["shape"])
        self.input_signature = tuple(None if int(d) < 0 else int(d) for d in signature)
        self._batch = -1
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            if images.shape[0] != self._batch:
                self._interpreter.resize_tensor_input(self._input["index"], list(images.shape))
                self._interpreter.allocate_tensors()
                self._batch = images.shape[0]
            self._interpreter.set_tensor(self._input["index"], _quantized(images, self._input))
            self._interpreter.invoke()  # releases the GIL: image reads go on meanwhile
            return _dequantized(np.array(self._interpreter.get_tensor(self._output["index"])), self._output)

    def tensor_details(self) -> list[dict[str, Any]]:
        return list(self._interpreter.get_tensor_details())


def _quantized(images: np.ndarray, tensor: dict[str, Any]) -> np.ndarray:
    """Float images as the input tensor takes them: as they are, or quantized for an integer input."""
    dtype = np.dtype(tensor["dtype"])
    if dtype == np.float32:
        return np.ascontiguousarray(images, dtype=np.float32)
    scale, zero = tensor["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(images / (scale or 1.0) + zero), info.min, info.max).astype(dtype)


def _dequantized(values: np.ndarray, tensor: dict[str, Any]) -> np.ndarray:
    if np.dtype(tensor["dtype"]) == np.float32:
        return values
    scale, zero = tensor["quantization"]
    return ((values.astype(np.float32) - zero) * (scale or 1.0)).astype(np.float32)


@dataclass
class Classifier:
    version: str
    labels: list[str]
    input_size: tuple[int, int]  # (height, width)
    channels: int
    _forward: Any
    runtime: str = field(default="keras")  # "litert-int8", "litert-fp32" or "keras": what serves the forward pass

    @classmethod
    def load(cls, model_version: ModelVersion) -> Classifier:
        """The version on the runtime of the file fetched; a Keras file with its fp32 TF-Lite form
        beside it serves from that form."""
        path = model_version.model_path
        if path.suffix == ".tflite":
            return cls._load_tflite(model_version, path)
        if path.with_name(COMPILED_FILE).exists():
            return cls._load_tflite(model_version, path.with_name(COMPILED_FILE))
        return cls._load_keras(model_version)

    @classmethod
    def _load_tflite(cls, model_version: ModelVersion, path: Path) -> Classifier:
        try:
            forward = LiteRTForward(path, available_cpus())
        except ModelError as error:
            raise ModelError(f"model version {model_version.version}, {path.name}: {error}") from None
        except Exception as error:  # the interpreter raises ValueError or RuntimeError for a bad file
            raise ModelError(
                f"cannot load model version {model_version.version} from {path.name}: "
                f"{type(error).__name__}: {str(error)[:300]}"
            ) from None
        shape = forward.input_shape
        cls._check(model_version, shape, forward.output_shape[-1])
        return cls(
            version=model_version.version,
            labels=list(model_version.labels),
            input_size=(int(shape[1]), int(shape[2])),
            channels=int(shape[3]),
            _forward=forward,
            runtime=RUNTIMES.get(path.name, "litert-fp32"),
        )

    @classmethod
    def _load_keras(cls, model_version: ModelVersion) -> Classifier:
        try:
            _configure_threads()
        except ImportError:  # ClassifyBatch's image has LiteRT and no TensorFlow
            raise ModelError(
                f"model version {model_version.version} has no TF-Lite form ({COMPILED_FILE}) and this image has no "
                "TensorFlow to run its Keras model: publish it with inference_image.publishing.publish_model"
            ) from None
        import keras
        import tensorflow as tf

        try:
            model = keras.models.load_model(model_version.model_path, compile=False)
        except Exception as error:  # Keras raises many types for a bad file
            raise ModelError(
                f"cannot load model version {model_version.version} from {model_version.model_path.name}: "
                f"{type(error).__name__}: {str(error)[:300]}"
            ) from None
        shape = model.input_shape
        cls._check(model_version, shape, model.output_shape[-1])
        signature = [tf.TensorSpec(shape=(None, shape[1], shape[2], shape[3]), dtype=tf.float32)]
        forward = tf.function(lambda x: model(x, training=False), input_signature=signature, reduce_retracing=True)
        return cls(
            version=model_version.version,
            labels=list(model_version.labels),
            input_size=(int(shape[1]), int(shape[2])),
            channels=int(shape[3]),
            _forward=forward,
            runtime="keras",
        )

    @staticmethod
    def _check(model_version: ModelVersion, shape: Any, outputs: Any) -> None:
        if len(shape) != 4 or not shape[1] or not shape[2] or shape[3] not in (1, 3):
            raise ModelError(
                f"model version {model_version.version} takes input {shape}; expected (None, H, W, 1 or 3)"
            )
        if outputs != len(model_version.labels):
            raise ModelError(
                f"labels.json of model version {model_version.version} names {len(model_version.labels)} classes "
                f"but the model outputs {outputs}"
            )

    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) to class probabilities (N, classes); preprocessing is in the model."""
        if len(images) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        probabilities = np.asarray(self._forward(images.astype(np.float32)))
        # A model that ends in logits still yields probabilities that sum to one. An int8 form's probabilities
        # are quantized (steps of 1/256: a row may sum to 0.996): they are rescaled, not put through a softmax
        # again, which would flatten a sure 1.0 to 0.58 for three classes.
        sums = probabilities.sum(axis=1, keepdims=True)
        if probabilities.min() < 0 or not np.allclose(sums, 1.0, atol=PROBABILITY_SUM_TOLERANCE):
            exp = np.exp(probabilities - probabilities.max(axis=1, keepdims=True))
            return exp / exp.sum(axis=1, keepdims=True)
        return probabilities / sums


def load_version(registry: ModelRegistry, version: str) -> Classifier:
    """A registry version, ready to classify, on the form it serves in (only that file is fetched)."""
    return Classifier.load(registry.fetch(version))


class ClassifierCache:
    """Serves the registry's current version; checks the pointer at most every `refresh` seconds,
    so a promoted version is picked up without a redeploy."""

    def __init__(self, registry: ModelRegistry, refresh_seconds: float):
        self.registry = registry
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._loaded: dict[str, Classifier] = {}
        self._current: str | None = None
        self._checked_at = 0.0

    def current(self) -> Classifier:
        with self._lock:
            now = time.monotonic()
            if self._current is None or now - self._checked_at >= self.refresh_seconds:
                self._current = self.registry.current_version()
                self._checked_at = now
            if self._current not in self._loaded:
                # Once per version loaded, not per batch: a pointer set by hand to a version pending or
                # rejected does not serve.
                require_approved(self.registry, self._current)
                self._loaded = {self._current: load_version(self.registry, self._current)}
            return self._loaded[self._current]
