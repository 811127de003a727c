"""Peak memory of one ClassifyBatch invocation at a batch size, in a fresh process.

Run as `python -m benchmarks.memory BATCH_SIZE REGISTRY_DIR PHOTO...`; prints one JSON line.
The process starts the embedded engine, uploads the photos, then notes its resident memory and
restarts its peak before the classify function is imported: the peak after one invocation
(model load included, as in a new container) less that figure is what ClassifyBatch itself took;
the rest is the embedded engine (moto), which a Lambda container does not carry.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """This process's peak resident memory (VmHWM). getrusage's ru_maxrss would do, but Linux
    carries it over from the parent through fork and exec, so a small child of a large
    benchmark process reports the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Start the peak afresh from the current resident memory (Linux 4.0 and later)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def classify_once(batch_size: int, registry: str, photos: list[str]) -> dict[str, Any]:
    from engine.lambda_bridge import LambdaContext
    from engine.local_engine import LocalConfig, LocalEngine

    # The registry is a local folder here: a download from S3 would add a transient copy of the
    # model files to the peak, once per container, which is not the batch's own memory.
    config = LocalConfig(name="batchinfer-memory", extra_settings={"BATCHINFER_MODEL_REGISTRY": registry})
    with LocalEngine(config) as engine:
        s3 = engine.client("s3")
        for n in range(batch_size):
            s3.put_object(Bucket=config.bucket, Key=f"incoming/{n:04d}.jpg",
                          Body=Path(photos[n % len(photos)]).read_bytes())
        items = [
            {"bucket": config.bucket, "key": v["Key"], "version_id": v["VersionId"],
             "last_modified": v["LastModified"].isoformat(), "size": v["Size"]}
            for v in s3.list_object_versions(Bucket=config.bucket, Prefix="incoming/")["Versions"]
        ]
        peak_before = _peak_mb()
        reset = _reset_peak()
        before = _rss_mb()
        from inference_image import handler

        context = LambdaContext("batchinfer-memory-ClassifyBatch", 3008, "arn:aws:lambda:local", 900)
        result = handler.handler({"run_id": "memory", "batch": {"batch_id": "m", "items": items}}, context)
        peak = _peak_mb()
    return {
        "batch_size": batch_size,
        "scored": result["scored"],
        "rss_before_mb": round(before, 1),
        "peak_before_mb": round(peak_before, 1),
        "peak_reset": reset,
        "peak_rss_mb": round(peak, 1),
        "classify_mb": round(peak - before, 1),
    }


def measure(batch_size: int, registry: Path, photos: list[Path]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", str(batch_size), str(registry), *map(str, photos)],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"memory run at batch {batch_size} failed:\n{completed.stderr[-3000:]}")
    return dict(json.loads(completed.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    print(json.dumps(classify_once(int(sys.argv[1]), sys.argv[2], sys.argv[3:])))
