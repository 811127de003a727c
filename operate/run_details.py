"""What a run did, beyond its status: a retraining or publish run's outcome, the counts a scoring run added, its
current step."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

from contract.results import stop_record_key
from lambdas.stores import PredictionStore
from operate.targets import Target

# The outcome names of the retraining branch, as people say them: a rejected candidate keeps the current model.
RETRAIN_OUTCOMES = {"promoted": "promoted", "rejected": "kept", "skipped": "skipped", "training_failed": "failed"}


def retrain_outcome(status: str, output: dict[str, Any], error: str | None = None,
                    cause: str | None = None) -> dict[str, Any]:
    """A retraining run in one flat record: what happened, why, on which labels, both versions' accuracy."""
    outcome = output.get("outcome") or {}
    collected = output.get("collected") or {}
    if status != "SUCCEEDED":
        kind = "failed" if status != "RUNNING" else "running"
        reason: str | None = f"{error}: {cause}" if error else status.lower()
    else:
        kind = RETRAIN_OUTCOMES.get(str(outcome.get("outcome")), str(outcome.get("outcome")))
        reason = outcome.get("reason")
        if kind == "failed" and outcome.get("error"):
            failure = outcome["error"]
            reason = f"{failure.get('Error')}: {failure.get('Cause')}" if isinstance(failure, dict) else str(failure)
    return {
        "outcome": kind,
        "reason": reason,
        "model": outcome.get("model_name") or collected.get("model_name"),
        "serving": outcome.get("current_version") or collected.get("current_version"),
        "previous_version": outcome.get("previous_version", collected.get("current_version")),
        "candidate_version": outcome.get("candidate_version"),
        "labels": collected.get("labels"),
        "new_labels": collected.get("new_labels"),
        "train_count": collected.get("train_count"),
        "holdout_count": collected.get("holdout_count"),
        "held_out": outcome.get("held_out"),
        "candidate_accuracy": outcome.get("candidate_accuracy"),
        "current_accuracy": outcome.get("current_accuracy"),
        "significance": outcome.get("significance"),
        "excluded": len(outcome.get("excluded") or []),
    }


def failure_message(error: str | None, cause: str | None) -> str:
    """A failed run's error in one line: the step's own message, not the JSON Lambda wraps it in."""
    try:
        parsed = json.loads(cause or "")
        message = parsed.get("errorMessage") if isinstance(parsed, dict) else None
    except ValueError:
        message = None
    return str(message or cause or error or "failed")


def publish_outcome(status: str, output: dict[str, Any], error: str | None = None,
                    cause: str | None = None) -> dict[str, Any]:
    """A publish run in one flat record: what became of the version, and why."""
    outcome = output.get("outcome") or {}
    if status != "SUCCEEDED":
        kind = "failed" if status != "RUNNING" else "running"
        return {"outcome": kind, "reason": failure_message(error, cause) if kind == "failed" else None,
                "version": None, "model": None}
    return {"outcome": outcome.get("outcome"), "reason": outcome.get("reason"), "version": outcome.get("version"),
            "model": outcome.get("model_name"), **{k: outcome.get(k) for k in (
                "source_format", "serves", "preprocess", "softmax", "accuracy", "held_out", "near_chance",
                "current_version", "previous_version", "current_accuracy", "by")}}


def added_by_run(store: PredictionStore, run_id: str, dates: list[str]) -> dict[str, dict[str, int]]:
    """Per day and class, the image versions this run counted: the part of each day's total it added.

    The counted prediction of an image version is its COUNTED item, which names the run that wrote it;
    `predictions_on` gives the counted ones (folded into the day's markers), so its run_id counted it.
    """
    added: dict[str, Counter[str]] = {}
    for date in dates:
        for row in store.predictions_on(date):
            if row.get("run_id") == run_id:
                added.setdefault(date, Counter())[row["predicted_class"]] += 1
    return {date: dict(sorted(counts.items())) for date, counts in sorted(added.items())}


def current_step(target: Target, run_id: str) -> str | None:
    """The state the run entered last, from the newest events of its history."""
    sfn = target.client("stepfunctions")
    events = sfn.get_execution_history(executionArn=target.execution_arn(run_id), reverseOrder=True,
                                       maxResults=50)["events"]
    for event in sorted(events, key=lambda e: e["id"], reverse=True):  # newest first, whatever the engine sends
        if event["type"].endswith("StateEntered"):
            return str(event["stateEnteredEventDetails"]["name"])
    return None


def stop_record(target: Target, run_id: str) -> dict[str, Any] | None:
    """What `batchinfer stop` kept of a run it stopped (operate/stopping.py): who, why, the summary; else None."""
    try:
        body = target.client("s3").get_object(Bucket=target.bucket, Key=stop_record_key(run_id))["Body"].read()
    except ClientError as error:
        if error.response["Error"].get("Code") in ("NoSuchKey", "404", "AccessDenied"):
            return None
        raise
    value = json.loads(body)
    return value if isinstance(value, dict) else None


def stopped_output(target: Target, run_id: str, status: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An aborted run's summary as `stop` closed it, and the stop (by, why, when, batches run); ({}, None) else."""
    record = stop_record(target, run_id) if status == "ABORTED" else None
    if record is None:
        return {}, None
    stop = {k: record.get(k) for k in ("stopped_by", "reason", "stopped_at", "batches_run", "batches_planned")}
    return dict(record.get("summary") or {}), stop
