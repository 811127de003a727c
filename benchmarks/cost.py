"""Cost of one million images on AWS, from figures measured in the run (time per image at one and two
vCPUs, the sizes of the items actually written) and the list prices in prices.json (the only place
prices live)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from contract import capacity

PRICES_FILE = capacity.PRICES_FILE
MILLION = capacity.MILLION
# The memory sizes ClassifyBatch is costed at, with the vCPUs (threads) Lambda gives them: one full
# vCPU at 1,769 MB, about 1.7 at 3,008 MB (measured here with two threads on two cores).
MEMORY_THREADS = {1769: 1, 3008: 2}
SEED_MEMORY_MB = 3008
# A Distributed Map child runs ClassifyBatch (a Task) and ends: the execution start and the Task
# count as transitions; a retry or a caught failure adds more, which is not modelled here.
TRANSITIONS_PER_CHILD = capacity.TRANSITIONS_PER_CHILD
PARENT_TRANSITIONS_PER_RUN = capacity.PARENT_TRANSITIONS_PER_SLICE  # route, list, check, map, aggregate, end
IMAGES_PER_RUN = 10_000  # a nightly run's size, to spread the parent's transitions over images
WRITE_UNIT_BYTES = capacity.WRITE_UNIT_BYTES  # DynamoDB: a plain write costs 1 WRU per KB (2 in a transaction)


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it, from its wire form ({"name": {"S": ...}, ...}): each
    attribute's name plus its value (strings and binaries their bytes, numbers about one byte per two
    digits plus one, maps and lists 3 bytes plus their elements and one byte each)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(v)
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_bytes(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(_value_bytes(x) + 1 for x in v)
    if kind in ("SS", "NS", "BS"):
        return sum(_value_bytes({kind[0]: x}) for x in v)
    raise ValueError(f"unknown DynamoDB type {kind}")


def write_units(size: int) -> int:
    """Write request units of one plain (non-transactional) write of an item of `size` bytes."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def lambda_seconds(compute: dict[int, float], classify_seconds: float) -> dict[int, float]:
    """ClassifyBatch's seconds per image at each memory size: the compute (read from memory, decode,
    forward) measured at that size's threads, plus what ClassifyBatch spends beyond its compute (S3
    reads, DynamoDB writes: waiting, not computing) as measured at two threads."""
    rest = max(0.0, classify_seconds - compute[2])
    return {memory: compute[threads] + rest for memory, threads in MEMORY_THREADS.items()}


def cheaper_memory(prices: dict[str, Any], seconds: dict[int, float]) -> dict[str, Any]:
    """The memory size with the lower compute cost per image, with the figures it was chosen on."""
    per_image = {memory: s * memory / 1024 * prices["lambda"]["per_gb_second"] for memory, s in seconds.items()}
    chosen = min(per_image, key=lambda memory: per_image[memory])
    return {"memory_mb": chosen, "seconds_per_image": {str(m): round(s, 4) for m, s in seconds.items()},
            "usd_per_million": {str(m): round(c * MILLION, 3) for m, c in per_image.items()}}


def _lambda(prices: dict[str, Any], seconds: float, memory_mb: int, requests: float) -> dict[str, float]:
    gb_seconds = seconds * memory_mb / 1024
    return {
        "lambda_compute": gb_seconds * prices["lambda"]["per_gb_second"],
        "lambda_requests": requests / MILLION * prices["lambda"]["per_million_requests"],
    }


def ours(
    prices: dict[str, Any],
    seconds_per_image: float,
    memory_mb: int,
    batch_size: int,
    writes: dict[str, float],
    children: str,
) -> dict[str, Any]:
    """One million images in batches of `batch_size`; `children` is STANDARD or EXPRESS.

    `writes`: the write units measured from the items written, per image (its COUNTED item, one plain
    conditional put) and per batch (its fold marker and its result row, plain puts). The model itself is
    the capacity plan's (contract/capacity.py), which `batchinfer plan` applies to any number of images."""
    parent = PARENT_TRANSITIONS_PER_RUN * MILLION / IMAGES_PER_RUN
    return capacity.run_cost(prices, MILLION, seconds_per_image, memory_mb, batch_size, writes, children, parent)


def seed(prices: dict[str, Any], seconds_per_image: float, counts_rows: int) -> dict[str, Any]:
    """One invocation per image; a prediction put, a scan of the counts table and a count put."""
    cost = _lambda(prices, seconds_per_image * MILLION, SEED_MEMORY_MB, MILLION)
    cost["stepfunctions"] = 0.0
    wru = MILLION * 2  # two plain puts of items under 1 KB
    # A scan reads the whole table: 0.5 RRU per 4 KB (eventually consistent), at least 0.5.
    rru = MILLION * max(0.5, 0.5 * math.ceil(counts_rows * 100 / 4096))
    dynamo = prices["dynamodb_on_demand"]
    cost["dynamodb"] = (
        wru * dynamo["per_million_write_request_units"] + rru * dynamo["per_million_read_request_units"]
    ) / MILLION
    cost["s3"] = MILLION / 1000 * prices["s3_standard"]["per_thousand_get_requests"]
    return _total(cost, {"lambda_requests": MILLION, "write_request_units": wru, "read_request_units": rru})


def _total(cost: dict[str, float], facts: dict[str, Any]) -> dict[str, Any]:
    rounded = {k: round(v, 2) for k, v in cost.items()}
    return {"usd": rounded, "total_usd": round(sum(cost.values()), 2), **facts}
