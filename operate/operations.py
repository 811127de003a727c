"""What operators do with runs, on the local stack or in AWS alike: start, list, inspect, replay."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from contract.resource_spec import IMAGES_PREFIX, MODELS_PREFIX, SHARED_EVALUATION
from contract.settings import Settings
from lambdas.model_registry import ModelError, ModelRegistry
from lambdas.stores import FailureStore, ImageSource, PredictionStore
from operate.run_details import added_by_run, publish_outcome, retrain_outcome, stopped_output
from operate.targets import Target, TargetError

MODES = ("score", "replay", "retrain", "reconcile")
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def new_run_name(mode: str) -> str:
    """An execution name that sorts by start time: <mode>-<UTC time>-<6 random hex digits>."""
    return f"{mode}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def start_run(target: Target, mode: str, prefix: str | None = None, replay_of: str | None = None,
              name: str | None = None) -> str:
    if mode not in MODES:
        raise TargetError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if prefix is not None and not prefix.startswith(IMAGES_PREFIX):
        # The listing step refuses it too (BadRecord); saying so here costs no execution.
        raise TargetError(f"--prefix {prefix!r} is outside {IMAGES_PREFIX!r}: runs score only uploads under "
                          f"{IMAGES_PREFIX} (for example --prefix {IMAGES_PREFIX}camera-1/)")
    run_input: dict[str, Any] = {"mode": mode}
    if prefix is not None:
        run_input["prefix"] = prefix
    if replay_of is not None:
        replay_of = describe(target, replay_of)["name"]  # an unknown run is an error here, not an empty replay
        run_input["run"] = replay_of
    response = target.client("stepfunctions").start_execution(
        stateMachineArn=target.state_machine_arn, name=name or new_run_name(mode), input=json.dumps(run_input)
    )
    return str(response["executionArn"]).rsplit(":", 1)[-1]


def describe(target: Target, run_id: str) -> dict[str, Any]:
    sfn = target.client("stepfunctions")
    try:
        return dict(sfn.describe_execution(executionArn=target.execution_arn(run_id)))
    except sfn.exceptions.ExecutionDoesNotExist:
        raise TargetError(f"unknown run id {run_id!r}: `batchinfer runs` lists the recent runs") from None
    except sfn.exceptions.InvalidArn:
        raise TargetError(f"unknown run id {run_id!r}: `batchinfer runs` lists the recent runs") from None


def wait(target: Target, run_id: str, on_poll: Callable[[dict[str, Any]], None] | None = None,
         timeout: float = 6 * 3600, poll_seconds: float = 0.5) -> dict[str, Any]:
    """The run's description once it has ended; `on_poll` sees every description, the last one included."""
    deadline = time.monotonic() + timeout
    while True:
        description = describe(target, run_id)
        if on_poll:
            on_poll(description)
        if description["status"] in TERMINAL:
            return description
        if time.monotonic() > deadline:
            raise TargetError(f"run {run_id} still {description['status']} after {timeout:.0f} s")
        time.sleep(poll_seconds)


def prediction_store(target: Target) -> PredictionStore:
    """The stack's predictions, with the counter shard count its functions recorded."""
    return PredictionStore.deployed(target.client("dynamodb"), target.predictions_table, target.counts_table,
                                    Settings.count_shards)


class RunProgress:
    """(batches done, batches planned) of a run, at a cost that does not grow with the run.

    Each poll is one DescribeMapRun (the Map Run's item counts), not a read of every batch's result.
    The plan (the listing step's batch count, in the first events of the history) and the Map Run's ARN
    are looked up once and kept.
    """

    # The listing step's output is among the first events of a run's history.
    HISTORY_EVENTS = 25

    def __init__(self, target: Target, run_id: str):
        self.target = target
        self.run_id = run_id
        self.planned: int | None = None
        self.map_run_arn: str | None = None

    def __call__(self) -> tuple[int, int | None]:
        sfn = self.target.client("stepfunctions")
        execution_arn = self.target.execution_arn(self.run_id)
        if self.planned is None:
            self.planned = _planned_batches(sfn, execution_arn, self.HISTORY_EVENTS)
        if self.map_run_arn is None:
            try:
                map_runs = sfn.list_map_runs(executionArn=execution_arn, maxResults=1).get("mapRuns", [])
            except ClientError:  # moto answers 500 while the execution's worker is not up yet
                map_runs = []
            if not map_runs:
                return 0, self.planned
            self.map_run_arn = str(map_runs[0]["mapRunArn"])
        counts = sfn.describe_map_run(mapRunArn=self.map_run_arn)["itemCounts"]
        done = sum(int(counts.get(k, 0)) for k in ("succeeded", "failed", "timedOut", "aborted"))
        return done, self.planned


