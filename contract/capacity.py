"""The capacity plan: how fast a deployment scores a backlog, which AWS quota stops it first, what it costs.

Pure arithmetic over the deployment's settings, the served model's seconds per batch, AWS's documented quotas
(here and in resource_spec) and the list prices of benchmarks/prices.json. `batchinfer plan`, `cdk synth` and
`make bench` (which holds the plan against the embedded engine) all compute it here. No AWS call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from contract.resource_spec import (
    DAILY_COUNTS,
    DYNAMODB_NEW_TABLE_PARTITIONS,
    DYNAMODB_PARTITION_WRITE_UNITS,
    DYNAMODB_TABLE_UNITS,
    FUNCTION_LIMITS,
    HISTORY_EVENTS_PER_SLICE,
    LAMBDA_ACCOUNT_CONCURRENCY,
    PREDICTIONS,
    RUN_STATE,
    S3_PREFIX_READS,
    SLICES_PER_EXECUTION,
    STATES_HISTORY_EVENTS,
)

# The list prices (data, not code: the CLI and CDK read the file, they do not import benchmarks).
PRICES_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "prices.json"

# AWS's documented throughput quotas beyond resource_spec's (checked against the AWS docs, 2026-12-07):
# Lambda adds at most 1,000 execution environments to a function every 10 seconds ("Lambda scaling behavior").
LAMBDA_SCALING_ENVIRONMENTS = 1000
LAMBDA_SCALING_SECONDS = 10
# A Distributed Map runs at most 10,000 child workflow executions at once.
MAP_MAX_CHILDREN = 10_000
# STANDARD executions' state transitions: the token bucket refills 5,000 a second in us-east-1, us-west-2 and
# eu-west-1 (800 elsewhere; new accounts start lower). EXPRESS children are not counted against it.
STATE_TRANSITIONS_PER_SECOND = 5000
# A STANDARD execution's history holds at most 25,000 events.
HISTORY_EVENTS_LIMIT = STATES_HISTORY_EVENTS

# What one run costs its parent execution: each slice (its listing, one Map Run of max_images_per_run versions,
# its reconciliation and results) adds HISTORY_EVENTS_PER_SLICE events (contract/resource_spec.py, measured on
# the engine); the run's start, routing and end about 40. The run continues in a new execution every
# SLICES_PER_EXECUTION slices, under HISTORY_MARGIN of the quota.
HISTORY_EVENTS_PER_RUN = 40
HISTORY_MARGIN = 0.8
assert HISTORY_EVENTS_PER_RUN + SLICES_PER_EXECUTION * HISTORY_EVENTS_PER_SLICE <= HISTORY_EVENTS_LIMIT * HISTORY_MARGIN

# The write layout as `make bench` measures it from the items written (2026-12-07, docs/deploying/cost.md):
# each image one COUNTED item of 664 bytes (one plain conditional put, 1 write unit, on the predictions table,
# and 1 on its by_date index, whose projection is ALL); each batch one fold marker on the counts table listing
# its images (3.3 KB at 32 images: 4 units) and one result row on the run state table (1 unit).
COUNTED_ITEM_WRITE_UNITS = 1
FOLD_MARKER_BYTES_PER_IMAGE = 105
FOLD_MARKER_BASE_BYTES = 0
BATCH_RESULT_WRITE_UNITS = 1
WRITE_UNIT_BYTES = 1024
BENCH_BATCH_SIZE = 32
# ClassifyBatch reads each image once from the images prefix.
S3_GETS_PER_IMAGE = 1

# Seconds per batch when the served version records none: ClassifyBatch on the served int8 ResNet-50 at batch
# 32 in `make bench` of 2026-12-03 (46.7 images a second: 0.685 s a batch, of which 0.52 s forward passes).
DEFAULT_SECONDS_PER_BATCH = 0.685
# What ClassifyBatch spends beyond its forward passes (reads, decoding, writes) in that run: 0.68 s / 0.52 s.
CLASSIFY_OVER_FORWARD = 1.3

# The cost model's counting (benchmarks/cost.py uses the same): a child runs ClassifyBatch and ends, two
# transitions; the parent about six a slice (route, list, check, map, aggregate, end).
TRANSITIONS_PER_CHILD = 2
PARENT_TRANSITIONS_PER_SLICE = 6
MILLION = 1_000_000


def fold_marker_write_units(batch_size: int) -> int:
    return max(1, math.ceil((FOLD_MARKER_BASE_BYTES + FOLD_MARKER_BYTES_PER_IMAGE * batch_size) / WRITE_UNIT_BYTES))


def table_write_units_per_image(batch_size: int) -> dict[str, float]:
    """Write units an image costs each table (by logical id), its share of its batch's writes included."""
    return {
        PREDICTIONS.logical_id: float(COUNTED_ITEM_WRITE_UNITS),
        DAILY_COUNTS.logical_id: fold_marker_write_units(batch_size) / batch_size,
        RUN_STATE.logical_id: BATCH_RESULT_WRITE_UNITS / batch_size,
    }


