"""A loaded model behind one forward pass (TF-Lite when compiled, else Keras), and a cache that
follows promotions."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import io
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contract.resource_spec import COMPILED_FILE
from lambdas.model_registry import ModelError, ModelFileMissing, ModelRegistry, ModelVersion

# The TF-Lite form of a version, published beside model.keras. Serving prefers it: XNNPACK is
# faster on CPU than TensorFlow here, and its interpreter loads without importing TensorFlow,
# which is most of a cold start.
_WRAPPER_MODULE = "tensorflow.lite.python._pywrap_tensorflow_interpreter_wrapper"
_BUILTIN_OP_RESOLVER = 1  # TF-Lite's builtin ops with its default delegate (XNNPACK) on CPU


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _configure_threads() -> None:
    # Lambda gives vCPUs in proportion to memory; use them all, and no more, for one forward pass.
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(_cpus())
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process


def _interpreter_wrapper() -> Any:
    """TF-Lite's interpreter extension, loaded on its own: it does not link TensorFlow.

    It is registered under the name TensorFlow itself imports it by, so that a later
    `import tensorflow` in the same process reuses it instead of loading it twice.
    """
    if _WRAPPER_MODULE in sys.modules:
        return sys.modules[_WRAPPER_MODULE]
    spec = importlib.util.find_spec("tensorflow")  # finds the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = os.path.join(location, "lite", "python", "_pywrap_tensorflow_interpreter_wrapper.so")
        if not os.path.exists(path):
            continue
        loader = importlib.machinery.ExtensionFileLoader(_WRAPPER_MODULE, path)
        module_spec = importlib.util.spec_from_file_location(_WRAPPER_MODULE, path, loader=loader)
        if module_spec is None:
            break
        module = importlib.util.module_from_spec(module_spec)
        loader.exec_module(module)
        sys.modules[_WRAPPER_MODULE] = module
        return module
    # Another layout of the package: let TensorFlow find it (slower, but the same interpreter).
    from tensorflow.lite.python.interpreter_wrapper import (  # type: ignore[attr-defined]
        _pywrap_tensorflow_interpreter_wrapper as wrapper,
    )

    return wrapper


class TFLiteForward:
    """One TF-Lite interpreter; resized to each batch size it meets. Not thread-safe by itself,
    so calls take a lock (concurrent batches share one cached classifier)."""

    def __init__(self, path: Path, threads: int):
        wrapper = _interpreter_wrapper()
        self._interpreter = wrapper.CreateWrapperFromFile(
            os.fspath(path), _BUILTIN_OP_RESOLVER, [], [], False, False, threads, False
        )
        inputs, outputs = list(self._interpreter.InputIndices()), list(self._interpreter.OutputIndices())
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{path.name} has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 and 1")
        self._input, self._output = int(inputs[0]), int(outputs[0])
        self.input_shape = tuple(int(d) for d in self._interpreter.TensorSize(self._input, 0))
        self.output_shape = tuple(int(d) for d in self._interpreter.TensorSize(self._output, 0))
        self._batch = -1
        self._lock = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with self._lock:
            if images.shape[0] != self._batch:
                self._interpreter.ResizeInputTensor(self._input, np.array(images.shape, dtype=np.int32), False, 0)
                self._interpreter.AllocateTensors(0)
                self._batch = images.shape[0]
            self._interpreter.SetTensor(self._input, np.ascontiguousarray(images, dtype=np.float32), 0)
            self._interpreter.Invoke(0)  # releases the GIL: image reads go on meanwhile
            return np.array(self._interpreter.GetTensor(self._output, 0))


@dataclass
class Classifier:
    version: str
    labels: list[str]
    input_size: tuple[int, int]  # (height, width)
    channels: int
    _forward: Any
    runtime: str = field(default="keras")  # "tflite" or "keras": what serves the forward pass

    @classmethod
    def load(cls, model_version: ModelVersion) -> Classifier:
        compiled = model_version.model_path.with_name(COMPILED_FILE)
        if compiled.exists():
            return cls._load_tflite(model_version, compiled)
        return cls._load_keras(model_version)

    @classmethod
    def _load_tflite(cls, model_version: ModelVersion, path: Path) -> Classifier:
        try:
            forward = TFLiteForward(path, _cpus())
        except ModelError:
            raise
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
            runtime="tflite",
        )

    @classmethod
    def _load_keras(cls, model_version: ModelVersion) -> Classifier:
        _configure_threads()
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
        # A model that ends in logits still yields probabilities that sum to one.
        if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3) or probabilities.min() < 0:
            exp = np.exp(probabilities - probabilities.max(axis=1, keepdims=True))
            probabilities = exp / exp.sum(axis=1, keepdims=True)
        return probabilities


def compile_model(model_file: Path) -> bytes:
    """The TF-Lite (fp32) form of a Keras model file; the same weights and the same outputs."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(model_file, compile=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    # The converter prints its SavedModel's signatures to stdout, where CLI output (--json) goes.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


def publish_compiled(registry: ModelRegistry, version: str, compiled: bytes) -> None:
    """Store the TF-Lite form beside a published version's model.keras."""
    registry.publish_file(version, COMPILED_FILE, compiled)


def fetch_compiled(registry: ModelRegistry, model_version: ModelVersion) -> Path | None:
    """The local copy of a version's TF-Lite form, or None when none was published."""
    try:
        return registry.fetch_file(model_version.version, COMPILED_FILE)
    except ModelFileMissing:
        return None


def publish_model(registry: ModelRegistry, version: str, model_file: Path, labels: list[str],
                  metrics: dict[str, Any]) -> None:
    """Store a version with its TF-Lite form, which is what serves (it is not promoted here)."""
    registry.publish(version, model_file, labels, metrics)
    publish_compiled(registry, version, compile_model(model_file))


def load_version(registry: ModelRegistry, version: str) -> Classifier:
    """A registry version, ready to classify, on the runtime it serves with."""
    model_version = registry.fetch(version)
    fetch_compiled(registry, model_version)
    return Classifier.load(model_version)


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
                self._loaded = {self._current: load_version(self.registry, self._current)}
            return self._loaded[self._current]