def _planned_batches(sfn: Any, execution_arn: str, events: int) -> int | None:
    history = sfn.get_execution_history(executionArn=execution_arn, maxResults=events)["events"]
    for event in history:
        details = event.get("stateExitedEventDetails") or {}
        if details.get("name") in ("ListNewVersions", "BuildReplayManifest"):
            listing = json.loads(details.get("output") or "{}").get("listing") or {}
            return int(listing["batches"]) if "batches" in listing else None
    return None


def progress(target: Target, run_id: str) -> tuple[int, int | None]:
    """(batches done, batches planned) of a run: one poll of RunProgress."""
    return RunProgress(target, run_id)()


def run_output(description: dict[str, Any]) -> dict[str, Any]:
    """What a finished run returned (images scored and failed, daily counts, ...); {} until it ends well."""
    if not description.get("output"):
        return {}
    value = json.loads(description["output"])
    return value if isinstance(value, dict) else {}


def run_mode(description: dict[str, Any]) -> str:
    try:
        run_input = json.loads(description.get("input") or "{}")
    except ValueError:
        return "?"
    if isinstance(run_input, list):
        return "score (events)"
    return str(run_input.get("mode", "?")) if isinstance(run_input, dict) else "?"


def _seconds(start: datetime, stop: datetime | None) -> float | None:
    return round((stop - start).total_seconds(), 2) if stop else None


def list_runs(target: Target, limit: int = 20) -> list[dict[str, Any]]:
    sfn = target.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=target.state_machine_arn, maxResults=limit)["executions"]
    executions.sort(key=lambda e: e["startDate"], reverse=True)
    runs = []
    for execution in executions[:limit]:
        description = sfn.describe_execution(executionArn=execution["executionArn"])
        output = run_output(description) or stopped_output(target, execution["name"], execution["status"])[0]
        mode = run_mode(description)
        retrain = retrain_outcome(execution["status"], output, description.get("error"),
                                  description.get("cause")) if mode == "retrain" else None
        if mode == "publish":
            retrain = publish_outcome(execution["status"], output, description.get("error"), description.get("cause"))
        runs.append({
            "run_id": execution["name"],
            "mode": mode,
            "status": execution["status"],
            "started": execution["startDate"].isoformat(timespec="seconds"),
            "seconds": _seconds(execution["startDate"], execution.get("stopDate")),
            "scored": output.get("images_scored"),
            "failed": output.get("images_failed"),
            # A retraining or publish run scores nothing: its result is its outcome (promoted, kept, failed, ...).
            "outcome": retrain["outcome"] if retrain else None,
        })
    return runs


