"""PublishModel: a model brought from outside, staged in the registry by `batchinfer models publish`, made a
version: loaded in whatever format it came, its contract checked, converted to fp32 and int8 TF-Lite (int8
gated as for every version), evaluated on held-out images, registered, and the chosen policy applied."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import numpy as np

from contract.resource_spec import STAGING_PREFIX
from contract.settings import Settings
from inference_image.classifier import Classifier, LiteRTForward, available_cpus, load_version
from inference_image.labelled_sets import LabelledSet, labelled_under, load_labelled_items
from inference_image.model_formats import PREPROCESSING, load_tf_model, load_tflite
from inference_image.publishing import prepare_forms, representative_sample, timed
from lambdas.model_artifacts import (
    artifact_format,
    check_size,
    extract_archive,
    find_model,
    labels_among,
    parse_labels,
)
from lambdas.model_registry import ModelError, ModelRegistry
from lambdas.promotion import paired_significance
from lambdas.records import BadRecord
from lambdas.steps import PublishModelRequest, PublishModelResult
from lambdas.stores import ImageSource

LoadImages = Callable[[tuple[int, int], int], LabelledSet]
# Held-out accuracy at most this far above chance (1/N for N classes) is "near chance": the model is
# probably fed pixels scaled otherwise than it expects (a forgotten --preprocess). It is reported, and
# not promoted unless forced.
CHANCE_MARGIN = 0.10


def staging_prefix(bucket: str, version: str) -> str:
    """Where `batchinfer models publish` stages an artifact for this step."""
    return f"s3://{bucket}/{STAGING_PREFIX}{version}/"


def near_chance(accuracy: float, classes: int) -> bool:
    return accuracy <= 1.0 / classes + CHANCE_MARGIN


def check_version_name(registry: ModelRegistry, version: str) -> None:
    if not version or "/" in version or version.startswith(("_", ".")) or len(version) > 128:
        raise BadRecord(f"version {version!r}: a version is a folder name, without '/' and not starting "
                        "with '_' or '.'")
    if version in registry.versions():
        raise BadRecord(f"version {version} of model {registry.name} already exists: choose another --version")


def _staged(source: ImageSource, artifact: str, scratch: Path) -> Path:
    parsed = urlparse(artifact)
    path = scratch / PurePosixPath(parsed.path).name
    with path.open("wb") as out:
        for chunk in source.stream_object(parsed.netloc, parsed.path.lstrip("/")):
            out.write(chunk)
    check_size(path.stat().st_size, path.name)
    return path


def _unpacked(path: Path, labels: tuple[str, ...] | None, scratch: Path) -> tuple[str, Path, list[str]]:
    """(format, model path, labels) of a staged artifact, unpacked when it is an archive."""
    kind = artifact_format(path.name)
    label_file: Path | None = None
    if kind == "tar.gz":
        folder = scratch / "unpacked"
        extract_archive(path, folder)
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        kind, inner = find_model(names, path.name)
        found = labels_among(names, inner)
        label_file = folder / found if found else None
        path = folder / inner
    if labels is not None:
        return kind, path, list(labels)
    if label_file is None:
        raise ModelError(f"{path.name}: no labels: give --labels FILE, or put labels.json or labels.txt beside "
                         "the model")
    return kind, path, parse_labels(label_file.read_bytes(), label_file.name)


def _accuracy_right(model: bytes, images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    forward = LiteRTForward(model, available_cpus())
    top = [forward(images[n: n + 32].astype(np.float32)).argmax(axis=1) for n in range(0, len(images), 32)]
    return (np.concatenate(top) if top else np.zeros(0, dtype=np.int64)) == targets


def publish_artifact(request: PublishModelRequest, settings: Settings, source: ImageSource,
                     open_registry: Callable[[str], ModelRegistry]) -> PublishModelResult:
    registry = open_registry(settings.model_registry)
    staging = staging_prefix(settings.bucket, request.version)
    if not request.artifact.startswith(staging):
        raise BadRecord(f"the artifact must be staged under {staging}, got {request.artifact}")
    if request.preprocess not in PREPROCESSING:
        raise BadRecord(f"unknown preprocess {request.preprocess!r}: choose one of {', '.join(PREPROCESSING)}")
    try:
        with tempfile.TemporaryDirectory() as folder:
            return _publish(request, settings, source, registry, Path(folder))
    finally:  # published or refused, the staged upload is not kept
        parsed = urlparse(staging)
        source.delete_all_versions(parsed.netloc, parsed.path.lstrip("/"))


def _publish(request: PublishModelRequest, settings: Settings, source: ImageSource, registry: ModelRegistry,
             scratch: Path) -> PublishModelResult:
    check_version_name(registry, request.version)
    kind, path, labels = _unpacked(_staged(source, request.artifact, scratch), request.labels, scratch)

    def images(uri: str, size: tuple[int, int], channels: int) -> LabelledSet:
        return load_labelled_items(source, labelled_under(source, uri, labels), labels, size, channels,
                                   settings.max_image_bytes, settings.max_image_pixels, settings.read_threads)

    metrics: dict[str, Any] = {"published_from": PurePosixPath(urlparse(request.artifact).path).name,
                               "source_format": kind, "preprocess": request.preprocess,
                               "published_by": request.by, "held_out_set": request.held_out,
                               "calibration_set": request.calibration or request.held_out}
    keras_file: Path | None = None
    if kind == "tflite":
        if request.preprocess != "none":
            raise ModelError(f"{path.name}: --preprocess cannot be folded into a .tflite file; publish the model "
                             "it was converted from, or a .tflite that scales its input itself")
        tflite = load_tflite(path)
        _check_classes(tflite.classes, labels, path.name)
        held = images(request.held_out, tflite.input_size, tflite.channels)
        _require_images(held, request.held_out, labels)
        right = _accuracy_right(tflite.data, held.images, held.targets)
        files = {tflite.file: tflite.data}
        serving = timed({"runtime": "litert", "form": tflite.form, "held_out": int(len(held.targets)),
                         "reason": f"published as a {tflite.form} .tflite file, served as given"},
                        tflite.data, held.images)
        metrics["softmax"] = "applied when serving, where the outputs do not sum to 1"
    else:
        loaded = load_tf_model(path, kind)
        _check_classes(loaded.classes, labels, path.name)
        held = images(request.held_out, loaded.input_size, loaded.channels)
        _require_images(held, request.held_out, labels)
        calibration = (images(request.calibration, loaded.input_size, loaded.channels)
                       if request.calibration else held)
        # Logits (rows that are not probabilities) get a softmax folded in, so every version serves probabilities.
        raw = loaded.outputs(held.images[:64], request.preprocess)
        logits = bool(raw.min() < 0 or not np.allclose(raw.sum(axis=1), 1.0, atol=1e-3))
        metrics["softmax"] = "folded in: the model outputs logits" if logits else "in the model"
        converter, keras_file = loaded.prepared(request.preprocess, logits, scratch)
        forms = prepare_forms(converter, representative_sample(calibration.images), held.images, held.targets)
        files, serving = forms.files(), forms.serving
        served = forms.int8 if serving["form"] == "int8" and forms.int8 is not None else forms.fp32
        right = _accuracy_right(served, held.images, held.targets)
    accuracy = round(float(right.mean()), 4)
    chance = near_chance(accuracy, len(labels))
    metrics.update({"accuracy": accuracy, "held_out": int(len(held.targets)), "near_chance": chance,
                    "serving": serving})
    registry.publish(request.version, keras_file, labels, metrics, forms=files)
    registry.record("published", request.version, request.by,
                    detail={"artifact": metrics["published_from"], "run_id": request.run_id})
    return _apply_policy(request, registry, settings, held, lambda size, channels: images(request.held_out, size,
                                                                                          channels),
                         right, accuracy, chance, metrics)


def _check_classes(classes: int, labels: list[str], name: str) -> None:
    if classes != len(labels):
        raise ModelError(f"{name} outputs {classes} scores but the labels name {len(labels)} classes "
                         f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''})")


def _require_images(held: LabelledSet, uri: str, labels: list[str]) -> None:
    if len(held.targets) == 0:
        raise BadRecord(f"no usable held-out image under {uri} for the model's classes ({uri.rstrip('/')}/"
                        f"{labels[0]}/..., one folder per class): give --held-out")


def _apply_policy(request: PublishModelRequest, registry: ModelRegistry, settings: Settings, held: LabelledSet,
                  images: LoadImages, right: np.ndarray, accuracy: float, chance: bool,
                  metrics: dict[str, Any]) -> PublishModelResult:
    try:
        current: str | None = registry.current_version()
    except ModelError:
        current = None
    result = PublishModelResult(
        outcome="published", reason="", model_name=registry.name, version=request.version,
        source_format=metrics["source_format"], serves=str(metrics["serving"]["form"]),
        preprocess=request.preprocess, softmax=metrics["softmax"], accuracy=accuracy,
        held_out=int(len(held.targets)), near_chance=chance, current_version=current, previous_version=current,
        current_accuracy=None, significance=None, by=request.by, excluded=held.excluded)
    labels_of = registry.fetch_labels(request.version)
    labels = len(labels_of)
    summary = f"accuracy {accuracy:.4f} on {result.held_out} held-out image(s)"
    if chance and request.policy != "none" and not request.force:
        result.reason = (f"not promoted: {summary} is near chance (1/{labels} = {1 / labels:.4f}, margin "
                         f"{CHANCE_MARGIN}): is its input scaled as it expects (--preprocess)? --force promotes "
                         "it anyway")
        return result
    if request.policy == "manual":
        registry.request_approval(request.version, request.by)
        result.outcome, result.reason = "pending", f"waiting for approval; {summary}"
        return result
    if request.policy == "promote-if-better" and current is not None:
        better, reason, current_accuracy = _better_than_current(registry, current, images, list(labels_of),
                                                                right, accuracy, settings.promotion_margin)
        result.current_accuracy, result.significance = current_accuracy, reason
        if not better:
            result.outcome, result.reason = "kept", f"not promoted: {summary}; {reason}"
            return result
    if request.policy in ("promote", "promote-if-better"):
        registry.promote(request.version, by=request.by,
                         reason=f"published with --{request.policy} (run {request.run_id})")
        result.outcome, result.current_version = "promoted", request.version
        result.reason = f"promoted: {summary}" + (f"; {result.significance}" if result.significance else "")
        return result
    result.reason = f"registered, not serving: {summary}"
    if chance:
        result.reason += f", near chance (1/{labels} = {1 / labels:.4f}): check --preprocess"
    return result


def _better_than_current(registry: ModelRegistry, current: str, images: LoadImages, labels: list[str],
                         right: np.ndarray, accuracy: float, margin: float) -> tuple[bool, str, float | None]:
    """PromoteIfBetter's rule on the same held-out images: at least the current accuracy plus the margin, and a
    lead that the paired (one-sided exact McNemar) test finds more than chance."""
    try:
        model: Classifier = load_version(registry, current)
    except ModelError as error:
        return True, f"the current version {current} cannot be scored ({error}), so it is replaced", None
    # The same images, decoded for the current model's input, judged by class name (its classes may be ordered
    # otherwise).
    held = images(model.input_size, model.channels)
    predicted = model.predict(held.images).argmax(axis=1) if len(held.targets) else np.zeros(0, dtype=np.int64)
    current_right = np.array([model.labels[p] == labels[t] for p, t in zip(predicted, held.targets, strict=True)],
                             dtype=bool)
    if len(current_right) != len(right):
        return False, f"the current version {current} could not read every held-out image", None
    current_accuracy = round(float(current_right.mean()), 4)
    significance = paired_significance(int((right & ~current_right).sum()), int((current_right & ~right).sum()),
                                       int(len(right)))
    better = accuracy >= current_accuracy + margin and bool(significance["significant"])
    return better, (f"current version {current} {current_accuracy:.4f} + margin {margin:.4f}; "
                    f"{significance['reason']}"), current_accuracy
