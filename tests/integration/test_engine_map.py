"""The embedded engine holds at size: a Distributed Map of thousands of items runs to the end, and a Map
whose worker thread dies fails with a clear error instead of staying RUNNING."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.small_machines import distributed_map_of_passes, run_small_machine

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_a_distributed_map_of_thousands_of_items_per_worker_runs_to_the_end(engine: Any) -> None:
    items = 3000  # 1,500 per worker: moto's recursive worker died past ~1,000
    engine.client("s3").put_object(Bucket=engine.config.bucket, Key="many.json",
                                   Body=json.dumps([{"n": i} for i in range(items)]).encode())
    started = time.perf_counter()
    result = run_small_machine(engine, distributed_map_of_passes(engine.config.bucket, "many.json", 2))
    print(f"{items} items in {time.perf_counter() - started:.1f} s")
    assert result["status"] == "SUCCEEDED", result
    assert json.loads(result["output"]) == {"items": items}


DEAD_WORKER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from engine import moto_patches
    from engine.local_engine import LocalConfig, LocalEngine
    from tests.integration.small_machines import distributed_map_of_passes, run_small_machine

    # Fix 4 alone: moto's worker still recurses, so its thread dies with RecursionError.
    moto_patches.install = lambda: (moto_patches.serialize_dynamodb_requests(),
                                    moto_patches.dead_map_workers_fail_the_map())
    with LocalEngine(LocalConfig(name="dead-worker")) as engine:
        engine.client("s3").put_object(Bucket=engine.config.bucket, Key="many.json",
                                       Body=json.dumps([{"n": i} for i in range(1500)]).encode())
        result = run_small_machine(engine, distributed_map_of_passes(engine.config.bucket, "many.json", 1),
                                   timeout=300)
        history = engine.client("stepfunctions").get_execution_history(
            executionArn=result["executionArn"], maxResults=1000, reverseOrder=True)["events"]
        map_run_failed = [e["mapRunFailedEventDetails"] for e in history if e["type"] == "MapRunFailed"]
        print(json.dumps({"status": result["status"], "error": result.get("error"), "cause": result.get("cause"),
                          "map_run_failed": map_run_failed}))
    """
)


def test_a_map_whose_worker_thread_dies_fails_with_a_clear_error(tmp_path: Path) -> None:
    # A separate process, so that moto's recursive worker can be run without the loop fix.
    completed = subprocess.run(
        [sys.executable, "-c", DEAD_WORKER_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(completed.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "FAILED"
    assert outcome["error"] == "States.Runtime"
    assert "Map worker thread of the embedded engine died with RecursionError" in outcome["cause"]
    assert outcome["map_run_failed"][0]["error"] == "States.Runtime"
