"""CollectTrainingData: labelled images under labels/<class>/, split into training and held-out
manifests, plus an export of low-confidence predictions for people to label."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from contract.resource_spec import LABELS_PREFIX, RUNS_PREFIX
from contract.settings import Settings
from lambdas.model_registry import ModelError, ModelRegistry
from lambdas.observability import logger
from lambdas.records import parse_timestamp
from lambdas.steps import CollectTrainingDataRequest, CollectTrainingDataResult
from lambdas.stores import ImageSource, PredictionStore, RunStateStore, stable_shard

TRAINING_SCOPE = "training"


def labelled_images(source: ImageSource, bucket: str) -> list[tuple[str, str, str]]:
    """(key, LastModified, class) of every object under labels/<class>/."""
    found = []
    for key, last_modified in source.list_objects(bucket, LABELS_PREFIX):
        parts = key[len(LABELS_PREFIX):].split("/")
        if len(parts) < 2 or not parts[0] or not parts[-1]:
            continue  # not under a class folder
        found.append((key, last_modified, parts[0]))
    return found


@dataclass
class LabelledSplit:
    """The labelled images of the model's classes, on either side of a stable line."""

    train: list[dict[str, Any]] = field(default_factory=list)
    held_out: list[dict[str, Any]] = field(default_factory=list)
    new_labels: int = 0  # labelled since the last training
    high_water: str | None = None  # the newest label's LastModified
    unknown: dict[str, int] = field(default_factory=dict)  # images under folders that are not classes


def split_labelled(images: list[tuple[str, str, str]], labels: list[str], bucket: str, holdout_percent: int,
                   last_trained: str | None) -> LabelledSplit:
    split = LabelledSplit(high_water=last_trained)
    for key, last_modified, label in images:
        if label not in labels:
            split.unknown[label] = split.unknown.get(label, 0) + 1
            continue
        if last_trained is None or parse_timestamp(last_modified) > parse_timestamp(last_trained):
            split.new_labels += 1
        if split.high_water is None or parse_timestamp(last_modified) > parse_timestamp(split.high_water):
            split.high_water = last_modified
        item = {"bucket": bucket, "key": key, "label": label}
        # A stable split: an image stays on its side of the line from one retraining to the next.
        (split.held_out if stable_shard(key, 100) < holdout_percent else split.train).append(item)
    return split


def shortfall(split: LabelledSplit, min_new_labels: int) -> str:
    """Why there is not enough data to train, or "" when there is."""
    if split.new_labels < min_new_labels:
        return (f"too little new labelled data: {split.new_labels} new labelled image(s) since the last training, "
                f"at least {min_new_labels} needed")
    if not split.train or not split.held_out:
        return "too little labelled data to hold some out for evaluation"
    return ""


def collect_training_data(
    request: CollectTrainingDataRequest,
    settings: Settings,
    source: ImageSource,
    registry: ModelRegistry,
    state: RunStateStore,
    predictions: PredictionStore,
) -> CollectTrainingDataResult:
    try:
        current = registry.current_version()
        labels = registry.fetch_labels(current)
    except ModelError as error:
        raise ModelError(f"retraining needs a current model to start from: {error}") from None
    last_trained = state.checkpoint(f"{TRAINING_SCOPE}/{registry.name}")
    split = split_labelled(labelled_images(source, settings.bucket), labels, settings.bucket,
                           settings.holdout_percent, last_trained)
    notes = [f"labels/{label}/: {count} image(s) left out, {label!r} is not a class of model {current}"
             for label, count in sorted(split.unknown.items())]
    candidate = "v" + time.strftime("%Y%m%d%H%M%S", time.gmtime())
    prefix = f"{RUNS_PREFIX}{request.run_id}"
    source.write_json(settings.bucket, f"{prefix}/train.json", split.train)
    source.write_json(settings.bucket, f"{prefix}/holdout.json", split.held_out)
    exported = export_low_confidence(predictions, settings, source, f"{prefix}/low_confidence.jsonl", current)
    reason = shortfall(split, settings.min_new_labels)
    logger.info("training data collected", extra={"run_id": request.run_id, "train": len(split.train),
                                                  "held_out": len(split.held_out), "new": split.new_labels})
    return CollectTrainingDataResult(
        enough=not reason,
        reason=reason,
        hook=settings.training_hook,
        model_name=registry.name,
        model_registry=registry.location,
        current_version=current,
        candidate_version=candidate,
        labels=labels,
        train_manifest=f"s3://{settings.bucket}/{prefix}/train.json",
        holdout_manifest=f"s3://{settings.bucket}/{prefix}/holdout.json",
        train_count=len(split.train),
        holdout_count=len(split.held_out),
        new_labels=split.new_labels,
        labels_high_water=split.high_water,
        epochs=settings.train_epochs,
        low_confidence_export=f"s3://{settings.bucket}/{prefix}/low_confidence.jsonl",
        low_confidence_count=exported,
        notes=notes,
    )


def export_low_confidence(predictions: PredictionStore, settings: Settings, source: ImageSource, key: str,
                          model_version: str) -> int:
    """Predictions of the current model below the confidence threshold, one JSON object a line,
    for people to label (then upload under labels/<class>/)."""
    rows = predictions.below_confidence(model_version, settings.low_confidence)
    lines = [json.dumps({"image_uri": r["image_uri"], "predicted_class": r["predicted_class"],
                         "confidence": r["confidence"], "date": r["date"]}) for r in rows]
    source.write_text(settings.bucket, key, "\n".join(lines) + "\n", "application/x-ndjson")
    return len(rows)
