"""EvaluateCandidate: the candidate and the current model on the same held-out images."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from contract.settings import Settings
from inference_image.classifier import Classifier, load_version, publish_model
from inference_image.labelled_sets import load_labelled_set
from lambdas.model_registry import LABELS_FILE, MODEL_FILE, ModelError, ModelRegistry
from lambdas.records import BadRecord
from lambdas.steps import EvaluateCandidateRequest, EvaluateCandidateResult
from lambdas.stores import ImageSource


def register_sagemaker_artifact(registry: ModelRegistry, source: ImageSource, artifact_uri: str, version: str,
                                labels: list[str]) -> None:
    """A SageMaker job's model.tar.gz (holding model.keras, and labels.json if it chose to) as a version."""
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
        publish_model(registry, version, model_path, labels, {"trained_by": "sagemaker", "artifact": artifact_uri})
    _ = LABELS_FILE  # labels come from the collect step, so the classes stay in serving order


def accuracy(classifier: Classifier, images: np.ndarray, targets: np.ndarray, batch: int = 64) -> float:
    right = 0
    for start in range(0, len(targets), batch):
        probabilities = classifier.predict(images[start: start + batch])
        right += int((probabilities.argmax(axis=1) == targets[start: start + batch]).sum())
    return right / len(targets) if len(targets) else 0.0


def evaluate_candidate(request: EvaluateCandidateRequest, settings: Settings, source: ImageSource,
                       open_registry: Callable[[str], ModelRegistry]) -> EvaluateCandidateResult:
    collect, training = request.collect, request.training
    registry = open_registry(collect["model_registry"])
    candidate_version = request.candidate_version
    if training.get("model_artifact"):
        register_sagemaker_artifact(registry, source, training["model_artifact"], candidate_version,
                                    list(collect["labels"]))
    candidate = load_version(registry, candidate_version)
    held = load_labelled_set(source, collect["holdout_manifest"], candidate.labels, candidate.input_size,
                             candidate.channels, settings.max_image_bytes, settings.max_image_pixels,
                             settings.read_threads)
    if len(held.targets) == 0:
        raise BadRecord("no usable held-out image to evaluate on")
    candidate_accuracy = accuracy(candidate, held.images, held.targets)
    current_accuracy = None
    if collect.get("current_version"):
        current = load_version(registry, str(collect["current_version"]))
        current_accuracy = round(accuracy(current, held.images, held.targets), 4)
    metrics = {**registry.metrics(candidate_version), "accuracy": round(candidate_accuracy, 4),
               "held_out": int(len(held.targets)), "compared_with": collect.get("current_version"),
               "compared_accuracy": current_accuracy}
    registry.write_metrics(candidate_version, metrics)
    return EvaluateCandidateResult(
        candidate_version=candidate_version,
        candidate_accuracy=round(candidate_accuracy, 4),
        current_accuracy=current_accuracy,
        held_out=int(len(held.targets)),
        excluded=held.excluded,
        training_excluded=list(training.get("excluded") or []),
    )
