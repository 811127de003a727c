"""One start drains a backlog of five times the run's cap: one execution, a slice (a manifest and a Map Run)
after another, every version scored once and the daily counts equal to a recount; the same under DynamoDB and
S3 throttling."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine import throttling
from engine.local_engine import LocalConfig
from tests.conftest import cli, counted_rows, prediction_rows, recount, serve, stored_counts, upload

pytestmark = pytest.mark.workflow

CAP = 100  # max_images_per_run: a slice
IMAGES = 5 * CAP
BATCH = 25
# DynamoDB's partitions at 20 write units a second and the images' prefix at 20 GETs a second: a bucket holds one
# second of its rate, and every batch reads its 25 images and puts about 25 items at once, so both throttle.
THROTTLED = "dynamodb.partition_writes=20,dynamodb.partition_reads=2000,s3.prefix_reads=20,s3.prefix_writes=500"


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
        rows = prediction_rows(engine)
        assert sorted(r["version_id"] for r in rows) == sorted(versions)  # every version scored, once
        assert len(counted_rows(engine)) == IMAGES
        assert stored_counts(engine) == recount(engine) == summary["daily_counts"]
        if quotas:
            assert throttled["dynamodb"] > 0 and throttled["s3"] > 0, throttled

        # The ledger is empty: the next run finds nothing, and says so in one slice.
        again = json.loads(cli("start", "--wait", "--json").stdout)["output"]
        assert (again["images_scored"], again["slices"]) == (0, 1)
