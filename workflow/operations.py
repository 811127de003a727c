"""What operators do with runs, on the local stack or in AWS alike: start, list, inspect, replay."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from lambdas.stores import FailureStore, RunStateStore
from workflow.targets import Target, TargetError

MODES = ("score", "replay", "retrain")
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def new_run_name(mode: str) -> str:
    return f"{mode}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def start_run(target: Target, mode: str, prefix: str | None = None, replay_of: str | None = None,
              name: str | None = None) -> str:
    if mode not in MODES:
        raise TargetError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    run_input: dict[str, Any] = {"mode": mode}
    if prefix is not None:
        run_input["prefix"] = prefix
    if replay_of is not None:
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
         timeout: float = 6 * 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        description = describe(target, run_id)
        if on_poll:
            on_poll(description)
        if description["status"] in TERMINAL:
            return description
        if time.monotonic() > deadline:
            raise TargetError(f"run {run_id} still {description['status']} after {timeout:.0f} s")
        time.sleep(0.5)


def progress(target: Target, run_id: str) -> tuple[int, int | None]:
    """(items done, items planned) from the run's batch results and its manifest."""
    state = RunStateStore(target.client("dynamodb"), target.state_table)
    done = sum(int(r.get("images", 0)) for r in state.batch_results(run_id))
    try:
        body = target.client("s3").get_object(Bucket=target.bucket, Key=f"runs/{run_id}/manifest.json")["Body"]
        planned: int | None = sum(len(b["items"]) for b in json.loads(body.read()))
    except Exception:  # the manifest is not written yet
        planned = None
    return done, planned


def _output(description: dict[str, Any]) -> dict[str, Any]:
    if not description.get("output"):
        return {}
    value = json.loads(description["output"])
    return value if isinstance(value, dict) else {}


def _mode(description: dict[str, Any]) -> str:
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
        output = _output(description)
        runs.append({
            "run_id": execution["name"],
            "mode": _mode(description),
            "status": execution["status"],
            "started": execution["startDate"].isoformat(timespec="seconds"),
            "seconds": _seconds(execution["startDate"], execution.get("stopDate")),
            "scored": output.get("images_scored"),
            "failed": output.get("images_failed"),
        })
    return runs


def show_run(target: Target, run_id: str) -> dict[str, Any]:
    description = describe(target, run_id)
    sfn = target.client("stepfunctions")
    events: list[dict[str, Any]] = []
    paginator_args: dict[str, Any] = {"executionArn": description["executionArn"], "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**paginator_args)
        events.extend(page["events"])
        if not page.get("nextToken"):
            break
        paginator_args["nextToken"] = page["nextToken"]
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
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
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
    failures = FailureStore(target.client("dynamodb"), target.failures_table).for_run(description["name"])
    return {
        "run_id": description["name"],
        "mode": _mode(description),
        "status": description["status"],
        "started": description["startDate"].isoformat(timespec="seconds"),
        "seconds": _seconds(description["startDate"], description.get("stopDate")),
        "output": _output(description),
        "error": description.get("error"),
        "cause": description.get("cause"),
        "timeline": timeline,
        "map_runs": map_runs,
        "failures": [{"object": f"s3://{f['image']['bucket']}/{f['image']['key']}",
                      "version_id": f["image"]["version_id"], "stage": f["stage"], "reason": f["reason"]}
                     for f in failures],
        "console_url": target.console_url(description["name"]),
    }


def replay_run(target: Target, run_id: str) -> str:
    description = describe(target, run_id)  # an unknown run id fails here, clearly
    return start_run(target, "replay", replay_of=description["name"])
