"""EvaluateCandidate: the candidate and the current model on the same held-out images."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from contract.resource_spec import SHARED_EVALUATION
from contract.settings import Settings
from inference_image.classifier import Classifier, load_version
from inference_image.labelled_sets import LabelledSet, load_labelled_set
from inference_image.publishing import publish_model
from lambdas.model_registry import LABELS_FILE, MODEL_FILE, RETRAINING, ModelError, ModelRegistry
from lambdas.records import BadRecord
from lambdas.steps import EvaluateCandidateRequest, EvaluateCandidateResult
from lambdas.stores import ImageSource


def register_sagemaker_artifact(registry: ModelRegistry, source: ImageSource, artifact_uri: str, version: str,
                                labels: list[str], load_set: Any = None) -> None:
    """A SageMaker job's model.tar.gz (holding model.keras, and labels.json if it chose to) as a version.

    `load_set(manifest_key, input size, channels)` gives the training and held-out images its int8
    form is calibrated and checked on."""
    parsed = urlparse(artifact_uri)
    body = source.read_object(parsed.netloc, parsed.path.lstrip("/"))
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive, tempfile.TemporaryDirectory() as scratch:
        names = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        if MODEL_FILE not in names:
            raise ModelError(f"{artifact_uri} holds no {MODEL_FILE}")
        member = archive.extractfile(names[MODEL_FILE])
        assert member is not None
        model_path = Path(scratch) / MODEL_FILE
        model_path.write_bytes(member.read())
        train = held = None
        if load_set is not None:
            import keras

            height, width, channels = keras.models.load_model(model_path, compile=False).input_shape[1:4]
            train = load_set("train_manifest", (height, width), channels)
            held = load_set("holdout_manifest", (height, width), channels)
        publish_model(registry, version, model_path, labels, {"trained_by": "sagemaker", "artifact": artifact_uri},
                      calibration=train.images if train else None, held_out=held.images if held else None,
                      targets=held.targets if held else None)
    _ = LABELS_FILE  # labels come from the collect step, so the classes stay in serving order


def correct(classifier: Classifier, images: np.ndarray, targets: np.ndarray, batch: int = 64) -> np.ndarray:
    """Whether the model gets each image right: the paired comparison of two models needs it per image."""
    right = [classifier.predict(images[start: start + batch]).argmax(axis=1) == targets[start: start + batch]
             for start in range(0, len(targets), batch)]
    return np.concatenate(right) if right else np.zeros(0, dtype=bool)


def accuracy(classifier: Classifier, images: np.ndarray, targets: np.ndarray, batch: int = 64) -> float:
    return float(correct(classifier, images, targets, batch).mean()) if len(targets) else 0.0


def evaluate_candidate(request: EvaluateCandidateRequest, settings: Settings, source: ImageSource,
                       open_registry: Callable[[str], ModelRegistry]) -> EvaluateCandidateResult:
    collect, training = request.collect, request.training
    registry = open_registry(collect["model_registry"])
    candidate_version = request.candidate_version
    if training.get("model_artifact"):
        def load_set(manifest: str, size: tuple[int, int], channels: int) -> LabelledSet | None:
            if not collect.get(manifest):
                return None
            return load_labelled_set(source, collect[manifest], list(collect["labels"]), size, channels,
                                     settings.max_image_bytes, settings.max_image_pixels, settings.read_threads)

        register_sagemaker_artifact(registry, source, training["model_artifact"], candidate_version,
                                    list(collect["labels"]), load_set)
        registry.record("published", candidate_version, RETRAINING,
                        detail={"run_id": request.run_id, "artifact": training["model_artifact"]})
    # Both sides are scored in the form each serves in (int8 or fp32), as ClassifyBatch would.
    candidate = load_version(registry, candidate_version)
    held = load_labelled_set(source, collect["holdout_manifest"], candidate.labels, candidate.input_size,
                             candidate.channels, settings.max_image_bytes, settings.max_image_pixels,
                             settings.read_threads)
    if len(held.targets) == 0:
        raise BadRecord("no usable held-out image to evaluate on")
    candidate_right = correct(candidate, held.images, held.targets)
    candidate_accuracy = float(candidate_right.mean())
    current_accuracy = None
    # The paired comparison: images only the candidate gets right, and only the current model gets right.
    only_candidate = only_current = 0
    if collect.get("current_version"):
        current = load_version(registry, str(collect["current_version"]))
        current_right = correct(current, held.images, held.targets)
        current_accuracy = round(float(current_right.mean()), 4)
        only_candidate = int((candidate_right & ~current_right).sum())
        only_current = int((current_right & ~candidate_right).sum())
    metrics = {**registry.metrics(candidate_version), "accuracy": round(candidate_accuracy, 4),
               "accuracy_runtime": candidate.runtime,
               "held_out": int(len(held.targets)), "compared_with": collect.get("current_version"),
               "compared_accuracy": current_accuracy}
    registry.write_metrics(candidate_version, metrics)
    evaluated = {candidate_version: round(candidate_accuracy, 4)}
    if current_accuracy is not None:
        evaluated[str(collect["current_version"])] = current_accuracy
    record_shared_evaluation(registry, collect["holdout_manifest"], len(held.targets), evaluated,
                             held.images, held.targets)
    return EvaluateCandidateResult(
        candidate_version=candidate_version,
        candidate_accuracy=round(candidate_accuracy, 4),
        current_accuracy=current_accuracy,
        only_candidate_right=only_candidate,
        only_current_right=only_current,
        held_out=int(len(held.targets)),
        excluded=held.excluded,
        training_excluded=list(training.get("excluded") or []),
        candidate_runtime=candidate.runtime,
    )


def record_shared_evaluation(registry: ModelRegistry, holdout_set: str, size: int, evaluated: dict[str, float],
                             images: np.ndarray, targets: np.ndarray) -> None:
    """Score every version of the registry on this held-out set and keep the result with each version."""
    for version in registry.versions():
        metrics = registry.metrics(version)
        if version in evaluated:
            version_accuracy: float | None = evaluated[version]
        else:
            try:
                version_accuracy = round(accuracy(load_version(registry, version), images, targets), 4)
            except (ModelError, ValueError) as error:  # a version this model's inputs do not fit
                metrics[SHARED_EVALUATION] = {"set": holdout_set, "images": size, "accuracy": None,
                                              "error": str(error)[:200]}
                registry.write_metrics(version, metrics)
                continue
        metrics[SHARED_EVALUATION] = {"set": holdout_set, "images": size, "accuracy": version_accuracy}
        registry.write_metrics(version, metrics)