def show_run(target: Target, run_id: str) -> dict[str, Any]:
    description = describe(target, run_id)
    sfn = target.client("stepfunctions")
    events: list[dict[str, Any]] = []
    pages = sfn.get_paginator("get_execution_history").paginate(
        executionArn=description["executionArn"], PaginationConfig={"PageSize": 1000})
    for page in pages:
        events.extend(page["events"])
    timeline: list[dict[str, Any]] = []
    open_states: dict[str, dict[str, Any]] = {}
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entry = {"state": name, "type": kind.removesuffix("StateEntered"),
                     "entered": event["timestamp"].isoformat(timespec="milliseconds"),
                     "seconds": None, "status": "running"}
            open_states[name] = {"entry": entry, "start": event["timestamp"]}
            timeline.append(entry)
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            if name in open_states:
                opened = open_states.pop(name)
                opened["entry"]["seconds"] = _seconds(opened["start"], event["timestamp"])
                opened["entry"]["status"] = "done"
        elif kind in ("ExecutionFailed", "TaskFailed", "LambdaFunctionFailed", "MapRunFailed"):
            details: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
            timeline.append({"state": kind, "type": "error", "entered": event["timestamp"].isoformat(
                timespec="milliseconds"), "seconds": None,
                "status": f"{details.get('error', '')}: {str(details.get('cause', ''))[:200]}"})
    map_runs = []
    try:
        for map_run in sfn.list_map_runs(executionArn=description["executionArn"]).get("mapRuns", []):
            detail = sfn.describe_map_run(mapRunArn=map_run["mapRunArn"])
            map_runs.append({"status": detail["status"], "items": detail["itemCounts"]})
    except Exception:  # older engines have no map runs
        pass
    mode, output = run_mode(description), run_output(description)
    extra: dict[str, Any] = {}
    if not output:  # a run `batchinfer stop` stopped: the summary it closed the run with
        output, stopped = stopped_output(target, description["name"], description["status"])
        if stopped:
            extra["stopped"] = stopped
    if mode == "retrain":
        extra["retrain"] = retrain_outcome(description["status"], output, description.get("error"),
                                            description.get("cause"))
    elif mode == "publish":
        extra["publish"] = publish_outcome(description["status"], output, description.get("error"),
                                           description.get("cause"))
    elif output.get("daily_counts"):
        # daily_counts are each day's totals when the run ended; this is what the run itself counted.
        extra["added"] = added_by_run(prediction_store(target), description["name"], sorted(output["daily_counts"]))
    return {
        "run_id": description["name"],
        "mode": mode,
        "status": description["status"],
        "started": description["startDate"].isoformat(timespec="seconds"),
        "seconds": _seconds(description["startDate"], description.get("stopDate")),
        "output": output,
        "error": description.get("error"),
        "cause": description.get("cause"),
        "timeline": timeline,
        "map_runs": map_runs,
        "failures": run_failures(target, description["name"]),
        "console_url": target.console_url(description["name"]),
        **extra,
    }


def run_failures(target: Target, run_id: str) -> list[dict[str, Any]]:
    """The items a run could not score, each with its stage and reason, as replay will take them."""
    return [{"object": f"s3://{f['image']['bucket']}/{f['image']['key']}",
             "version_id": f["image"]["version_id"], "stage": f["stage"], "reason": f["reason"]}
            for f in FailureStore(target.client("dynamodb"), target.failures_table).for_run(run_id)]


def replay_run(target: Target, run_id: str) -> str:
    return start_run(target, "replay", replay_of=run_id)  # an unknown run id fails there, clearly


# Presigned links expire: SigV4 allows at most 7 days; an hour is the default.
DEFAULT_LINK_SECONDS = 3600
MAX_LINK_SECONDS = 7 * 24 * 3600


def probabilities_kept(row: dict[str, Any]) -> str:
    """What a prediction row keeps of its probabilities: "all 3", or "top 5 of 1000" for many classes."""
    return str(row.get("probabilities_kept") or f"all {len(row.get('probabilities') or {})}")


