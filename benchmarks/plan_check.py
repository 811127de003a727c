"""The capacity plan held against the embedded engine: a backlog scored under AWS's quotas scaled down so that one
binds (DynamoDB's write units per partition), and the plan (contract/capacity.py) computed for the same settings,
the same scaled quotas and the engine's own seconds per batch, measured on an unthrottled run just before. The
plan must name the quota that bound on the engine, and its images a second must come within 25 % of the engine's.

`python -m benchmarks.plan_check [--smoke]` runs it alone; `make bench` runs it as one of its stages.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from contract import capacity
from contract.resource_spec import TABLES

TOLERANCE = 0.25
# The predictions table's four partitions at this many write units a second (AWS: 1,000): 4 x 12 = 48 images a
# second, far below what four batches at once compute on the digits model, so the table binds.
PARTITION_WRITES = 12
BOUND_QUOTAS = f"dynamodb.partition_writes={PARTITION_WRITES}"
SIZES = {False: {"warm_up": 96, "images": 720}, True: {"warm_up": 48, "images": 240}}
BATCH_SIZE = 16
MAX_CONCURRENCY = 4


def engine_deployment(quotas: Any, batch_size: int, max_concurrency: int) -> capacity.Deployment:
    """The engine's run as the plan sees a deployment: its settings and its quotas (those switched on)."""
    deployment = capacity.Deployment(max_concurrency=max_concurrency, batch_size=batch_size,
                                     max_images_per_run=100_000, children="EXPRESS")
    if quotas.dynamodb:
        table = quotas.dynamodb_partitions * quotas.dynamodb_partition_writes
        deployment = replace(deployment, partition_writes=quotas.dynamodb_partition_writes,
                                      warm_writes={t.logical_id: min(table, quotas.dynamodb_table_writes)
                                                   for t in TABLES})
    if quotas.s3:
        deployment = replace(deployment, prefix_reads=quotas.s3_prefix_reads)
    if quotas.lambda_:
        deployment = replace(deployment, account_concurrency=quotas.lambda_concurrency)
    return deployment


def compare(plan: capacity.Plan, measured_images_per_second: float, throttled: dict[str, int]) -> dict[str, Any]:
    """Does the plan hold? It names the quota that bound (the service that throttled most, and the binding
    ceiling is that service's quota), and its images a second are within TOLERANCE of the measured."""
    bound = max(throttled, key=lambda service: throttled[service]) if any(throttled.values()) else ""
    names_it = plan.binding.kind == "quota" and plan.binding.service == bound
    ratio = measured_images_per_second / plan.images_per_second
    within = abs(ratio - 1) <= TOLERANCE
    return {"planned_binding": plan.binding.name, "planned_service": plan.binding.service, "engine_bound": bound,
            "throttled": throttled, "names_the_quota": names_it, "planned_images_per_second":
            round(plan.images_per_second, 2), "measured_images_per_second": round(measured_images_per_second, 2),
            "ratio": round(ratio, 3), "within_tolerance": within, "holds": names_it and within}


def target(check: dict[str, Any]) -> dict[str, Any]:
    """The bench's `[holds]` line."""
    if "error" in check:
        return {"target": f"the capacity plan holds on the engine ({BOUND_QUOTAS})",
                "measured": f"the run failed: {check['error']}", "holds": False}
    return {"target": f"the capacity plan holds on the engine: it names the quota that binds ({BOUND_QUOTAS}) "
                      f"and its throughput is within {TOLERANCE:.0%} of the measured",
            "measured": f"plan {check['planned_binding']} at {check['planned_images_per_second']} img/s, engine "
                        f"bound by {check['engine_bound'] or 'nothing'} at {check['measured_images_per_second']} "
                        f"img/s (x{check['ratio']}); throttled {check['throttled']}",
            "holds": check["holds"]}


def _write_rate(rows: list[dict[str, Any]]) -> float:
    """Images a second at which the COUNTED items were written: the run's steady throughput, listing and
    aggregation left out. A batch stamps its items with one time before it writes them, so the images of
    every batch but the last were written between the first stamp and the last."""
    stamps = sorted(datetime.fromisoformat(str(r["created_at"])) for r in rows)
    span = (stamps[-1] - stamps[0]).total_seconds()
    last = sum(1 for stamp in stamps if stamp == stamps[-1])
    return (len(stamps) - last) / span if span > 0 else 0.0


