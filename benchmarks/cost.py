"""Cost of one million images on AWS, from the time per image measured here and the list prices
in prices.json (the only place prices live)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).with_name("prices.json")
MILLION = 1_000_000
# What the deployment configures, and what the comparison assumes for the seed's function.
CLASSIFY_MEMORY_MB = 3008
SEED_MEMORY_MB = 3008
# A Distributed Map child runs ClassifyBatch (a Task) and ends: the execution start and the Task
# count as transitions; a retry or a caught failure adds more, which is not modelled here.
TRANSITIONS_PER_CHILD = 2
PARENT_TRANSITIONS_PER_RUN = 6  # RouteByMode, ListNewVersions, AnythingToScore, Classify, Aggregate, end
IMAGES_PER_RUN = 10_000  # a nightly run's size, to spread the parent's transitions over images
# DynamoDB: an item up to 1 KB costs 1 WRU in a plain write and 2 WRU in a transaction.
TRANSACTION_WRU = 2


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _lambda(prices: dict[str, Any], seconds: float, memory_mb: int, requests: float) -> dict[str, float]:
    gb_seconds = seconds * memory_mb / 1024
    return {
        "lambda_compute": gb_seconds * prices["lambda"]["per_gb_second"],
        "lambda_requests": requests / MILLION * prices["lambda"]["per_million_requests"],
    }


def ours(
    prices: dict[str, Any],
    seconds_per_image: float,
    batch_size: int,
    counter_updates_per_batch: float,
    children: str,
) -> dict[str, Any]:
    """One million images in batches of `batch_size`; `children` is STANDARD or EXPRESS."""
    batches = math.ceil(MILLION / batch_size)
    cost = _lambda(prices, seconds_per_image * MILLION, CLASSIFY_MEMORY_MB, batches)
    parent = PARENT_TRANSITIONS_PER_RUN * MILLION / IMAGES_PER_RUN
    standard = prices["stepfunctions_standard"]["per_thousand_state_transitions"] / 1000
    if children == "STANDARD":
        cost["stepfunctions"] = (parent + batches * TRANSITIONS_PER_CHILD) * standard
    else:
        express = prices["stepfunctions_express"]
        child_seconds = seconds_per_image * batch_size
        gb_seconds = batches * child_seconds * express["memory_billing_mb"] / 1024
        cost["stepfunctions"] = (
            parent * standard
            + batches / MILLION * express["per_million_requests"]
            + gb_seconds * express["per_gb_second"]
        )
    # Per image: the prediction and its COUNTED marker, both in a transaction; per batch: the
    # counter shards it increments (in the same transaction) and the batch's result row.
    wru = MILLION * 2 * TRANSACTION_WRU + batches * (counter_updates_per_batch * TRANSACTION_WRU + 1)
    cost["dynamodb"] = wru / MILLION * prices["dynamodb_on_demand"]["per_million_write_request_units"]
    cost["s3"] = MILLION / 1000 * prices["s3_standard"]["per_thousand_get_requests"]
    return _total(cost, {"lambda_requests": batches, "write_request_units": wru, "children": children})


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
