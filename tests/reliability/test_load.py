"""Load: ten thousand images through one score run of the embedded engine, with memory held flat."""

from __future__ import annotations

import ctypes
import gc
import json
import os
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import counted_rows, output_of, recount, stored_counts

pytestmark = [pytest.mark.reliability, pytest.mark.load]

IMAGES = 10_000
WARM_UP = 256
# The embedded AWS keeps everything in this process: S3 objects, three DynamoDB rows per image,
# execution histories. Measured at about 90-100 KB per image, with TF-Lite and with Keras alike;
# in AWS that data lives in S3 and DynamoDB, not in any function. So the process may grow with
# the data, up to this much per image, and batchinfer's own code may not grow at all.
MAX_ENGINE_KB_PER_IMAGE = 150
MAX_OWN_CODE_GROWTH_MB = 5
OWN_CODE = ("*/lambdas/*", "*/inference_image/*", "*/workflow/*")
TRACED = 1536
# Where to keep the figures of a run (for docs/reliability/index.md), when set.
REPORT = os.environ.get("BATCHINFER_LOAD_REPORT")


def _trim() -> None:
    """Hand freed heap back to the system (glibc keeps it per thread arena otherwise), so that
    RSS shows the memory held, not the allocator's cache of what was freed."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mb(trim: bool = True) -> float:
    if trim:
        _trim()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssSampler:
    """Samples this process's resident memory on a thread while a run goes on."""

    def __init__(self, every: float = 0.5):
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - started, rss_mb()))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max(mb for _, mb in self.samples)


def own_code_growth_mb(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> float:
    """Memory still held after the run that was allocated by batchinfer's own code."""
    only_ours = [tracemalloc.Filter(True, pattern) for pattern in OWN_CODE]
    differences = after.filter_traces(only_ours).compare_to(before.filter_traces(only_ours), "filename")
    return sum(d.size_diff for d in differences) / 2**20


def upload_many(engine: Any, bodies: list[bytes], prefix: str, count: int) -> None:
    s3 = engine.client("s3")

    def put(n: int) -> None:
        s3.put_object(Bucket=engine.config.bucket, Key=f"{prefix}{n:05d}.png", Body=bodies[n % len(bodies)])

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, range(count)))


def test_ten_thousand_images_in_one_run_with_flat_memory(held_out_digits: list[Any], demo_model: Any) -> None:
    from demo import digits
    from engine.local_engine import LocalConfig, LocalEngine
    from lambdas.model_registry import ModelRegistry

    bodies = [d.png for d in held_out_digits]
    started_mb = rss_mb()
    with LocalEngine(LocalConfig(name="load", batch_size=128, max_concurrency=2)) as engine:
        registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
        registry.promote("v1")

        # A backlog with no upload events, scored by a reconciliation run (its sweep finds the versions):
        # the event path is off, or its queues would hold ten thousand messages (that path is exercised
        # in tests/workflow and test_concurrency.py).
        engine.client("s3").put_bucket_notification_configuration(
            Bucket=engine.config.bucket, NotificationConfiguration={})

        # Warm-up: the model loaded, the interpreter's and the bridge's first-use costs paid.
        upload_many(engine, bodies, "incoming/warm-up/", WARM_UP)
        warm = engine.run({"mode": "reconcile"}, timeout=600)
        assert warm["status"] == "SUCCEEDED" and output_of(warm)["images_scored"] == WARM_UP

        upload_it = time.perf_counter()
        upload_many(engine, bodies, "incoming/load/", IMAGES)
        upload_seconds = time.perf_counter() - upload_it
        baseline_mb = rss_mb()
        untrimmed_baseline = rss_mb(trim=False)
        with RssSampler() as sampler:
            run_started = time.perf_counter()
            description = engine.run({"mode": "reconcile", "prefix": "incoming/load/"}, timeout=1800)
            run_seconds = time.perf_counter() - run_started
        untrimmed_end = rss_mb(trim=False)
        end_mb = rss_mb()

        assert description["status"] == "SUCCEEDED", description
        summary = output_of(description)
        assert summary["images_scored"] == IMAGES and summary["images_failed"] == 0
        assert summary["batches"] == -(-IMAGES // 128)
        # Its result files: a file per batch, one line per image, listed by the Glue table's index file.
        s3, bucket = engine.client("s3"), engine.config.bucket
        index = s3.get_object(Bucket=bucket, Key=f"results-index/predictions/{summary['run_id']}.txt")["Body"]
        files = index.read().decode().split()
        assert len(files) == summary["batches"] and summary["results"]["predictions"] in files[0]
        assert sum(s3.get_object(Bucket=bucket, Key=uri.split("/", 3)[3])["Body"].read().count(b"\n")
                   for uri in files) == IMAGES

        # A further run, traced (tracemalloc slows the run and takes memory of its own, so the
        # long run above is not traced): what batchinfer's own code still holds afterwards.
        upload_many(engine, bodies, "incoming/traced/", TRACED)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        traced = engine.run({"mode": "reconcile", "prefix": "incoming/traced/"}, timeout=1800)
        gc.collect()
        own_growth_mb = own_code_growth_mb(before, tracemalloc.take_snapshot())
        tracemalloc.stop()
        assert output_of(traced)["images_scored"] == TRACED

        total = IMAGES + WARM_UP + TRACED
        assert len(counted_rows(engine)) == total
        assert stored_counts(engine) == recount(engine)
        assert sum(sum(day.values()) for day in stored_counts(engine).values()) == total

    growth_kb_per_image = round(1024 * (max(sampler.peak, end_mb) - baseline_mb) / IMAGES, 1)
    figures = {
        "images": IMAGES,
        "batch_size": 128,
        "max_concurrency": 2,
        "upload_seconds": round(upload_seconds, 1),
        "run_seconds": round(run_seconds, 1),
        "images_per_second": round(IMAGES / run_seconds, 1),
        "rss_mb": {"process_start": round(started_mb), "after_warm_up_and_upload": round(baseline_mb),
                   "peak": round(sampler.peak), "end": round(end_mb)},
        "growth_mb": round(max(sampler.peak, end_mb) - baseline_mb),
        "growth_kb_per_image": growth_kb_per_image,
        "own_code_growth_mb": {"images": TRACED, "mb": round(own_growth_mb, 3)},
        "untrimmed_rss_mb": {"after_warm_up_and_upload": round(untrimmed_baseline), "end": round(untrimmed_end)},
    }
    if REPORT:
        Path(REPORT).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    assert growth_kb_per_image < MAX_ENGINE_KB_PER_IMAGE, figures
    assert own_growth_mb < MAX_OWN_CODE_GROWTH_MB, figures
