"""AWS's throughput quotas on the embedded engine: which are on, their figures, token buckets and the count of
throttled requests. Each service's room enforces its own: `moto_patches/dynamodb.py` (partitions),
`moto_patches/s3.py` (prefixes), `lambda_bridge.py` (account concurrency).

A quota spec is a comma-separated list, as `--quota` and BATCHINFER_ENGINE_QUOTAS take it:
- `aws`: every quota below, at AWS's documented figure;
- `dynamodb`, `s3`, `lambda`: that service's quotas at AWS's figures;
- `SERVICE.NAME=VALUE`: one figure (the service's quotas go on), e.g. `dynamodb.partition_writes=50`.
Off by default: the engine then never throttles.

Rates are per second of the engine's time, so they are scaled like every other duration: under a time scale of
0.01 a quota of 1,000 units a second allows 100,000 a real second.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from typing import Any

from contract.resource_spec import (
    DYNAMODB_NEW_TABLE_PARTITIONS,
    DYNAMODB_PARTITION_READ_UNITS,
    DYNAMODB_PARTITION_WRITE_UNITS,
    DYNAMODB_TABLE_UNITS,
    LAMBDA_ACCOUNT_CONCURRENCY,
    S3_PREFIX_READS,
    S3_PREFIX_WRITES,
)

ENVIRONMENT_VARIABLE = "BATCHINFER_ENGINE_QUOTAS"
SERVICES = ("dynamodb", "s3", "lambda")
SYNTAX = ("aws, a service (dynamodb, s3, lambda), or SERVICE.NAME=VALUE with NAME one of "
          "dynamodb.partition_writes, dynamodb.partition_reads, dynamodb.partitions, dynamodb.table_writes, "
          "dynamodb.table_reads, s3.prefix_writes, s3.prefix_reads, lambda.concurrency")


class QuotaSpecError(ValueError):
    """A quota spec cannot be read; the message quotes it and gives the syntax."""


@dataclass(frozen=True)
class Quotas:
    """Which services throttle, and at what figures (AWS's by default)."""

    dynamodb: bool = False
    s3: bool = False
    # `lambda` is a keyword: the service's flag is `lambda_`.
    lambda_: bool = False
    # DynamoDB write / read units a second per partition, partitions per table, units a second per table.
    dynamodb_partition_writes: float = DYNAMODB_PARTITION_WRITE_UNITS
    dynamodb_partition_reads: float = DYNAMODB_PARTITION_READ_UNITS
    dynamodb_partitions: int = DYNAMODB_NEW_TABLE_PARTITIONS
    dynamodb_table_writes: float = DYNAMODB_TABLE_UNITS
    dynamodb_table_reads: float = DYNAMODB_TABLE_UNITS
    # S3 requests a second per prefix: PUT/COPY/POST/DELETE, GET/HEAD.
    s3_prefix_writes: float = S3_PREFIX_WRITES
    s3_prefix_reads: float = S3_PREFIX_READS
    # Lambda invocations running at once, in the account.
    lambda_concurrency: int = LAMBDA_ACCOUNT_CONCURRENCY

    def __bool__(self) -> bool:
        return self.dynamodb or self.s3 or self.lambda_

    @classmethod
    def parse(cls, spec: str | None) -> Quotas:
        quotas = cls()
        for text in (spec or "").split(","):
            rule = text.strip()
            if not rule:
                continue
            name, _, value = rule.partition("=")
            name = name.strip().lower()
            if name == "aws" and not value:
                quotas = replace(quotas, dynamodb=True, s3=True, lambda_=True)
            elif name in SERVICES and not value:
                quotas = replace(quotas, **{_flag(name): True})
            elif "." in name and value:
                service, _, figure = name.partition(".")
                field_name = f"{service}_{figure}"
                if service not in SERVICES or field_name not in _FIGURES:
                    raise QuotaSpecError(f"bad quota {rule!r}: unknown quota {name!r}; expected {SYNTAX}")
                changes: dict[str, Any] = {_flag(service): True, field_name: _number(value, rule, field_name)}
                quotas = replace(quotas, **changes)
            else:
                raise QuotaSpecError(f"bad quota {rule!r}: expected {SYNTAX}")
        return quotas

    def describe(self) -> list[str]:
        out = []
        if self.dynamodb:
            out.append(f"DynamoDB: {self.dynamodb_partition_writes:g} write / {self.dynamodb_partition_reads:g} read "
                       f"units a second per partition, {self.dynamodb_partitions} partitions a table, "
                       f"{self.dynamodb_table_writes:g} / {self.dynamodb_table_reads:g} a table")
        if self.s3:
            out.append(f"S3: {self.s3_prefix_writes:g} PUT/COPY/POST/DELETE and {self.s3_prefix_reads:g} GET/HEAD "
                       "a second per prefix")
        if self.lambda_:
            out.append(f"Lambda: {self.lambda_concurrency} concurrent executions")
        return out


_FIGURES = {f.name: f.type for f in fields(Quotas) if "_" in f.name and not f.name.endswith("_")}


def _flag(service: str) -> str:
    return "lambda_" if service == "lambda" else service


def _number(value: str, rule: str, field_name: str) -> float | int:
    whole = _FIGURES[field_name] == "int"
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        raise QuotaSpecError(f"bad quota {rule!r}: {value!r} is not a {'whole ' if whole else ''}number") from None
    if not number > 0 or not math.isfinite(number):
        raise QuotaSpecError(f"bad quota {rule!r}: {value!r} must be above 0")
    return number


def quotas_from_environment() -> str:
    return os.environ.get(ENVIRONMENT_VARIABLE, "")


class TokenBucket:
    """`rate` units a second of engine time, holding at most one second's worth.

    A request costing more than the bucket holds is let through when the bucket is full, leaving a debt, so
    that no request is refused for ever."""

    def __init__(self, rate: float, time_scale: float):
        self.capacity = rate
        self.rate = rate / time_scale  # units a real second
        self.tokens = rate
        self.updated = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def can_take(self, cost: float) -> bool:
        self.refill()
        return self.tokens >= min(cost, self.capacity)

    def take(self, cost: float) -> None:
        self.tokens -= cost


@dataclass
class Throttling:
    """The engine's quotas as it runs: the buckets by key and the throttled requests, by service and key."""

    quotas: Quotas = field(default_factory=Quotas)
    time_scale: float = 1.0
    buckets: dict[tuple[str, ...], TokenBucket] = field(default_factory=dict)
    throttled: Counter[tuple[str, str]] = field(default_factory=Counter)  # (service, key) -> requests
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bucket(self, key: tuple[str, ...], rate: float) -> TokenBucket:
        """The bucket of `key`; the caller holds `lock`."""
        found = self.buckets.get(key)
        if found is None:
            found = self.buckets[key] = TokenBucket(rate, self.time_scale)
        return found

    def admit(self, charges: list[tuple[tuple[str, ...], float, float]]) -> list[bool]:
        """For each (bucket key, rate, cost): whether its bucket can take the cost. All are charged only if all
        can: a request throttled anywhere consumes nothing."""
        with self.lock:
            buckets = [self.bucket(key, rate) for key, rate, _ in charges]
            fits = [b.can_take(cost) for b, (_, _, cost) in zip(buckets, charges, strict=True)]
            if all(fits):
                for b, (_, _, cost) in zip(buckets, charges, strict=True):
                    b.take(cost)
            return fits

    def count(self, service: str, key: str) -> None:
        with self.lock:
            self.throttled[(service, key)] += 1


state = Throttling()


def configure(quotas: Quotas, time_scale: float = 1.0) -> None:
    """Set the quotas for the engine that starts; buckets and counts start afresh."""
    global state
    state = Throttling(quotas=quotas, time_scale=time_scale)


def throttled() -> dict[str, int]:
    """Throttled requests so far, by service (dynamodb, s3, lambda)."""
    with state.lock:
        totals: Counter[str] = Counter()
        for (service, _), n in state.throttled.items():
            totals[service] += n
        return {service: totals[service] for service in SERVICES}


def throttled_by_key() -> dict[tuple[str, str], int]:
    """Throttled requests so far, by (service, key): a table's partition, a bucket's prefix, the account."""
    with state.lock:
        return dict(state.throttled)
