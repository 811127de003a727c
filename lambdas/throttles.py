"""Throttled AWS requests, counted per invocation: a botocore hook on the functions' clients sees every attempt's
response, those the SDK retries silently included, and adds the throttled ones to the invocation's tally.

The tally lives in a context variable, so that batches running at once in one process (the embedded engine runs
Map children on threads sharing the clients) each count their own; work sent to a thread pool carries it along
(`carrying_context`).
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

# Error codes AWS answers a request with when it is over a rate or a throughput quota.
THROTTLE_CODES = frozenset({
    "ProvisionedThroughputExceededException",  # DynamoDB: a partition's or table's throughput
    "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottled", "RequestThrottledException",
    "RequestLimitExceeded",  # DynamoDB: the account's request rate
    "SlowDown",  # S3: a prefix's request rate (503)
    "TooManyRequestsException",  # Lambda: concurrency
})
# A transaction DynamoDB cancels because a partition had no room names this reason for the throttled actions.
TRANSACTION_THROTTLED = "ThrottlingError"
# Batch calls answer a throttled part as unprocessed, not as an error.
UNPROCESSED = ("UnprocessedItems", "UnprocessedKeys")

T = TypeVar("T")


class ThrottleTally:
    """Throttled requests of one invocation, by service (dynamodb, s3, ...); safe across its threads."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, service: str, n: int = 1) -> None:
        with self._lock:
            self._counts[service] += n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {service: n for service, n in sorted(self._counts.items()) if n}


_tally: contextvars.ContextVar[ThrottleTally | None] = contextvars.ContextVar("throttle_tally", default=None)


@contextmanager
def counting() -> Iterator[ThrottleTally]:
    """A fresh tally for the calls made inside (one invocation)."""
    tally = ThrottleTally()
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)


def current() -> dict[str, int]:
    """The throttled requests counted so far by the invocation running here; {} outside one."""
    tally = _tally.get()
    return tally.counts() if tally is not None else {}


def is_throttled(parsed: Mapping[str, Any] | None) -> bool:
    """Whether a response (botocore's parsed dict) says the request, or part of it, was throttled."""
    if not parsed:
        return False
    code = (parsed.get("Error") or {}).get("Code")
    if code in THROTTLE_CODES:
        return True
    if code == "TransactionCanceledException":
        return any((reason or {}).get("Code") == TRANSACTION_THROTTLED
                   for reason in parsed.get("CancellationReasons") or [])
    return any(parsed.get(name) for name in UNPROCESSED)


def _on_response(event_name: str, parsed_response: Mapping[str, Any] | None = None, **_: Any) -> None:
    tally = _tally.get()
    if tally is not None and is_throttled(parsed_response):
        tally.add(event_name.split(".")[1])  # response-received.<service id>.<operation>


def watch(client: Any) -> Any:
    """Count the throttled responses of this client's calls (every attempt, before the SDK retries it)."""
    client.meta.events.register("response-received", _on_response, unique_id="batchinfer-throttle-tally")
    return client


def carrying_context(function: Callable[..., T]) -> Callable[..., T]:
    """`function` to run on pool threads with the caller's context, so that their calls count in its tally."""
    context = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> T:
        return context.copy().run(function, *args, **kwargs)  # a copy each: one context runs on one thread at a time

    return run


def total(results: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The throttled requests of a run's batch results (each result's `throttled`), by service."""
    sums: Counter[str] = Counter()
    for result in results:
        for service, n in (result.get("throttled") or {}).items():
            sums[str(service)] += int(n)
    return {service: n for service, n in sorted(sums.items()) if n}