def _upload(engine: Any, count: int, tag: str) -> None:
    from demo import digits

    held_out = digits.split()[1]
    s3 = engine.client("s3")
    for n in range(count):
        digit = held_out[n % len(held_out)]
        s3.put_object(Bucket=engine.config.bucket, Key=f"incoming/{tag}/{n:05d}.png", Body=digit.png)


def _counted(engine: Any, since: set[str]) -> list[dict[str, Any]]:
    from lambdas.stores import COUNTED, scan_all

    return [r for r in scan_all(engine.client("dynamodb"), TableName=engine.predictions_table)
            if r["sk"] == COUNTED and r["image_id"] not in since]


def run(smoke: bool = False) -> dict[str, Any]:
    from demo import digits
    from engine import lambda_bridge, throttling
    from engine.local_engine import LocalConfig, LocalEngine
    from inference_image.publishing import publish_forms
    from lambdas.model_registry import ModelRegistry

    sizes = SIZES[smoke]
    model_file, metrics = digits.trained_demo_model()
    forms = digits.demo_model_forms(model_file)
    config = LocalConfig(name="batchinfer-plan", batch_size=BATCH_SIZE, max_concurrency=MAX_CONCURRENCY)
    quotas = throttling.Quotas.parse(BOUND_QUOTAS)
    with LocalEngine(config) as engine:
        registry = ModelRegistry(config.model_registry, s3_client=engine.client("s3"))
        publish_forms(registry, "v1", model_file, digits.LABELS, metrics, forms)
        registry.promote("v1")
        # The engine's seconds per batch: ClassifyBatch's invocations in an unthrottled run.
        _upload(engine, sizes["warm_up"], "warm-up")
        before = len(lambda_bridge.invocations())
        warm = engine.run({"mode": "score"})
        assert warm["status"] == "SUCCEEDED", warm
        seconds = [s for name, s, error in lambda_bridge.invocations()[before:]
                   if name.endswith("ClassifyBatch") and not error]
        seconds_per_batch = statistics.median(seconds)  # the first batches also load the model
        scored = {r["image_id"] for r in _counted(engine, set())}
        # The backlog, under the scaled-down quota.
        _upload(engine, sizes["images"], "backlog")
        throttled_before = engine.throttled()
        throttling.configure(quotas, engine.config.time_scale)
        started = time.perf_counter()
        try:
            description = engine.run({"mode": "score"})
        finally:
            throttled = {k: v - throttled_before.get(k, 0) for k, v in engine.throttled().items()}
            throttling.configure(throttling.Quotas())
        wall = time.perf_counter() - started
        assert description["status"] == "SUCCEEDED", description
        rows = _counted(engine, scored)
    measured = _write_rate(rows)
    plan = capacity.plan(engine_deployment(quotas, BATCH_SIZE, MAX_CONCURRENCY), len(rows), seconds_per_batch,
                         "the engine's unthrottled run")
    check = compare(plan, measured, throttled)
    check.update({"images": len(rows), "expected_images": sizes["images"], "seconds_per_batch":
                  round(seconds_per_batch, 4), "run_seconds": round(wall, 1), "quotas": BOUND_QUOTAS,
                  "ceilings": [[c.name, round(c.images_per_second, 1)] for c in plan.ceilings[:4]]})
    check["holds"] = check["holds"] and len(rows) == sizes["images"]
    return check


def measure(smoke: bool = False) -> dict[str, Any]:
    """`run` for `make bench`: a failure of this stage is its line, not the end of the bench."""
    try:
        return run(smoke)
    except Exception as error:  # the bench's other figures stand whatever happens here
        return {"error": f"{type(error).__name__}: {str(error)[:300]}", "holds": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a smaller backlog")
    args = parser.parse_args(argv)
    check = run(smoke=args.smoke)
    line = target(check)
    print(json.dumps(check, indent=2))
    print(f"[{'holds' if line['holds'] else 'does not hold'}] {line['target']}: {line['measured']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
