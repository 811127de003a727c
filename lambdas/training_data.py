"""CollectTrainingData: labelled images under labels/<class>/, split into training and held-out
manifests, plus an export of low-confidence predictions for people to label."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from contract.resource_spec import LABELS_PREFIX, RUNS_PREFIX
from contract.settings import Settings
from lambdas.model_registry import ModelError, ModelRegistry
from lambdas.observability import logger
from lambdas.records import BadRecord, parse_timestamp
from lambdas.stores import MODEL_PREFIX, ImageSource, RunStateStore, scan_all, stable_shard

TRAINING_SCOPE = "training"


@dataclass(frozen=True)
class CollectRequest:
    run_id: str

    @classmethod
    def from_event(cls, event: Any) -> CollectRequest:
        if not isinstance(event, dict) or not event.get("run_id"):
            raise BadRecord("CollectTrainingData needs an object with 'run_id'")
        return cls(run_id=str(event["run_id"]))


def labelled_images(source: ImageSource, bucket: str) -> list[tuple[str, str, str]]:
    """(key, LastModified, class) of every object under labels/<class>/."""
    found = []
    paginator = source.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=LABELS_PREFIX):
        for obj in page.get("Contents", []):
            parts = obj["Key"][len(LABELS_PREFIX):].split("/")
            if len(parts) < 2 or not parts[0] or not parts[-1]:
                continue  # not under a class folder
            found.append((obj["Key"], obj["LastModified"].isoformat(), parts[0]))
    return found


def collect_training_data(
    request: CollectRequest,
    settings: Settings,
    source: ImageSource,
    registry: ModelRegistry,
    state: RunStateStore,
    dynamodb: Any,
) -> dict[str, Any]:
    try:
        current = registry.current_version()
        labels = registry.fetch_labels(current)
    except ModelError as error:
        raise ModelError(f"retraining needs a current model to start from: {error}") from None
    notes: list[str] = []
    train: list[dict[str, Any]] = []
    held_out: list[dict[str, Any]] = []
    last_trained = state.checkpoint(f"{TRAINING_SCOPE}/{registry.name}")
    new_labels = 0
    high_water = last_trained
    unknown: dict[str, int] = {}
    for key, last_modified, label in labelled_images(source, settings.bucket):
        if label not in labels:
            unknown[label] = unknown.get(label, 0) + 1
            continue
        if last_trained is None or parse_timestamp(last_modified) > parse_timestamp(last_trained):
            new_labels += 1
        if high_water is None or parse_timestamp(last_modified) > parse_timestamp(high_water):
            high_water = last_modified
        item = {"bucket": settings.bucket, "key": key, "label": label}
        # A stable split: an image stays on its side of the line from one retraining to the next.
        (held_out if stable_shard(key, 100) < settings.holdout_percent else train).append(item)
    for label, count in sorted(unknown.items()):
        notes.append(f"labels/{label}/: {count} image(s) left out, {label!r} is not a class of model {current}")
    candidate = "v" + time.strftime("%Y%m%d%H%M%S", time.gmtime())
    prefix = f"{RUNS_PREFIX}{request.run_id}"
    source.write_json(settings.bucket, f"{prefix}/train.json", train)
    source.write_json(settings.bucket, f"{prefix}/holdout.json", held_out)
    exported = export_low_confidence(dynamodb, settings, source, f"{prefix}/low_confidence.jsonl", current)
    enough = new_labels >= settings.min_new_labels and bool(train) and bool(held_out)
    reason = ""
    if new_labels < settings.min_new_labels:
        reason = (f"too little new labelled data: {new_labels} new labelled image(s) since the last training, "
                  f"at least {settings.min_new_labels} needed")
    elif not train or not held_out:
        reason = "too little labelled data to hold some out for evaluation"
    logger.info("training data collected", extra={"run_id": request.run_id, "train": len(train),
                                                  "held_out": len(held_out), "new": new_labels})
    return {
        "enough": enough,
        "reason": reason,
        "hook": settings.training_hook,
        "model_name": registry.name,
        "model_registry": registry.location,
        "current_version": current,
        "candidate_version": candidate,
        "labels": labels,
        "train_manifest": f"s3://{settings.bucket}/{prefix}/train.json",
        "holdout_manifest": f"s3://{settings.bucket}/{prefix}/holdout.json",
        "train_count": len(train),
        "holdout_count": len(held_out),
        "new_labels": new_labels,
        "labels_high_water": high_water,
        "epochs": settings.train_epochs,
        "low_confidence_export": f"s3://{settings.bucket}/{prefix}/low_confidence.jsonl",
        "low_confidence_count": exported,
        "notes": notes,
    }


def export_low_confidence(dynamodb: Any, settings: Settings, source: ImageSource, key: str,
                          model_version: str) -> int:
    """Predictions of the current model below the confidence threshold, one JSON object a line,
    for people to label (then upload under labels/<class>/)."""
    rows = [
        row for row in scan_all(
            dynamodb, TableName=settings.predictions_table,
            FilterExpression="sk = :sk AND confidence < :c",
            ExpressionAttributeValues={":sk": {"S": MODEL_PREFIX + model_version},
                                       ":c": {"N": str(settings.low_confidence)}},
        )
    ]
    lines = [json.dumps({"image_uri": r["image_uri"], "predicted_class": r["predicted_class"],
                         "confidence": r["confidence"], "date": r["date"]}) for r in rows]
    source.client.put_object(Bucket=settings.bucket, Key=key, Body=("\n".join(lines) + "\n").encode(),
                             ContentType="application/x-ndjson")
    return len(rows)