def list_predictions(target: Target, date: str | None = None, limit: int = 50, links: bool = False,
                     expires: int = DEFAULT_LINK_SECONDS) -> list[dict[str, Any]]:
    """Prediction rows, newest first; with `links`, a presigned GET of each image version.

    The bucket stays private: a link names the exact version (VersionId) and stops working
    after `expires` seconds.
    """
    from botocore.config import Config

    if not 1 <= expires <= MAX_LINK_SECONDS:
        raise TargetError(f"--expires must be between 1 and {MAX_LINK_SECONDS} seconds (7 days), got {expires}")
    if date is not None:
        try:
            datetime.strptime(date, "%Y-%m-%d")
        except ValueError:
            raise TargetError(f"--date must be a day as YYYY-MM-DD, got {date!r}") from None
    store = prediction_store(target)
    rows = store.model_predictions() if date is None else store.predictions_on(date)
    rows.sort(key=lambda r: (r.get("captured_at", ""), r["image_id"]), reverse=True)
    # SigV4 links: they carry X-Amz-Expires, and every region accepts them.
    s3 = target.client("s3", config=Config(signature_version="s3v4")) if links else None
    listed = []
    for row in rows[:limit]:
        # Every field the predictions table keeps for the row (its key "sk" is the model version again).
        entry = {
            "date": row["date"],
            "class": row["predicted_class"],
            "confidence": row["confidence"],
            "probabilities": row.get("probabilities") or {},
            "kept": probabilities_kept(row),
            "captured_at": row["captured_at"],
            "model_version": row["model_version"],
            "runtime": row.get("runtime"),
            "image": row["image_uri"],
            "bucket": row.get("bucket"),
            "key": row.get("key"),
            "version_id": row.get("version_id"),
            "run_id": row["run_id"],
            "batch_id": row.get("batch_id"),
            "prediction_id": row.get("prediction_id"),
            "created_at": row.get("created_at"),
        }
        if s3 is not None:
            entry["link"] = s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": row["bucket"], "Key": row["key"], "VersionId": row["version_id"]},
                ExpiresIn=expires,
            )
            entry["link_expires_in"] = expires
        listed.append(entry)
    return listed


def list_models(target: Target) -> list[dict[str, Any]]:
    """Every model in the registry (s3://<bucket>/models/<name>/): versions, metrics, the current one."""
    s3 = target.client("s3")
    models = []
    for name in [n for n in ImageSource(s3).list_folders(target.bucket, MODELS_PREFIX) if not n.startswith("_")]:
        registry = ModelRegistry(f"s3://{target.bucket}/{MODELS_PREFIX}{name}", s3_client=s3)
        try:
            current: str | None = registry.current_version()
        except ModelError:
            current = None
        versions = {version: registry.metrics(version) for version in registry.versions()}
        history = registry.history()
        shared = comparable_accuracies(versions)
        for version, metrics in versions.items():
            accuracy, held_out, held_out_set = shared.get(version, (metrics.get("accuracy"), metrics.get("held_out"),
                                                                    "its own"))
            serving: dict[str, Any] = metrics["serving"] if isinstance(metrics.get("serving"), dict) else {}
            approval = registry.approval(version)
            models.append({"model": name, "version": version, "current": version == current,
                           "approval": approval.get("status") if approval else None,
                           "approval_reason": approval.get("reason") if approval else None,
                           # Promoting it now would be a rollback (the console labels its button so).
                           "before_current": current is not None and version != current
                           and registry.published_before(version, current, history),
                           "serves": serving.get("form"), "int8_agreement": serving.get("int8_agreement"),
                           "int8_accuracy_drop_points": serving.get("accuracy_drop_points"),
                           "serving_reason": serving.get("reason"),
                           "accuracy": accuracy, "held_out": held_out, "held_out_set": held_out_set,
                           "trained_on": metrics.get("trained_on"), "base_version": metrics.get("base_version"),
                           "preprocess": metrics.get("preprocess"), "source_format": metrics.get("source_format"),
                           "metrics": metrics})
    return models


def comparable_accuracies(versions: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any, str]]:
    """Each version's accuracy on the newest held-out set that retraining scored every version on.

    A version's own metrics were measured on whatever images it was trained against; only the shared
    set compares versions on the same images. Versions never scored on it are left out here.
    """
    evaluations = {v: m[SHARED_EVALUATION] for v, m in versions.items() if isinstance(m.get(SHARED_EVALUATION), dict)}
    if not evaluations:
        return {}
    # Each round scores every version that exists then: the newest round's set covers the most versions.
    newest = Counter(str(e["set"]) for e in evaluations.values()).most_common(1)[0][0]
    return {v: (e.get("accuracy"), e.get("images"), newest) for v, e in evaluations.items() if e["set"] == newest}
