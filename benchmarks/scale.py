"""The listing at scale: the nightly listing step's wall time, S3 requests and peak memory as the
bucket's history grows, for the listing as it was (every ListObjectVersions page, a checkpoint) and
for the ingest ledger; and both projected to a bucket of 100M versions.

S3 is a fake that pages like S3 (1,000 versions a page, delete markers left out) and sleeps a fixed
latency per request: histories of a million versions are too large for moto. The ledger side (the
ingest queue, the ledger and the predictions' markers) is the in-memory stores of lambdas/fakes.py
and lambdas/ingest_fakes.py, sleeping a fixed latency per DynamoDB or SQS request they stand for.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from contract.settings import Settings
from lambdas.fakes import InMemoryPredictionStore
from lambdas.ingest_fakes import InMemoryIngestLedger, InMemoryReconciliationState, InMemoryUploadEventQueue
from lambdas.listing import list_new_versions
from lambdas.manifests import write_manifest
from lambdas.records import ImageVersion, Prediction, parse_timestamp
from lambdas.steps import ListNewVersionsRequest
from lambdas.stores import PredictionStore, VersionPage

# S3: Amazon's performance guidelines give 100-200 ms first-byte latency for small requests; a
# page of ListObjectVersions is taken at the low end, 100 ms, as are HeadObject and PutObject. A
# page of a large versioned prefix can take far longer, so the old listing's figures here are, if
# anything, kind to it.
S3_REQUEST_SECONDS = 0.100
# DynamoDB and SQS: single-digit milliseconds in AWS; 10 ms a request here.
DB_REQUEST_SECONDS = 0.010
PAGE_SIZE = 1000
LAMBDA_LIMIT_SECONDS = 900
LISTING_TIMEOUT_SECONDS = 900  # ListNewVersions' deployed timeout (infra/constructs/functions.py)
HISTORY_EVENTS_LIMIT = 25_000
EVENTS_PER_SWEEP_INVOCATION = 7  # Task entered/scheduled/started/succeeded/exited, Choice entered/exited
FULL: dict[str, Any] = {"histories": (10_000, 100_000, 1_000_000), "new": 1_000, "sweep_history": 30_000}
SMOKE: dict[str, Any] = {"histories": (1_000, 2_000, 4_000), "new": 20, "sweep_history": 3_000}
PROJECT_HISTORY, PROJECT_NEW = 100_000_000, 10_000
BUCKET = "scale-images"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


class PagedHistory:
    """An ImageSource over `history` old versions and `new` newer ones, generated as they are read:
    keys in order, 1,000 a page, a latency per request, every request counted."""

    def __init__(self, history: int, new: int):
        self.history, self.new = history, new
        self.requests: Counter[str] = Counter()
        self.page_size = PAGE_SIZE

    def version(self, n: int) -> ImageVersion:
        # The history is a year old or more; the new versions came in the last day.
        when = START + timedelta(seconds=n) if n < self.history else START + timedelta(days=400, seconds=n)
        return ImageVersion(BUCKET, f"incoming/{n:010d}.jpg", f"v{n:010d}", when.isoformat(), 50_000)

    def _request(self, name: str) -> None:
        self.requests[name] += 1
        time.sleep(S3_REQUEST_SECONDS)

    def version_pages(self, bucket: str, prefix: str, cursor: dict[str, str] | None = None) -> Iterator[VersionPage]:
        total = self.history + self.new
        start = int(cursor["key_marker"][len("incoming/"):-4]) + 1 if cursor else 0
        for first in range(start, total, self.page_size):
            self._request("ListObjectVersions")
            versions = [self.version(n) for n in range(first, min(first + self.page_size, total))]
            last = first + self.page_size >= total
            yield VersionPage(versions, None if last else {"key_marker": versions[-1].key,
                                                           "version_id_marker": versions[-1].version_id})

    def list_versions(self, bucket: str, prefix: str) -> Iterator[ImageVersion]:
        for page in self.version_pages(bucket, prefix):
            yield from page.versions

    def head(self, bucket: str, key: str, version_id: str | None = None) -> ImageVersion | None:
        self._request("HeadObject")
        return self.version(int(key[len("incoming/"):-4]))

    def write_json(self, bucket: str, key: str, value: Any) -> None:
        self._request("PutObject")


def listing_as_it_was(settings: Settings, source: PagedHistory, predictions: PredictionStore,
                      checkpoint: str) -> dict[str, Any]:
    """The nightly listing before the ingest ledger (lambdas/listing.py until then): every page of
    ListObjectVersions under the prefix; the checkpoint, less an hour, keeps the older versions out
    of the look-ups, not out of the listing."""
    floor = parse_timestamp(checkpoint) - timedelta(seconds=settings.checkpoint_overlap_seconds)
    candidates = [v for v in source.list_versions(settings.bucket, settings.images_prefix) if v.captured_at() > floor]
    done = predictions.ledger([c.image_id for c in candidates])
    new = sorted((c for c in candidates if c.image_id not in done), key=lambda c: (c.last_modified, c.key))
    return write_manifest("old-listing", new, settings, source)  # type: ignore[arg-type]


def _event(version: ImageVersion) -> str:
    from engine.s3_events import object_created

    return json.dumps(object_created(version.bucket, version.key, version.version_id))


def _wait(requests: int) -> None:
    time.sleep(DB_REQUEST_SECONDS * requests)


class SlowLedger(InMemoryIngestLedger):
    def record(self, versions: Sequence[ImageVersion], seen_by: str) -> None:
        _wait(math.ceil(len(versions) / 25))  # BatchWriteItem
        super().record(versions, seen_by)

    def remove(self, image_ids: Sequence[str]) -> None:
        _wait(math.ceil(len(image_ids) / 25))
        super().remove(image_ids)

    def pages(self, shard: str, page_size: int = 500) -> Iterator[list[ImageVersion]]:
        _wait(1)  # a Query, and one more per further page
        for page in super().pages(shard, page_size):
            yield page
            _wait(1)


class SlowQueue(InMemoryUploadEventQueue):
    def receive(self) -> list[dict[str, Any]]:
        _wait(1)
        return super().receive()

    def delete(self, messages: Sequence[dict[str, Any]]) -> None:
        _wait(math.ceil(len(messages) / 10))  # DeleteMessageBatch
        super().delete(messages)


class SlowPredictions(InMemoryPredictionStore):
    def get_many(self, keys: list[dict[str, str]], projection: str | None = None) -> Iterator[dict[str, Any]]:
        _wait(math.ceil(len(keys) / 100))  # BatchGetItem
        return super().get_many(keys, projection)


class LedgerSide:
    """The ingest queue, the ledger and the predictions in memory, each request paying the latency."""

    def __init__(self) -> None:
        self.settings = Settings(bucket=BUCKET, predictions_table="predictions", counts_table="counts",
                                 failures_table="failures", state_table="state", model_registry="s3://unused",
                                 ledger_table="ledger", ingest_queue_url="memory://ingest")
        self.predictions = SlowPredictions()
        self.ledger = SlowLedger()
        self.uploads = SlowQueue()
        self.sweeps = InMemoryReconciliationState()

    def last_night(self, versions: list[ImageVersion]) -> None:
        """The steady state: last night's versions are in the ledger and were counted since."""
        InMemoryIngestLedger.record(self.ledger, versions, seen_by="event")
        self.predictions.write([Prediction(v, "a", 1.0, {"a": 1.0}, "m1", "last-night", "b", v.last_modified[:10])
                                for v in versions])

    def announce(self, versions: list[ImageVersion]) -> None:
        for version in versions:
            self.uploads.send(_event(version))


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measured(call: Any) -> tuple[Any, float, float]:
    """The call's result, wall seconds, and how far the process's RSS rose above where it started
    (sampled every 5 ms by a thread: tracemalloc would slow the step six-fold)."""
    baseline = peak = _rss_mb()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.005):
            peak = max(peak, _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        result = call()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        peak = max(peak, _rss_mb())
    return result, seconds, peak - baseline


def measure_one(history: int, new: int) -> dict[str, Any]:
    source = PagedHistory(history, new)
    new_versions = [source.version(n) for n in range(history, history + new)]
    figures: dict[str, Any] = {"history": history, "new": new}
    with contextlib.nullcontext(LedgerSide()) as side:
        # As it was: the checkpoint of last night's run sits just before tonight's versions.
        checkpoint = (parse_timestamp(new_versions[0].last_modified) - timedelta(hours=2)).isoformat()
        result, seconds, peak = _measured(lambda: listing_as_it_was(side.settings, source, side.predictions,
                                                                    checkpoint))
        assert result["images"] == new
        figures["as_it_was"] = {"seconds": round(seconds, 2), "s3_requests": dict(source.requests),
                                "s3_request_count": sum(source.requests.values()), "peak_mb": round(peak, 1)}
    source.requests.clear()
    with contextlib.nullcontext(LedgerSide()) as side:
        side.last_night([source.version(n) for n in range(history - new, history)])
        side.announce(new_versions)
        request = ListNewVersionsRequest(run_id="nightly")
        result, seconds, peak = _measured(lambda: list_new_versions(
            request, side.settings, source, side.predictions, side.ledger, side.uploads))  # type: ignore[arg-type]
        assert result.images == new and result.already_done == new, result
        figures["ledger"] = {"seconds": round(seconds, 2), "s3_requests": dict(source.requests),
                             "s3_request_count": sum(source.requests.values()), "peak_mb": round(peak, 1)}
    return figures


def measure_sweep(history: int) -> dict[str, Any]:
    """One reconciliation invocation's cost per page, to project a sweep of the whole bucket."""
    from lambdas.reconciliation import ReconcileRequest, reconcile_versions

    source = PagedHistory(history, 0)
    side = LedgerSide()
    side.sweeps.record_sweep(f"{BUCKET}/incoming/", (START + timedelta(days=300)).isoformat(), "last-week")
    result, seconds, peak = _measured(lambda: reconcile_versions(
        ReconcileRequest("sweep"), side.settings, source, side.predictions, side.ledger,  # type: ignore[arg-type]
        side.sweeps))  # type: ignore[arg-type]
    assert result["done"]
    return {"history": history, "pages": result["pages"], "seconds": round(seconds, 2),
            "seconds_per_page": round(seconds / result["pages"], 4), "peak_mb": round(peak, 1)}


def measure(smoke: bool = False) -> dict[str, Any]:
    from lambdas.observability import logger

    logger.setLevel("WARNING")  # the functions' INFO lines would go to the table's stdout
    sizes = SMOKE if smoke else FULL
    runs = [measure_one(h, sizes["new"]) for h in sizes["histories"]]
    sweep = measure_sweep(sizes["sweep_history"])
    smallest, largest = runs[0], runs[-1]
    # Projections: the old listing grows with the history (pages), the ledger with the new versions.
    old_per_version = largest["as_it_was"]["seconds"] / (largest["history"] + largest["new"])
    old_projected = old_per_version * (PROJECT_HISTORY + PROJECT_NEW)
    ledger_projected = largest["ledger"]["seconds"] * PROJECT_NEW / largest["new"]
    budget = int(Settings.reconcile_budget_seconds)
    sweep_seconds = sweep["seconds_per_page"] * math.ceil(PROJECT_HISTORY / PAGE_SIZE)
    invocations = math.ceil(sweep_seconds / budget)
    return {
        "assumptions": {
            "s3_request_seconds": S3_REQUEST_SECONDS, "db_request_seconds": DB_REQUEST_SECONDS,
            "page_size": PAGE_SIZE, "s3": "fake, paging like S3, generated as read",
            "ledger": "in-memory queue, ledger and predictions, sleeping the latency above per request",
            "peak_memory": "rise of the process's RSS during the step, sampled every 5 ms",
        },
        "runs": runs,
        "sweep": sweep,
        "growth_10k_to_1m": {
            "as_it_was": round(largest["as_it_was"]["seconds"] / smallest["as_it_was"]["seconds"], 2),
            "ledger": round(largest["ledger"]["seconds"] / smallest["ledger"]["seconds"], 2),
        },
        "projection": {
            "history": PROJECT_HISTORY, "new": PROJECT_NEW,
            "as_it_was_seconds": round(old_projected), "ledger_seconds": round(ledger_projected, 1),
            "sweep_seconds": round(sweep_seconds), "sweep_invocations": invocations,
            "sweep_history_events": invocations * EVENTS_PER_SWEEP_INVOCATION,
            "reconcile_budget_seconds": budget,
        },
    }


def targets(scale: dict[str, Any]) -> list[dict[str, Any]]:
    growth = scale["growth_10k_to_1m"]
    p = scale["projection"]
    runs = scale["runs"]
    span = f"H {runs[0]['history']:,} -> {runs[-1]['history']:,}, N {runs[0]['new']:,}"
    return [
        {"target": f"nightly listing grows with N, not H: ledger's largest history within 2x of its smallest ({span})",
         "measured": f"ledger {growth['ledger']} x; as it was {growth['as_it_was']} x",
         "holds": growth["ledger"] <= 2.0},
        {"target": f"nightly listing at H = 100M, N = 10k within the {LAMBDA_LIMIT_SECONDS} s Lambda limit",
         "measured": f"ledger {p['ledger_seconds']} s (deployed timeout {LISTING_TIMEOUT_SECONDS} s); "
                     f"as it was {p['as_it_was_seconds']:,} s",
         "holds": p["ledger_seconds"] < min(LAMBDA_LIMIT_SECONDS, LISTING_TIMEOUT_SECONDS)},
        {"target": "reconciliation sweep of 100M versions within Lambda's and Step Functions' limits",
         "measured": f"{p['sweep_seconds']:,} s in {p['sweep_invocations']} invocations of <= "
                     f"{p['reconcile_budget_seconds']} s, ~{p['sweep_history_events']} of "
                     f"{HISTORY_EVENTS_LIMIT:,} history events",
         "holds": p["reconcile_budget_seconds"] < LAMBDA_LIMIT_SECONDS
         and p["sweep_history_events"] < HISTORY_EVENTS_LIMIT},
    ]


def table(scale: dict[str, Any]) -> list[str]:
    a = scale["assumptions"]
    lines = [f"listing at scale (S3 fake: {a['page_size']} versions a page, {a['s3_request_seconds'] * 1000:.0f} ms "
             f"a request; ledger side in memory, {a['db_request_seconds'] * 1000:.0f} ms a request):",
             f"  {'history H':>11} {'new N':>6}   {'as it was: s':>13} {'S3 req':>7} {'peak MB':>8}"
             f"   {'ledger: s':>10} {'S3 req':>7} {'peak MB':>8}"]
    for run in scale["runs"]:
        old, new = run["as_it_was"], run["ledger"]
        lines.append(f"  {run['history']:>11,} {run['new']:>6,}   {old['seconds']:>13.2f} "
                     f"{old['s3_request_count']:>7,} {old['peak_mb']:>8.1f}   {new['seconds']:>10.2f} "
                     f"{new['s3_request_count']:>7,} {new['peak_mb']:>8.1f}")
    p, s = scale["projection"], scale["sweep"]
    lines.append(f"  projected to H = {p['history']:,}, N = {p['new']:,}: as it was {p['as_it_was_seconds']:,} s, "
                 f"ledger {p['ledger_seconds']} s")
    lines.append(f"  reconciliation sweep: {s['seconds_per_page'] * 1000:.0f} ms a page over {s['history']:,} versions "
                 f"(peak {s['peak_mb']} MB) -> 100M versions in {p['sweep_seconds']:,} s, "
                 f"{p['sweep_invocations']} invocations of <= {p['reconcile_budget_seconds']} s")
    return lines