def write_units_per_image(batch_size: int = BENCH_BATCH_SIZE) -> float:
    """Every table's write units an image costs (the by_date index's are not billed apart from its table's)."""
    return sum(table_write_units_per_image(batch_size).values())


WRITE_UNITS_PER_IMAGE = round(write_units_per_image(), 2)  # 1.16 at batch 32, as `make bench` measures it


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def run_cost(prices: dict[str, Any], images: int, seconds_per_image: float, memory_mb: int, batch_size: int,
             writes: dict[str, float], children: str, parent_transitions: float) -> dict[str, Any]:
    """The AWS bill of scoring `images` in batches of `batch_size`: `children` is STANDARD or EXPRESS;
    `writes` the write units per image and per batch (measured by the bench, or this module's layout)."""
    batches = math.ceil(images / batch_size)
    gb_seconds = seconds_per_image * images * memory_mb / 1024
    cost = {
        "lambda_compute": gb_seconds * prices["lambda"]["per_gb_second"],
        "lambda_requests": batches / MILLION * prices["lambda"]["per_million_requests"],
    }
    standard = prices["stepfunctions_standard"]["per_thousand_state_transitions"] / 1000
    if children == "STANDARD":
        cost["stepfunctions"] = (parent_transitions + batches * TRANSITIONS_PER_CHILD) * standard
    else:
        express = prices["stepfunctions_express"]
        child_gb_seconds = batches * seconds_per_image * batch_size * express["memory_billing_mb"] / 1024
        cost["stepfunctions"] = (parent_transitions * standard + batches / MILLION * express["per_million_requests"]
                                 + child_gb_seconds * express["per_gb_second"])
    wru = images * writes["per_image"] + batches * writes["per_batch"]
    cost["dynamodb"] = wru / MILLION * prices["dynamodb_on_demand"]["per_million_write_request_units"]
    cost["s3"] = images * S3_GETS_PER_IMAGE / 1000 * prices["s3_standard"]["per_thousand_get_requests"]
    return {"usd": {k: round(v, 2) for k, v in cost.items()}, "total_usd": round(sum(cost.values()), 2),
            "lambda_requests": batches, "write_request_units": round(wru),
            "write_units_per_image": round(wru / images, 3) if images else 0.0, "memory_mb": memory_mb,
            "children": children}


def layout_writes(batch_size: int) -> dict[str, float]:
    """This module's write layout in the cost model's terms: units per image and per batch."""
    return {"per_image": float(COUNTED_ITEM_WRITE_UNITS),
            "per_batch": float(fold_marker_write_units(batch_size) + BATCH_RESULT_WRITE_UNITS)}


@dataclass(frozen=True)
class Deployment:
    """What the plan needs of a deployment: its settings and what the account gives it."""

    max_concurrency: int = 4
    batch_size: int = 32
    classify_memory_mb: int = FUNCTION_LIMITS["ClassifyBatch"].memory_mb
    count_shards: int = 8
    max_images_per_run: int = 100_000
    children: str = "EXPRESS"
    # Write units a second each table serves at once (by logical id): its warm throughput when set or read from
    # the table, else what a new on-demand table sustains.
    warm_writes: Mapping[str, float] = field(default_factory=dict)
    # The account's Lambda concurrency left for ClassifyBatch (GetAccountSettings' UnreservedConcurrentExecutions).
    account_concurrency: int = LAMBDA_ACCOUNT_CONCURRENCY
    # Partitioned prefixes the images are read from (S3 partitions a busy prefix by itself, over 30-60 minutes).
    image_prefixes: int = 1
    # AWS's per-partition and per-prefix figures; the bench plans the embedded engine's scaled-down quotas here.
    partition_writes: float = DYNAMODB_PARTITION_WRITE_UNITS
    prefix_reads: float = S3_PREFIX_READS

    def table_writes(self, logical_id: str) -> float:
        return self.warm_writes.get(logical_id) or NEW_TABLE_WRITES


