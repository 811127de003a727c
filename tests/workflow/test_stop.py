"""Stopping a run part way, from the CLI and from the console: what it scored stays counted, exactly once, and the
next run scores the rest."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contract.resource_spec import RUN_STATE
from contract.results import PREDICTIONS_TABLE, index_key
from engine import lambda_bridge
from lambdas.stores import RunStateStore
from tests.conftest import cli, cli_json, counted_rows, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.workflow

BATCH = 8  # the served stack's batch size; it runs 2 batches at a time


@pytest.fixture
def slow_batches() -> Iterator[None]:
    """Every ClassifyBatch takes half a second more, so that a run is still going when it is stopped."""
    def slow(function: str, event: Any) -> None:
        if function.endswith("ClassifyBatch"):
            time.sleep(0.5)

    lambda_bridge.set_fault_hook(slow)
    yield
    lambda_bridge.set_fault_hook(None)


def _start_and_wait_for_batches(engine: Any, results: int) -> str:
    run_id = str(cli_json("start", "--mode", "score")["run_id"])
    state = RunStateStore(engine.client("dynamodb"), engine.config.table_name(RUN_STATE.logical_id))
    deadline = time.monotonic() + 60
    while len(state.batch_results(run_id)) < results:
        assert time.monotonic() < deadline, "the run recorded no batch result in 60 s"
        time.sleep(0.05)
    return run_id


def test_a_stopped_run_keeps_what_it_scored_and_the_next_run_scores_the_rest(
        served: Any, held_out_digits: list[Any], slow_batches: None) -> None:
    engine = served
    versions = [upload(engine, f"incoming/{n:03d}.png", digit.png) for n, digit in enumerate(held_out_digits[:80])]
    run_id = _start_and_wait_for_batches(engine, 2)

    stopped = cli_json("stop", run_id, "--reason", "maintenance window", "--settle", "1")

    description = engine.client("stepfunctions").describe_execution(executionArn=engine.target().execution_arn(run_id))
    assert description["status"] == "ABORTED"
    assert (description["error"], description["cause"]) == ("Stopped", "stopped by local: maintenance window")
    summary = stopped["summary"]
    assert stopped["batches_planned"] == 10 and 2 <= stopped["batches_run"] < 10, stopped
    # Every batch that ran is counted, in full, once, and in the day totals: the days are rolled up.
    counted = counted_rows(engine)
    assert summary["images_scored"] == len(counted) == BATCH * stopped["batches_run"]
    assert {r["run_id"] for r in counted} == {run_id}
    assert stored_counts(engine) == recount(engine) == summary["daily_counts"]
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == len(counted)
    assert summary["results"]["predictions"].endswith(f"runs/{run_id}/results/predictions/")
    index = engine.client("s3").get_object(Bucket=engine.config.bucket, Key=index_key(PREDICTIONS_TABLE, run_id))
    assert len(index["Body"].read().decode().splitlines()) == stopped["batches_run"]  # the files of the batches run
    assert any("stay in the ingest ledger" in note for note in summary["notes"])

    # show and runs say it was stopped, and what it scored.
    detail = cli_json("show", run_id)
    assert detail["status"] == "ABORTED" and detail["output"]["images_scored"] == len(counted)
    assert detail["stopped"]["stopped_by"] == "local" and detail["stopped"]["reason"] == "maintenance window"
    assert sum(sum(day.values()) for day in detail["added"].values()) == len(counted)
    (row,) = [r for r in cli_json("runs") if r["run_id"] == run_id]
    assert (row["status"], row["scored"], row["failed"]) == ("ABORTED", len(counted), 0)
    shown = cli("show", run_id).stdout
    assert "ABORTED" in shown and f"images scored: {len(counted)}" in shown and "stopped by local" in shown

    # A run that is not running, or that does not exist, cannot be stopped: one line, exit 2.
    again = cli("stop", run_id)
    assert again.exit_code == 2 and f"run {run_id} is not running: it is ABORTED" in again.output
    assert len(again.output.strip().splitlines()) == 1
    unknown = cli("stop", "score-nope")
    assert unknown.exit_code == 2 and "unknown run id 'score-nope'" in unknown.output

    # The next run scores exactly the versions the stopped one did not reach.
    rest = cli_json("start", "--mode", "score", "--wait")
    assert rest["status"] == "SUCCEEDED", rest
    assert rest["output"]["images_scored"] == 80 - len(counted) and rest["output"]["images_failed"] == 0
    assert sorted(r["version_id"] for r in prediction_rows(engine)) == sorted(versions)  # each once, overall
    assert len(counted_rows(engine)) == 80
    assert stored_counts(engine) == recount(engine)
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == 80


def test_the_console_stops_a_running_run_with_a_confirmed_post(
        served: Any, held_out_digits: list[Any], slow_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from console.app import create_app

    monkeypatch.setattr("operate.stopping.DEFAULT_SETTLE_SECONDS", 1.0)
    engine = served
    for n, digit in enumerate(held_out_digits[:40]):
        upload(engine, f"incoming/{n:03d}.png", digit.png)
    client = create_app(engine.target, "local stack").test_client()
    run_id = _start_and_wait_for_batches(engine, 1)

    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert f'href="/runs/{run_id}/stop"' in page  # the Stop button of a running run
    confirm = client.get(f"/runs/{run_id}/stop").get_data(as_text=True)
    assert f"Stop {run_id}?" in confirm and "stay in the ingest ledger" in confirm
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm)
    assert token is not None
    assert client.post(f"/runs/{run_id}/stop", data={"reason": "wrong model"}).status_code == 400  # no token

    stopped = client.post(f"/runs/{run_id}/stop", data={"csrf_token": token.group(1), "reason": "wrong model"})
    assert stopped.status_code == 303 and stopped.headers["Location"].endswith(f"/runs/{run_id}")
    page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    counted = len(counted_rows(engine))
    assert 'id="status">ABORTED<' in page and f'id="scored">{counted}<' in page and 'id="stop"' not in page
    assert "stopped by local: wrong model" in page
    assert stored_counts(engine) == recount(engine) and counted >= BATCH

    refused = client.post(f"/runs/{run_id}/stop", data={"csrf_token": token.group(1)})
    assert refused.status_code == 409 and "is not running" in refused.get_data(as_text=True)
