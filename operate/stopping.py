"""Stopping a run: StopExecution, then what the run's own end would have done for what it scored.

A stopped execution never reaches its last steps: WriteRunResults (the run's result files) and AggregateDailyCounts
(each day's totals it touched, and the run's summary). `stop_run` waits for the execution to be ABORTED and for the
batches in flight to settle (a Lambda invocation runs to its end whatever becomes of its execution), then runs
those steps' own code on what the run scored, and keeps the summary beside the run's results
(runs/<run>/stopped.json), where `show`, `runs` and the console read it. The versions the run did not reach are
still in the ingest ledger (an entry leaves it only once a listing finds it counted or failed): the next run takes
them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from contract.results import stop_record_key
from lambdas.counting import aggregate_daily_counts
from lambdas.results import write_stopped_run_results
from lambdas.steps import AggregateDailyCountsRequest
from lambdas.stores import FailureStore, ImageSource, RunStateStore
from operate.identity import caller_identity
from operate.operations import describe, prediction_store, run_mode, wait
from operate.targets import Target, TargetError

STOP_ERROR = "Stopped"  # the error name of a run `batchinfer stop` stopped (its cause says who, and why)
# Seconds without a new batch result after which the run's batches count as settled.
DEFAULT_SETTLE_SECONDS = 10.0
# The modes whose runs score batches: those a stop closes (rolls up, summarises).
SCORING_MODES = ("score", "score (events)", "reconcile", "replay")
_LISTING_STEPS = ("ListNewVersions", "BuildReplayManifest")


def stop_run(target: Target, run_id: str, reason: str | None = None,
             settle_seconds: float = DEFAULT_SETTLE_SECONDS, timeout: float = 1800.0, poll_seconds: float = 0.5,
             on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Stop a running run and close it; the stop record (who, why, batches run of those planned, the summary)."""
    say = on_progress or (lambda _: None)
    description = describe(target, run_id)
    name, status = str(description["name"]), str(description["status"])
    if status != "RUNNING":
        raise TargetError(f"run {name} is not running: it is {status}")
    who = caller_identity(target)
    cause = f"stopped by {who}" + (f": {reason}" if reason else "")
    target.client("stepfunctions").stop_execution(executionArn=description["executionArn"], error=STOP_ERROR,
                                                   cause=cause[:32768])
    say(f"run {name}: stopping")
    ended = wait(target, name, timeout=timeout, poll_seconds=poll_seconds)
    if ended["status"] != "ABORTED":  # it ended on its own first: its own last steps ran
        raise TargetError(f"run {name} ended {ended['status']} before the stop took effect")
    stopped_at = datetime.now(tz=timezone.utc).isoformat(timespec="seconds")
    record: dict[str, Any] = {"run_id": name, "status": "ABORTED", "stopped_by": who, "reason": reason,
                              "stopped_at": stopped_at}
    mode = run_mode(description)
    if mode in SCORING_MODES:
        say(f"run {name}: ABORTED; waiting for its batches in flight to finish")
        settle(target, name, settle_seconds, time.monotonic() + timeout, poll_seconds)
        say(f"run {name}: rolling up the days it scored")
        record.update(close_stopped_run(target, name, mode, cause))
    target.client("s3").put_object(Bucket=target.bucket, Key=stop_record_key(name), ContentType="application/json",
                                   Body=json.dumps(record, indent=2, default=str).encode())
    return record


def settle(target: Target, run_id: str, quiet_seconds: float, deadline: float, poll_seconds: float) -> None:
    """Until the run's Map Runs have nothing running and no batch result has arrived for `quiet_seconds`.

    On AWS a stopped Map Run counts its running children as aborted at once, while their Lambda invocations go on
    to write their predictions and results: hence the quiet period after the counts."""
    sfn = target.client("stepfunctions")
    state = RunStateStore(target.client("dynamodb"), target.state_table)
    map_runs = [m["mapRunArn"] for m in sfn.list_map_runs(executionArn=target.execution_arn(run_id))["mapRuns"]]
    while time.monotonic() < deadline:
        counts = [sfn.describe_map_run(mapRunArn=arn)["itemCounts"] for arn in map_runs]
        if not any(int(c.get("running", 0)) or int(c.get("pending", 0)) for c in counts):
            break
        time.sleep(poll_seconds)
    seen = len(state.batch_results(run_id))
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = len(state.batch_results(run_id))
        if now == seen:
            return
        seen = now


def close_stopped_run(target: Target, run_id: str, mode: str, cause: str) -> dict[str, Any]:
    """AggregateDailyCounts and WriteRunResults on what the run scored: its days rolled up, its summary, its files."""
    listings = _listings(target, run_id)
    planned = sum(int(listing.get("batches", 0)) for listing in listings)
    state = RunStateStore(target.client("dynamodb"), target.state_table)
    failures = FailureStore(target.client("dynamodb"), target.failures_table)
    ran = len(state.batch_results(run_id))
    notes = [f"{cause}; {ran} of {planned} batch(es) ran"
             + ("; the versions of the others stay in the ingest ledger: the next run takes them" if ran < planned
                else "")]
    # A run lists a slice at a time; each slice's listing carries the run's notes and already-done count so far.
    last = listings[-1] if listings else {}
    notes += [str(note) for note in last.get("notes") or []]
    request = AggregateDailyCountsRequest(
        run_id=run_id, mode="score" if mode == "score (events)" else mode, notes=tuple(notes),
        already_done=int(last.get("already_done", 0)), slices=max(1, len(listings)))
    summary = aggregate_daily_counts(request, prediction_store(target), failures, state, target.bucket)
    results = write_stopped_run_results(target.bucket, run_id, ImageSource(target.client("s3")), failures)
    return {"batches_planned": planned, "batches_run": ran, "summary": summary.to_dict(),
            "result_files": results.prediction_files}


def _listings(target: Target, run_id: str) -> list[dict[str, Any]]:
    """The listing steps' outputs ($.listing: the manifest, its batches, the notes) in the run's history."""
    sfn = target.client("stepfunctions")
    found = []
    pages = sfn.get_paginator("get_execution_history").paginate(
        executionArn=target.execution_arn(run_id), PaginationConfig={"PageSize": 1000})
    for page in pages:
        for event in page["events"]:
            details = event.get("stateExitedEventDetails") or {}
            if details.get("name") in _LISTING_STEPS:
                listing = json.loads(details.get("output") or "{}").get("listing")
                if isinstance(listing, dict):
                    found.append(listing)
    return found
