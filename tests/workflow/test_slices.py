"""One start drains a backlog of five times the run's cap: one execution, a slice (a manifest and a Map Run)
after another, every version scored once and the daily counts equal to a recount; the same under DynamoDB and
S3 throttling."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.resource_spec import HISTORY_EVENTS_PER_SLICE
from contract.results import PREDICTIONS_TABLE, index_key
from engine import throttling
from engine.local_engine import LocalConfig
from tests.conftest import cli, counted_rows, prediction_rows, recount, serve, stored_counts, upload

pytestmark = pytest.mark.workflow

CAP = 60  # max_images_per_run: a slice
IMAGES = 5 * CAP
BATCH = 20
# DynamoDB's partitions at 15 write units a second and the images' prefix at 30 GETs a second: a bucket holds one
# second of its rate, and four batches at once read 80 images and put about 80 items, so both throttle.
THROTTLED = "dynamodb.partition_writes=15,dynamodb.partition_reads=2000,s3.prefix_reads=30,s3.prefix_writes=500"


@pytest.mark.parametrize("quotas", ["", THROTTLED], ids=["unthrottled", "throttled"])
def test_one_start_drains_a_backlog_of_five_slices(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, demo_model: Any,
                                                   held_out_digits: list[Any], quotas: str) -> None:
    config = LocalConfig(name="slices", batch_size=BATCH, max_concurrency=4,
                         extra_settings={"BATCHINFER_MAX_IMAGES_PER_RUN": str(CAP)})
    with serve(tmp_path, monkeypatch, demo_model, config) as engine:
        versions = [upload(engine, f"incoming/{n:04d}.png", digit.png)
                    for n, digit in enumerate((held_out_digits * 4)[:IMAGES])]
        throttling.configure(throttling.Quotas.parse(quotas), engine.config.time_scale)
        try:
            started = cli("start", "--wait", "--json")
            throttled = engine.throttled()
        finally:
            throttling.configure(throttling.Quotas())
        assert started.exit_code == 0, started.output
        detail = json.loads(started.stdout)
        summary = detail["output"]

        assert detail["status"] == "SUCCEEDED" and summary["slices"] == 5, summary
        assert summary["images_scored"] == IMAGES and summary["images_failed"] == 0
        assert summary["batches"] == IMAGES // BATCH and summary["already_scored"] == 0
        assert len(detail["map_runs"]) == 5 and all(m["items"]["total"] == CAP // BATCH for m in detail["map_runs"])
        assert [s["state"] for s in detail["timeline"]].count("ListNewVersions") == 5
        history = engine.client("stepfunctions").get_execution_history(
            executionArn=engine.target().execution_arn(detail["run_id"]), maxResults=1000)["events"]
        # The figure the continuation is planned by: a slice's events in the parent's history, and a few more.
        print(f"history: {len(history)} events for 5 slices")
        assert len(history) <= 5 * HISTORY_EVENTS_PER_SLICE + 12, len(history)
        rows = prediction_rows(engine)
        assert sorted(r["version_id"] for r in rows) == sorted(versions)  # every version scored, once
        assert len(counted_rows(engine)) == IMAGES
        assert stored_counts(engine) == recount(engine) == summary["daily_counts"]
        if quotas:
            assert throttled["dynamodb"] > 0 and throttled["s3"] > 0, throttled
            # The run's summary counts what its batches saw throttled (the SDK retried them): some of what the
            # engine answered, never more (the listing, the other steps and failed attempts saw the rest).
            # The batches' S3 reads always overflow (80 at once); their puts may be spaced out by that throttling
            # enough to pass, in which case only the listing's DynamoDB requests were throttled.
            counted = summary["throttled"]
            assert set(counted) <= {"dynamodb", "s3"} and 0 < counted["s3"] <= throttled["s3"], (counted, throttled)
            assert counted.get("dynamodb", 0) <= throttled["dynamodb"], (counted, throttled)
        # The run's result files: one a batch of every slice, all in the index Athena and DuckDB read.
        index = engine.client("s3").get_object(Bucket=engine.config.bucket,
                                               Key=index_key(PREDICTIONS_TABLE, detail["run_id"]))
        assert len(index["Body"].read().decode().split()) == IMAGES // BATCH

        # The ledger is empty: the next run finds nothing, and says so in one slice.
        again = json.loads(cli("start", "--wait", "--json").stdout)["output"]
        assert (again["images_scored"], again["slices"]) == (0, 1)


def test_a_run_past_its_slices_per_execution_goes_on_in_new_executions(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, demo_model: Any, held_out_digits: list[Any]) -> None:
    """One slice an execution, and an engine whose histories hold too few events for two: without going on
    in a new execution the run would fail (moto_patches fix 21); with it, three parts score every version once."""
    images, cap = 60, 20
    config = LocalConfig(name="parts", batch_size=BATCH, max_concurrency=4,
                         history_events=HISTORY_EVENTS_PER_SLICE + 12,
                         extra_settings={"BATCHINFER_MAX_IMAGES_PER_RUN": str(cap),
                                         "BATCHINFER_SLICES_PER_EXECUTION": "1"})
    with serve(tmp_path, monkeypatch, demo_model, config) as engine:
        versions = [upload(engine, f"incoming/{n:04d}.png", digit.png)
                    for n, digit in enumerate(held_out_digits[:images])]
        started = cli("start", "--wait", "--json")
        assert started.exit_code == 0, started.output
        last = json.loads(started.stdout)
        assert last["status"] == "SUCCEEDED" and last["run_id"].endswith("-part003"), last["run_id"]
        first_run = last["run_id"].removesuffix("-part003")
        parts = [json.loads(cli("show", run, "--json").stdout) for run in
                 (first_run, f"{first_run}-part002", last["run_id"])]
        assert [p["status"] for p in parts] == ["SUCCEEDED"] * 3
        assert [p["output"].get("continued_in", "") for p in parts] == [parts[1]["run_id"], parts[2]["run_id"], ""]
        assert [p["output"]["images_scored"] for p in parts] == [cap] * 3
        assert f"part 2 of run {first_run}" in parts[1]["output"]["notes"][0]
        events = len(engine.client("stepfunctions").get_execution_history(
            executionArn=engine.target().execution_arn(first_run), maxResults=1000)["events"])
        assert events <= HISTORY_EVENTS_PER_SLICE + 12, events  # one slice and the roll-up fit the budget
        rows = prediction_rows(engine)
        assert sorted(r["version_id"] for r in rows) == sorted(versions)
        assert stored_counts(engine) == recount(engine)