NEW_TABLE_WRITES = DYNAMODB_NEW_TABLE_PARTITIONS * DYNAMODB_PARTITION_WRITE_UNITS  # 4,000 write units a second


@dataclass(frozen=True)
class Ceiling:
    """One limit on the images a second: a setting of the deployment or an AWS quota."""

    name: str
    kind: str  # "setting" or "quota"
    images_per_second: float
    limit: str  # the figure it comes from, in words
    service: str = ""  # the AWS service whose quota it is (lambda, stepfunctions, s3, dynamodb); "" for a setting


@dataclass(frozen=True)
class Plan:
    images: int
    seconds_per_batch: float
    seconds_source: str
    deployment: Deployment
    ceilings: tuple[Ceiling, ...]  # lowest first
    images_per_second: float
    ramp_seconds: float
    wall_seconds: float
    slices: int
    history_events: int
    executions: int
    cost: dict[str, Any]
    prices: str
    warnings: tuple[str, ...] = ()

    @property
    def binding(self) -> Ceiling:
        return self.ceilings[0]

    @property
    def next_ceiling(self) -> Ceiling | None:
        return self.ceilings[1] if len(self.ceilings) > 1 else None

    @property
    def headroom(self) -> float | None:
        """The next ceiling over the binding one: how far the binding limit could rise before another binds."""
        following = self.next_ceiling
        return following.images_per_second / self.binding.images_per_second if following else None

    @property
    def binding_quota(self) -> Ceiling:
        """The first AWS quota that binds (the binding ceiling may be a setting)."""
        return next(c for c in self.ceilings if c.kind == "quota")

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "seconds_per_batch": self.seconds_per_batch,
            "seconds_per_batch_source": self.seconds_source,
            "deployment": asdict(self.deployment),
            "images_per_second": round(self.images_per_second, 1),
            "wall_seconds": round(self.wall_seconds),
            "wall_time": duration_text(self.wall_seconds),
            "ramp_seconds": round(self.ramp_seconds, 1),
            "binding": asdict(self.binding),
            "binding_quota": asdict(self.binding_quota),
            "next": asdict(self.next_ceiling) if self.next_ceiling else None,
            "headroom": round(self.headroom, 2) if self.headroom else None,
            "ceilings": [asdict(c) for c in self.ceilings],
            "slices": self.slices,
            "history_events_per_execution": self.history_events,
            "history_events_limit": HISTORY_EVENTS_LIMIT,
            "slices_per_execution": SLICES_PER_EXECUTION,
            "executions": self.executions,
            "cost": self.cost,
            "prices": self.prices,
            "warnings": list(self.warnings),
        }


def duration_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h {minutes:02d} min"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def table_ceiling_name(logical_id: str) -> str:
    return f"DynamoDB {logical_id} writes"


