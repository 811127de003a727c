"""Fault plans for the embedded engine: make chosen Lambda invocations fail, time out or throttle.

A plan is a comma-separated list of rules, each `FUNCTION:KIND[:WHEN[:TIMES]]`:

- FUNCTION  a function of the state machine: ListNewVersions, BuildReplayManifest, ClassifyBatch,
            RecordBatchFailure or AggregateDailyCounts.
- KIND      error     the handler raises; Step Functions sees `InjectedError` (a States.TaskFailed)
            throttle  Lambda refuses the call; Step Functions sees `Lambda.TooManyRequestsException`
            timeout   the function runs past its time limit; Step Functions sees `Sandbox.Timedout`,
                      as it does when a Lambda function times out (a States.TaskFailed)
- WHEN      N           the first N invocations of the function (a fault that clears)
            batch-NNNNN every invocation for that batch of a run (its index in the run's manifest)
            omitted     every invocation
- TIMES     with batch-NNNNN: only the first TIMES invocations for that batch

Examples: `ClassifyBatch:throttle:2` (two throttles, then the retry goes through),
`ClassifyBatch:error:batch-00001` (that batch fails for good and is recorded as failed),
`ClassifyBatch:timeout:batch-00000:1` (one timeout, then the retry goes through).
Set it with BATCHINFER_FAULTS or `--fault` on `batchinfer demo` and `batchinfer local serve`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from contract.resource_spec import FUNCTIONS
from engine.lambda_bridge import InjectedFault

ENVIRONMENT_VARIABLE = "BATCHINFER_FAULTS"
SYNTAX = "FUNCTION:KIND[:WHEN[:TIMES]], KIND one of error, throttle, timeout; WHEN a count N or batch-NNNNN"

# What Step Functions sees for each kind, as it would see it in AWS.
KINDS: dict[str, tuple[str, str]] = {
    "error": ("InjectedError", "fault injected by the fault plan: the function raised"),
    "throttle": ("Lambda.TooManyRequestsException", "Rate Exceeded. (fault injected by the fault plan)"),
    "timeout": ("Sandbox.Timedout", "Task timed out after 900.00 seconds (fault injected by the fault plan)"),
}
_BATCH = re.compile(r"^batch-(\d{1,9})$")


class FaultSpecError(ValueError):
    """A fault rule cannot be read; the message quotes it and gives the syntax."""


@dataclass
class FaultRule:
    function: str
    kind: str
    times: int | None = None  # None: every matching invocation
    batch_index: int | None = None  # None: any batch, or a function without batches
    fired: int = 0

    def matches(self, function_name: str, event: Any) -> bool:
        if function_name != self.function and not function_name.endswith(f"-{self.function}"):
            return False
        if self.batch_index is not None:
            batch_id = _batch_id(event)
            if batch_id is None or not batch_id.endswith(f"-{self.batch_index:05d}"):
                return False
        return self.times is None or self.fired < self.times

    def describe(self) -> str:
        when = "" if self.batch_index is None else f" of batch {self.batch_index:05d}"
        times = "every invocation" if self.times is None else f"the first {self.times} invocation(s)"
        return f"{self.function}: {self.kind} on {times}{when}"


def _batch_id(event: Any) -> str | None:
    if isinstance(event, dict) and isinstance(event.get("batch"), dict):
        value = event["batch"].get("batch_id")
        return str(value) if value is not None else None
    return None


def _count(text: str, rule: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise FaultSpecError(f"bad fault {rule!r}: {text!r} is neither a count above zero nor batch-NNNNN ({SYNTAX})")
    return int(text)


def parse_rule(text: str) -> FaultRule:
    rule = text.strip()
    parts = rule.split(":")
    if len(parts) < 2 or len(parts) > 4 or not all(parts):
        raise FaultSpecError(f"bad fault {rule!r}: expected {SYNTAX}")
    function, kind = parts[0], parts[1].lower()
    if function not in FUNCTIONS:
        raise FaultSpecError(f"bad fault {rule!r}: unknown function {function!r}; choose one of {', '.join(FUNCTIONS)}")
    if kind not in KINDS:
        raise FaultSpecError(f"bad fault {rule!r}: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    parsed = FaultRule(function=function, kind=kind)
    if len(parts) >= 3:
        batch = _BATCH.match(parts[2])
        if batch:
            parsed.batch_index = int(batch.group(1))
            if len(parts) == 4:
                parsed.times = _count(parts[3], rule)
        elif len(parts) == 4:
            raise FaultSpecError(f"bad fault {rule!r}: TIMES only follows a batch-NNNNN ({SYNTAX})")
        else:
            parsed.times = _count(parts[2], rule)
    return parsed


@dataclass
class FaultPlan:
    """Installed as the Lambda bridge's fault hook; thread-safe, as Map iterations run on threads."""

    rules: list[FaultRule] = field(default_factory=list)
    injected: list[tuple[str, str, str | None]] = field(default_factory=list)  # (function, kind, batch id)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def parse(cls, specs: str | Iterable[str] | None) -> FaultPlan:
        if specs is None:
            return cls()
        texts = specs.split(",") if isinstance(specs, str) else [t for s in specs for t in s.split(",")]
        return cls(rules=[parse_rule(t) for t in texts if t.strip()])

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __call__(self, function_name: str, event: Any) -> None:
        with self._lock:
            rule = next((r for r in self.rules if r.matches(function_name, event)), None)
            if rule is None:
                return
            rule.fired += 1
            self.injected.append((rule.function, rule.kind, _batch_id(event)))
        error_type, message = KINDS[rule.kind]
        raise InjectedFault(error_type, message)

    def describe(self) -> list[str]:
        return [r.describe() for r in self.rules]
