"""Handlers that the Lambda bridge tests register: slow ones, big ones, and one that reports its context."""

from __future__ import annotations

import time
from typing import Any


def sleep_then_report(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(float(event.get("seconds", 0)))
    return {
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def return_bytes(event: dict[str, Any], context: Any) -> str:
    return "x" * int(event["size"])


def count_calls(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CALLS.append(event)
    return {"calls": len(CALLS)}


CALLS: list[Any] = []