def ceilings(deployment: Deployment, seconds_per_batch: float) -> list[Ceiling]:
    """Every limit on the images a second, lowest first."""
    d, batch = deployment, deployment.batch_size
    per_child = batch / seconds_per_batch  # images a second one running batch scores
    units = table_write_units_per_image(batch)
    shards = d.count_shards * d.partition_writes
    found = [
        Ceiling("max_concurrency", "setting", d.max_concurrency * per_child,
                f"{d.max_concurrency:,} batches of {batch} at {seconds_per_batch:g} s each"),
        Ceiling("Lambda account concurrency", "quota", d.account_concurrency * per_child,
                f"{d.account_concurrency:,} ClassifyBatch environments at once", "lambda"),
        Ceiling("Distributed Map children", "quota", MAP_MAX_CHILDREN * per_child,
                f"{MAP_MAX_CHILDREN:,} child executions at once", "stepfunctions"),
        Ceiling("S3 GET per prefix", "quota", d.image_prefixes * d.prefix_reads / S3_GETS_PER_IMAGE,
                f"{d.prefix_reads:,g} GET/s per partitioned prefix x {d.image_prefixes}", "s3"),
        # The by_date index's partition key is "<date>#<shard>": a backlog captured on one day writes count_shards
        # partitions of the index, whatever the table's throughput.
        Ceiling("DynamoDB by_date index partitions (one day)", "quota", shards / units[PREDICTIONS.logical_id],
                f"{d.count_shards} count shards x {d.partition_writes:,g} write units/s", "dynamodb"),
        Ceiling("DynamoDB counts partitions (one day)", "quota", shards / units[DAILY_COUNTS.logical_id],
                f"{d.count_shards} count shards x {d.partition_writes:,g} write units/s, "
                f"{units[DAILY_COUNTS.logical_id]:.3f} an image", "dynamodb"),
    ]
    for spec in (PREDICTIONS, DAILY_COUNTS, RUN_STATE):
        writes = min(d.table_writes(spec.logical_id), DYNAMODB_TABLE_UNITS)
        warm = "warm throughput" if spec.logical_id in d.warm_writes else "a new on-demand table"
        found.append(Ceiling(table_ceiling_name(spec.logical_id), "quota", writes / units[spec.logical_id],
                             f"{writes:,g} write units/s ({warm}), {units[spec.logical_id]:.3f} an image",
                             "dynamodb"))
    if d.children == "STANDARD":
        found.append(Ceiling("Step Functions state transitions", "quota",
                             STATE_TRANSITIONS_PER_SECOND / TRANSITIONS_PER_CHILD * batch,
                             f"{STATE_TRANSITIONS_PER_SECOND:,} transitions/s, {TRANSITIONS_PER_CHILD} a child",
                             "stepfunctions"))
    return sorted(found, key=lambda c: c.images_per_second)


def plan(deployment: Deployment, images: int, seconds_per_batch: float = DEFAULT_SECONDS_PER_BATCH,
         seconds_source: str = "default", prices: dict[str, Any] | None = None) -> Plan:
    if images < 1:
        raise ValueError("images must be at least 1")
    if seconds_per_batch <= 0:
        raise ValueError("seconds per batch must be greater than zero")
    prices = prices or load_prices()
    limits = ceilings(deployment, seconds_per_batch)
    rate = limits[0].images_per_second
    # Lambda adds environments at its scaling rate: reaching the running batches takes this long, during
    # which the run goes at half its rate on average.
    environments = min(deployment.max_concurrency, deployment.account_concurrency, MAP_MAX_CHILDREN)
    ramp = environments / LAMBDA_SCALING_ENVIRONMENTS * LAMBDA_SCALING_SECONDS
    wall = images / rate + ramp / 2
    slices = math.ceil(images / deployment.max_images_per_run)
    executions = math.ceil(slices / SLICES_PER_EXECUTION)
    history = HISTORY_EVENTS_PER_RUN + min(slices, SLICES_PER_EXECUTION) * HISTORY_EVENTS_PER_SLICE
    cost = run_cost(prices, images, seconds_per_batch / deployment.batch_size, deployment.classify_memory_mb,
                    deployment.batch_size, layout_writes(deployment.batch_size), deployment.children,
                    slices * PARENT_TRANSITIONS_PER_SLICE)
    result = Plan(images=images, seconds_per_batch=seconds_per_batch, seconds_source=seconds_source,
                  deployment=deployment, ceilings=tuple(limits), images_per_second=rate, ramp_seconds=ramp,
                  wall_seconds=wall, slices=slices, history_events=history, executions=executions, cost=cost,
                  prices=f"list prices as of {prices['as_of']}, {prices['region']} (benchmarks/prices.json)")
    return replace(result, warnings=tuple(warnings_of(result)))


