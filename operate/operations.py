"""What operators do with runs, on the local stack or in AWS alike: start, list, inspect, replay."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
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
              name: str | None = None, max_images: int | None = None) -> str:
    if mode not in MODES:
        raise TargetError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if prefix is not None and not prefix.startswith(IMAGES_PREFIX):
        # The listing step refuses it too (BadRecord); saying so here costs no execution.
        raise TargetError(f"--prefix {prefix!r} is outside {IMAGES_PREFIX!r}: runs score only uploads under "
                          f"{IMAGES_PREFIX} (for example --prefix {IMAGES_PREFIX}camera-1/)")
    run_input: dict[str, Any] = {"mode": mode}
    if prefix is not None:
        run_input["prefix"] = prefix
    if max_images is not None:
        run_input["max_images"] = max_images
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


@dataclass(frozen=True)
class Progress:
    """Where a running run stands: batches done of those listed so far, its slice of about how many, and
    about how long it has left (None until a batch is done)."""

    done: int = 0
    planned: int | None = None  # None until the first slice is listed
    slice: int = 0
    slices: int = 0
    seconds_left: float | None = None

    def describe(self) -> str:
        if self.planned is None:
            return ""
        text = f"{self.done}/{self.planned} batches"
        if self.slices > 1:
            text = f"slice {self.slice} of {'about ' if self.slice < self.slices else ''}{self.slices}, " + text
        if self.seconds_left is not None:
            text += f", about {_duration(self.seconds_left)} left"
        return text


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class RunProgress:
    """A run's Progress, at a cost that does not grow with the run: while a slice's Map Run is running, one
    DescribeMapRun a poll. When it has ended (or has not started), the latest listing is read again from the
    newest page of the history, and the Map Runs are listed again.

    A run drains the ledger a slice at a time, each slice one Map Run. The batches of the slices before the
    current one are all done (their Map Runs ended before the next listing), so only the current Map Run is
    described.
    """

    # The latest listing is among the last events of the history whatever the run's length: a slice adds
    # about 30 events to the parent's history, the Map's children none.
    HISTORY_EVENTS = 100

    def __init__(self, target: Target, run_id: str, clock: Callable[[], float] = time.time):
        self.target = target
        self.run_id = run_id
        self.clock = clock
        self.listing: dict[str, Any] | None = None
        self.map_run_arn: str | None = None
        self.started: float | None = None

    def __call__(self) -> Progress:
        sfn = self.target.client("stepfunctions")
        execution_arn = self.target.execution_arn(self.run_id)
        counts = sfn.describe_map_run(mapRunArn=self.map_run_arn) if self.map_run_arn else None
        if counts is None or counts["status"] != "RUNNING":
            self.listing = _latest_listing(sfn, execution_arn, self.HISTORY_EVENTS)
            if self.listing is None or "batches" not in self.listing:
                return Progress()
            try:
                map_runs = list(_map_runs(sfn, execution_arn))
            except ClientError:  # moto answers 500 while the execution's worker is not up yet
                map_runs = []
            slice_number = int(self.listing.get("slice", 1))
            # The slice's own Map Run, once it has started: a Map Run per slice that had batches.
            current = max(map_runs, key=lambda m: m["startDate"]) if len(map_runs) >= slice_number else None
            self.map_run_arn = str(current["mapRunArn"]) if current else None
            counts = sfn.describe_map_run(mapRunArn=self.map_run_arn) if self.map_run_arn else None
        if self.started is None:
            self.started = sfn.describe_execution(executionArn=execution_arn)["startDate"].timestamp()
        assert self.listing is not None
        return self._progress(self.listing, counts["itemCounts"] if counts else {})

    def _progress(self, listing: dict[str, Any], counts: dict[str, Any]) -> Progress:
        slice_number = int(listing.get("slice", 1))
        planned = int(listing.get("run_batches", listing["batches"]))
        done = planned - int(listing["batches"])  # every batch of the slices before this one
        done += sum(int(counts.get(k, 0)) for k in ("succeeded", "failed", "timedOut", "aborted"))
        slices = max(slice_number, int(listing.get("slices", 1)))
        # About as many batches in each slice still to come as in this one (a full slice, but for the last).
        expected = planned + (slices - slice_number) * int(listing["batches"])
        elapsed = self.clock() - (self.started or self.clock())
        left = (expected - done) * elapsed / done if done and elapsed > 0 else None
        return Progress(done=done, planned=planned, slice=slice_number, slices=slices, seconds_left=left)


def _latest_listing(sfn: Any, execution_arn: str, events: int) -> dict[str, Any] | None:
    history = sfn.get_execution_history(executionArn=execution_arn, maxResults=events, reverseOrder=True)["events"]
    for event in history:
        details = event.get("stateExitedEventDetails") or {}
        if details.get("name") in ("ListNewVersions", "BuildReplayManifest"):
            listing = json.loads(details.get("output") or "{}").get("listing")
            return listing if isinstance(listing, dict) else None
    return None


def _map_runs(sfn: Any, execution_arn: str) -> Any:
    for page in sfn.get_paginator("list_map_runs").paginate(executionArn=execution_arn):
        yield from page.get("mapRuns", [])


def progress(target: Target, run_id: str) -> Progress:
    """Where a run stands: one poll of RunProgress."""
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
    elif description["status"] == "RUNNING":
        extra["progress"] = progress(target, description["name"]).describe()
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
