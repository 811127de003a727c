"""A model as people bring it, in any common TensorFlow format, made into what serves: its contract checked
(one fixed-size image input, one output of one score per class), the declared input scaling and a softmax
folded in, and a factory of TF-Lite converters for its fp32 and int8 forms. A .tflite file is taken as it is,
with LiteRT alone; the other formats need TensorFlow (training image only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.resource_spec import COMPILED_FILE, INT8_FILE
from inference_image.classifier import LiteRTForward
from inference_image.publishing import Converter, keras_converter
from lambdas.model_artifacts import SAVED_MODEL
from lambdas.model_registry import ModelError

# The input scaling a model may expect, as keras.applications names it; each is one affine map of the
# 0-255 RGB (or grey) pixels, x @ W + b per pixel, folded into the model so that serving stays one path.
PREPROCESSING = ("none", "0-1", "-1-1", "caffe", "torch")
IMAGENET_CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)
IMAGENET_TORCH_MEAN = (0.485, 0.456, 0.406)
IMAGENET_TORCH_STD = (0.229, 0.224, 0.225)


def preprocessing_map(name: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) with the model's input = pixels @ W + b, pixels in 0..255."""
    identity = np.eye(channels, dtype=np.float32)
    if name == "none":
        return identity, np.zeros(channels, np.float32)
    if name == "0-1":
        return identity / 255.0, np.zeros(channels, np.float32)
    if name == "-1-1":
        return identity / 127.5, -np.ones(channels, np.float32)
    if name not in ("caffe", "torch"):
        raise ModelError(f"unknown --preprocess {name!r}: choose one of {', '.join(PREPROCESSING)}")
    if channels != 3:
        raise ModelError(f"--preprocess {name} uses ImageNet's RGB statistics; the model takes {channels} channel(s)")
    if name == "caffe":  # RGB to BGR, then each channel less ImageNet's mean (no scaling)
        return identity[:, ::-1].copy(), -np.array(IMAGENET_CAFFE_MEANS_BGR, np.float32)
    std = np.array(IMAGENET_TORCH_STD, np.float32)
    return np.diag(1.0 / (255.0 * std)).astype(np.float32), -np.array(IMAGENET_TORCH_MEAN, np.float32) / std


def _check_input(shape: Any, where: str) -> tuple[int, int, int]:
    dims = list(shape)
    if len(dims) != 4 or dims[3] not in (1, 3):
        raise ModelError(f"{where} takes input of shape {tuple(dims)}; a model must take one image, "
                         "(batch, height, width, 1 or 3)")
    if not dims[1] or not dims[2]:
        raise ModelError(f"{where} takes images of any size {tuple(dims)}; a model must fix its input's height "
                         "and width")
    return int(dims[1]), int(dims[2]), int(dims[3])


def _check_output(shape: Any, where: str) -> int:
    dims = list(shape)
    if len(dims) != 2 or not dims[1]:
        raise ModelError(f"{where} outputs shape {tuple(dims)}; a model must output one score per class, "
                         "(batch, classes)")
    return int(dims[1])


@dataclass
class LoadedModel:
    """A model ready to convert: its input, its classes, and how to run and convert it."""

    source_format: str
    input_size: tuple[int, int]
    channels: int
    classes: int
    _call: Any  # float32 images as the model takes them -> its outputs (TensorFlow)
    _keras: Any = None  # the Keras model, for Keras sources

    def outputs(self, images: np.ndarray, preprocess: str) -> np.ndarray:
        """The model's own outputs for 0-255 images, with the declared scaling: the reference to agree with."""
        weights, bias = preprocessing_map(preprocess, self.channels)
        x = images.astype(np.float32) @ weights + bias
        parts = [np.asarray(self._call(x[n: n + 64])) for n in range(0, len(x), 64)]
        return np.concatenate(parts) if parts else np.zeros((0, self.classes), np.float32)

    def prepared(self, preprocess: str, softmax: bool, scratch: Path) -> tuple[Converter, Path | None]:
        """The converter factory of the model with its scaling and softmax folded in, and, for a Keras
        source, that whole model saved as a .keras file (what retraining fine-tunes)."""
        import tensorflow as tf

        weights, bias = preprocessing_map(preprocess, self.channels)
        if self._keras is not None:
            path = scratch / "model.keras"
            _folded_keras(self._keras, weights, bias, softmax, preprocess).save(path)
            return keras_converter(path), path
        height, width = self.input_size
        call = self._call
        w, b = tf.constant(weights), tf.constant(bias)

        @tf.function(input_signature=[tf.TensorSpec((None, height, width, self.channels), tf.float32)])
        def serve(x: Any) -> Any:
            y = call(tf.tensordot(x, w, axes=1) + b)
            return tf.nn.softmax(y) if softmax else y

        concrete = serve.get_concrete_function()
        holder = tf.Module()
        holder.serve = serve

        def make() -> Any:
            return tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)

        return make, None