def warnings_of(p: Plan) -> list[str]:
    """What only the account can tell, or what a first backlog of the plan's size would meet."""
    d, found = p.deployment, []
    if d.max_concurrency > d.account_concurrency:
        found.append(f"max_concurrency={d.max_concurrency:,} is above the account's Lambda concurrency "
                     f"({d.account_concurrency:,}): the extra batches are throttled and retried; raise the "
                     "account's quota or lower max_concurrency")
    for spec in (PREDICTIONS, DAILY_COUNTS, RUN_STATE):
        # The rate the table would see if it did not bind: the lowest of every other ceiling.
        name = table_ceiling_name(spec.logical_id)
        ceiling = next(c.images_per_second for c in p.ceilings if c.name == name)
        others = min(c.images_per_second for c in p.ceilings if c.name != name)
        if others > ceiling:
            needed = math.ceil(others * table_write_units_per_image(d.batch_size)[spec.logical_id])
            found.append(f"{spec.logical_id} sustains {d.table_writes(spec.logical_id):,g} write units/s at first, "
                         f"below the {needed:,} this deployment would write: a first backlog is throttled until "
                         f"the table scales (twice its peak within 30 minutes); pre-warm it with a warm throughput "
                         f"of {needed:,}")
    if p.slices > SLICES_PER_EXECUTION:
        found.append(f"{p.slices:,} slices of {d.max_images_per_run:,}: the run continues as new after "
                     f"{SLICES_PER_EXECUTION} slices ({p.executions} executions) to stay under "
                     f"{HISTORY_EVENTS_LIMIT:,} history events")
    return found


def deployment_errors(deployment: Deployment) -> list[str]:
    """Settings that cannot work, whatever the account: an error at synth."""
    d, errors = deployment, []
    if d.max_concurrency > MAP_MAX_CHILDREN:
        errors.append(f"max_concurrency={d.max_concurrency:,} is above the {MAP_MAX_CHILDREN:,} child executions "
                      "a Distributed Map runs at once")
    units = table_write_units_per_image(d.batch_size)
    for logical_id, writes in d.warm_writes.items():
        batch_units = math.ceil(d.batch_size * units.get(logical_id, 0))
        if writes < batch_units:
            errors.append(f"the warm throughput of {logical_id} ({writes:,} write units/s) is below one batch's "
                          f"{batch_units:,}: every batch would be throttled")
        elif writes < NEW_TABLE_WRITES:
            errors.append(f"the warm throughput of {logical_id} ({writes:,} write units/s) is below the "
                          f"{NEW_TABLE_WRITES:,} a new on-demand table sustains; warm throughput only raises it")
    return errors


def recommended_max_concurrency(seconds_per_batch: float = DEFAULT_SECONDS_PER_BATCH, batch_size: int = 32,
                                margin: float = 0.8) -> int:
    """The deployed default: the most batches at once that keep a new stack, with no warm throughput and an
    account at Lambda's default concurrency, below its first AWS quota with `margin`."""
    unlimited = Deployment(max_concurrency=MAP_MAX_CHILDREN, batch_size=batch_size)
    first = next(c for c in ceilings(unlimited, seconds_per_batch) if c.kind == "quota")
    return max(1, math.floor(margin * first.images_per_second * seconds_per_batch / batch_size))


def recommended_count_shards(table_writes: int = NEW_TABLE_WRITES, margin: float = 0.8) -> int:
    """Count shards whose one-day partitions of the by_date index carry `table_writes` with `margin`."""
    return math.ceil(table_writes * COUNTED_ITEM_WRITE_UNITS / (DYNAMODB_PARTITION_WRITE_UNITS * margin))


def plan_lines(p: Plan) -> list[str]:
    """The plan in a few plain lines (what `cdk synth` prints)."""
    d = p.deployment
    headroom = f"{p.headroom:.2f}x" if p.headroom else "-"
    following = p.next_ceiling.name if p.next_ceiling else "-"
    lines = [
        f"capacity plan: {p.images:,} images, max_concurrency {d.max_concurrency:,}, batches of {d.batch_size}, "
        f"{p.seconds_per_batch:.3g} s a batch ({p.seconds_source})",
        f"  {p.images_per_second:,.0f} images/s, {duration_text(p.wall_seconds)}; binds first: {p.binding.name} "
        f"({p.binding.limit}), next {following} at {headroom}",
        f"  {p.slices:,} slices of {d.max_images_per_run:,}, {p.history_events:,} of {HISTORY_EVENTS_LIMIT:,} "
        f"history events per execution, {p.executions} execution(s)",
        f"  cost ${p.cost['total_usd']:,.2f} (" + ", ".join(f"{k} {v:,.2f}" for k, v in p.cost["usd"].items())
        + f"), {p.prices}",
    ]
    return lines + [f"  warning: {w}" for w in p.warnings]
