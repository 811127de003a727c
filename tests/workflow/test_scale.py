"""A first run over a backlog: more than 4,000 batches through the real definition on the embedded
engine, which enforces Step Functions' 256 KiB state output (patch 5, engine/moto_patches/stepfunctions.py).

The definition before the ResultWriter (commit f392d37) gathered every child's result into the Classify
map's output (about 76 bytes a batch). Run once on these same 4,100 batches, it FAILED with
States.DataLimitExceeded: "The result of Map state 'Classify' has 311600 bytes, over the 262144-byte
payload quota" (docs/engine/at-scale.md). With the results written to S3, the Map's output is
its small ResultWriterDetails whatever the batch count.

Marked `load`: the run takes minutes on two cores (see docs/engine/at-scale.md for the figures of one run).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import counted_rows, output_of, recount, stored_counts

pytestmark = [pytest.mark.workflow, pytest.mark.load]

BATCHES = 4_100  # batch size 1: one child execution per image
CONCURRENCY = 8


@pytest.mark.timeout(3600)
def test_more_than_4000_batches_succeed_with_exact_counts(
    demo_model: Any, demo_model_forms: Any, held_out_digits: list[Any]
) -> None:
    from engine.local_engine import LocalConfig, LocalEngine
    from tests.workflow.test_limits import publish_model

    with LocalEngine(LocalConfig(name="scale", batch_size=1, max_concurrency=CONCURRENCY)) as engine:
        publish_model(engine, demo_model, demo_model_forms)
        s3 = engine.client("s3")
        # A backlog from before the stack: no upload events (the reconciliation sweep finds it), and
        # uploads without the S3 -> EventBridge -> SQS path go several times faster on moto.
        s3.put_bucket_notification_configuration(Bucket=engine.config.bucket, NotificationConfiguration={})

        def put(n: int) -> None:
            digit = held_out_digits[n % len(held_out_digits)]
            s3.put_object(Bucket=engine.config.bucket, Key=f"incoming/{n:05d}.png", Body=digit.png)

        uploading = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(put, range(BATCHES)))
        print(f"\nuploaded {BATCHES} images in {time.perf_counter() - uploading:.0f} s")

        started = time.perf_counter()
        description = engine.run({"mode": "reconcile"}, timeout=1800)
        seconds = time.perf_counter() - started
        assert description["status"] == "SUCCEEDED", (description.get("error"), description.get("cause"))
        summary = output_of(description)
        assert summary["batches"] == BATCHES
        assert summary["images_scored"] == BATCHES and summary["images_failed"] == 0
        assert len(counted_rows(engine)) == BATCHES
        assert stored_counts(engine) == recount(engine) == summary["daily_counts"]
        assert sum(sum(day.values()) for day in summary["daily_counts"].values()) == BATCHES

        # The Classify map's output is the ResultWriter's pointer, not 4,100 results.
        history = engine.client("stepfunctions").get_execution_history(
            executionArn=description["executionArn"], reverseOrder=True, maxResults=1000)["events"]
        [exited] = [e for e in history if e["type"] == "MapStateExited"]
        map_output = exited["stateExitedEventDetails"]["output"]
        classify = json.loads(map_output)["classify"]
        assert set(classify) == {"MapRunArn", "ResultWriterDetails"}
        assert len(map_output.encode()) < 8 * 1024
        print(f"{BATCHES} batches, MaxConcurrency {CONCURRENCY}: SUCCEEDED in {seconds:.0f} s "
              f"({BATCHES / seconds:.1f} batches/s); the Map's output {len(map_output.encode())} bytes")