def _folded_keras(model: Any, weights: np.ndarray, bias: np.ndarray, softmax: bool, preprocess: str) -> Any:
    import keras

    inputs = keras.Input(model.input_shape[1:])
    x = inputs
    if preprocess != "none":
        # A frozen 1x1 convolution is the affine map per pixel, and it saves and loads as any layer does.
        channels = int(model.input_shape[-1])
        scaling = keras.layers.Conv2D(channels, 1, trainable=False, name="preprocess")
        x = scaling(x)
        scaling.set_weights([weights.reshape(1, 1, channels, channels), bias])
    y = model(x)
    if softmax:
        y = keras.layers.Softmax(name="folded_softmax")(y)
    return keras.Model(inputs, y)


def load_tf_model(path: Path, kind: str) -> LoadedModel:
    """A .keras, .h5 or SavedModel with its contract checked (one input H x W x 1 or 3, one output)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if kind == SAVED_MODEL:
        return _load_saved_model(path)
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for a file it cannot read
        raise ModelError(f"cannot load {path.name} as a {kind} model: {type(error).__name__}: "
                         f"{str(error).splitlines()[0][:300] if str(error) else ''}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"{path.name} has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); "
                         "a model must have one image input and one output")
    height, width, channels = _check_input(model.inputs[0].shape, path.name)
    classes = _check_output(model.outputs[0].shape, path.name)
    return LoadedModel(kind, (height, width), channels, classes,
                       lambda x: model(x, training=False), _keras=model)


def _load_saved_model(path: Path) -> LoadedModel:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:  # TensorFlow raises many types for a folder it cannot read
        raise ModelError(f"cannot load the SavedModel in {path.name}: {type(error).__name__}: "
                         f"{str(error).splitlines()[0][:300] if str(error) else ''}") from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ModelError(f"the SavedModel in {path.name} has no serving_default signature "
                         f"(it has {', '.join(loaded.signatures) or 'none'})")
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"the SavedModel's serving_default takes {len(inputs)} input(s) and gives {len(outputs)} "
                         "output(s); a model must have one image input and one output")
    (name, spec), (output_spec,) = next(iter(inputs.items())), list(outputs.values())
    height, width, channels = _check_input(spec.shape, "the SavedModel")
    classes = _check_output(output_spec.shape, "the SavedModel")

    def call(x: Any) -> Any:
        (value,) = signature(**{name: tf.cast(x, spec.dtype)}).values()
        return value

    model = LoadedModel(SAVED_MODEL, (height, width), channels, classes, call)
    model._holder = loaded  # type: ignore[attr-defined]  # the variables live as long as the model
    return model


@dataclass
class TFLiteModel:
    """A .tflite file served as given: fp32, or int8 when its tensors are int8."""

    data: bytes
    form: str
    input_size: tuple[int, int]
    channels: int
    classes: int

    @property
    def file(self) -> str:
        return INT8_FILE if self.form == "int8" else COMPILED_FILE

    def outputs(self, images: np.ndarray) -> np.ndarray:
        forward = LiteRTForward(self.data, 1)
        parts = [forward(images[n: n + 32].astype(np.float32)) for n in range(0, len(images), 32)]
        return np.concatenate(parts) if parts else np.zeros((0, self.classes), np.float32)


def load_tflite(path: Path) -> TFLiteModel:
    data = path.read_bytes()
    try:
        forward = LiteRTForward(data, 1)
        details = forward.tensor_details()
    except ModelError as error:
        raise ModelError(f"{path.name}: {error}") from None
    except Exception as error:  # the interpreter raises ValueError or RuntimeError for a bad file
        raise ModelError(f"cannot load {path.name} as a TF-Lite model: {type(error).__name__}: "
                         f"{str(error)[:300]}") from None
    height, width, channels = _check_input(forward.input_signature, path.name)
    classes = _check_output(forward.output_shape, path.name)
    form = "int8" if any(np.dtype(t["dtype"]) in (np.int8, np.uint8) for t in details) else "fp32"
    return TFLiteModel(data, form, (height, width), channels, classes)
