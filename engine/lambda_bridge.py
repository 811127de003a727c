"""Runs the real Python handlers when the embedded engine invokes a Lambda function.

moto's Lambda would need Docker to run a function. A botocore `before-call.lambda.Invoke`
handler, registered before any client is made, answers the call itself: it imports the
function's handler, calls it, and replies as Lambda does, including `FunctionError: Unhandled`
with `{errorType, errorMessage, stackTrace}` when the handler raises, so that Retry and Catch
see the same error names as in AWS.

It also holds each function to Lambda's limits, as deployed (contract/resource_spec.py):
- a handler still running at its timeout is answered `Sandbox.Timedout` ("Task timed out after
  N seconds"). Python cannot kill a thread, so the handler runs on its own thread: the caller
  gets the timeout at once and the thread finishes in the background, its result dropped (in
  Lambda the sandbox is frozen instead; either way nothing it returns reaches the caller);
- a request over 6 MB is refused (`RequestEntityTooLargeException`, HTTP 413) and a response
  over 6 MB fails the invocation (`Function.ResponseSizeTooLarge`), with Lambda's own messages;
- memory goes to the handler's context (`memory_limit_in_mb`); a function configured with more
  than 10,240 MB, or a timeout over 900 s, is refused when it is registered.
`time_scale` multiplies the timeouts so that tests can run them in seconds; it is 1 by default.

When the engine's quotas turn it on (`--quota lambda`, engine/throttling.py), it also holds the account's
concurrency: an invocation that finds `lambda.concurrency` invocations of any function running is refused as
Lambda refuses it, `TooManyRequestsException` (HTTP 429, reason `ConcurrentInvocationLimitExceeded`), before its
handler runs; Step Functions sees `Lambda.TooManyRequestsException`, which the definition's Retry covers.
"""

from __future__ import annotations

import importlib
import io
import json
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import botocore.handlers
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.response import StreamingBody

from contract.resource_spec import (
    LAMBDA_MAX_MEMORY_MB,
    LAMBDA_MAX_TIMEOUT_SECONDS,
    LAMBDA_MIN_MEMORY_MB,
    LAMBDA_REQUEST_BYTES,
    LAMBDA_RESPONSE_BYTES,
)
from engine import throttling

Handler = Callable[[Any, Any], Any]
# A fault hook sees (function name, event) and may raise to make that invocation fail.
FaultHook = Callable[[str, Any], None]


class FunctionConfigError(ValueError):
    """A function's memory or timeout is one Lambda would refuse; the message names the function."""


@dataclass
class FunctionSpec:
    name: str
    handler_path: str  # "package.module.function"
    memory_mb: int = 1024
    timeout_seconds: int = 900

    def __post_init__(self) -> None:
        if not LAMBDA_MIN_MEMORY_MB <= self.memory_mb <= LAMBDA_MAX_MEMORY_MB:
            raise FunctionConfigError(
                f"function {self.name}: memory {self.memory_mb} MB is outside Lambda's "
                f"{LAMBDA_MIN_MEMORY_MB}-{LAMBDA_MAX_MEMORY_MB} MB"
            )
        if not 1 <= self.timeout_seconds <= LAMBDA_MAX_TIMEOUT_SECONDS:
            raise FunctionConfigError(
                f"function {self.name}: timeout {self.timeout_seconds} s is outside Lambda's "
                f"1-{LAMBDA_MAX_TIMEOUT_SECONDS} s"
            )


@dataclass
class _Registry:
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    fault_hook: FaultHook | None = None
    invocations: list[tuple[str, float, bool]] = field(default_factory=list)  # (name, seconds, error)
    time_scale: float = 1.0
    running: int = 0  # invocations whose handler is running, against the account's concurrency
    lock: threading.Lock = field(default_factory=threading.Lock)


_registry = _Registry()
_installed = False


@dataclass
class LambdaContext:
    """What Lambda hands a handler as its context, enough for Powertools and our code."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    time_scale: float = 1.0
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds * self.time_scale

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InjectedFault(Exception):
    """An error a fault hook raises with the error name Step Functions should see, e.g.
    "Lambda.TooManyRequestsException" or "Sandbox.Timedout", which no Python class name can be."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type


def install() -> None:
    """Add the bridge to botocore's built-in handlers; clients made from now on carry it."""
    global _installed
    if not _installed:
        botocore.handlers.BUILTIN_HANDLERS.append(("before-call.lambda.Invoke", _on_invoke))
        _installed = True


def register(functions: list[FunctionSpec], fault_hook: FaultHook | None = None, time_scale: float = 1.0) -> None:
    if time_scale <= 0:
        raise ValueError(f"time_scale must be above 0, got {time_scale}")
    with _registry.lock:
        _registry.functions = {f.name: f for f in functions}
        _registry.fault_hook = fault_hook
        _registry.invocations = []
        _registry.time_scale = time_scale


def add(function: FunctionSpec) -> None:
    """One more function beside the registered ones (tests register their own handlers this way)."""
    with _registry.lock:
        _registry.functions[function.name] = function


def unregister() -> None:
    with _registry.lock:
        _registry.functions = {}
        _registry.fault_hook = None


def set_fault_hook(hook: FaultHook | None) -> None:
    _registry.fault_hook = hook


def invocations() -> list[tuple[str, float, bool]]:
    with _registry.lock:
        return list(_registry.invocations)


def _function_name(url_path: str) -> str:
    # /2015-03-31/functions/<name or ARN, URL-quoted>/invocations
    raw = unquote(url_path.split("/functions/", 1)[1].split("/invocations", 1)[0])
    if raw.startswith("arn:"):
        parts = raw.split(":")
        return parts[6] if len(parts) > 6 else raw
    return raw.split(":")[0]


def _load_handler(path: str) -> Handler:
    module, _, attribute = path.rpartition(".")
    return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


def _on_invoke(params: dict[str, Any], **kwargs: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
    name = _function_name(params.get("url_path", ""))
    spec = _registry.functions.get(name)
    if spec is None:
        return None  # not one of ours: let the call go on to moto or AWS
    body = params.get("body") or b"{}"
    request = body if isinstance(body, bytes) else body.encode()
    if len(request) > LAMBDA_REQUEST_BYTES:
        return _api_error(
            params, 413, "RequestEntityTooLargeException",
            f"Request must be smaller than {LAMBDA_REQUEST_BYTES} bytes for the InvokeFunction operation",
        )
    if not _start_invocation():
        throttling.state.count("lambda", "account")
        return _api_error(params, 429, "TooManyRequestsException", "Rate Exceeded.",
                          reason="ConcurrentInvocationLimitExceeded")
    try:
        return _invoke(params, name, spec, request)
    finally:
        with _registry.lock:
            _registry.running -= 1


def _start_invocation() -> bool:
    """Count one more running invocation; False (and nothing counted) when the account's concurrency is full."""
    quotas = throttling.state.quotas
    with _registry.lock:
        if quotas.lambda_ and _registry.running >= quotas.lambda_concurrency:
            return False
        _registry.running += 1
        return True


def _invoke(
    params: dict[str, Any], name: str, spec: FunctionSpec, request: bytes
) -> tuple[AWSResponse, dict[str, Any]]:
    event = json.loads(request)
    context = LambdaContext(
        function_name=name,
        memory_limit_in_mb=spec.memory_mb,
        invoked_function_arn=f"arn:aws:lambda:local:000000000000:function:{name}",
        timeout_seconds=spec.timeout_seconds,
        time_scale=_registry.time_scale,
    )
    started = time.perf_counter()
    outcome = _run_until_timeout(spec, event, context, spec.timeout_seconds * _registry.time_scale)
    error = outcome is None or isinstance(outcome, BaseException)
    if outcome is None:
        payload = _error_payload(
            "Sandbox.Timedout",
            f"RequestId: {context.aws_request_id} Error: Task timed out after {spec.timeout_seconds:.2f} seconds",
        )
    elif isinstance(outcome, BaseException):
        payload = _error_payload(
            outcome.error_type if isinstance(outcome, InjectedFault) else type(outcome).__name__,
            str(outcome),
            traceback.format_exception(outcome)[-5:],
        )
    else:
        payload = outcome[0]
        if len(payload) > LAMBDA_RESPONSE_BYTES:
            error = True
            payload = _error_payload(
                "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size ({LAMBDA_RESPONSE_BYTES} bytes).",
            )
    with _registry.lock:
        _registry.invocations.append((name, time.perf_counter() - started, error))
    headers = {"X-Amz-Function-Error": "Unhandled"} if error else {}
    parsed: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    if error:
        parsed["FunctionError"] = "Unhandled"
    parsed["Payload"] = StreamingBody(io.BytesIO(payload), len(payload))
    parsed["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": headers, "RetryAttempts": 0}
    response = AWSResponse(url=params.get("url", ""), status_code=200, headers=HTTPHeaders.from_dict(headers), raw=None)
    return response, parsed


def _run_until_timeout(
    spec: FunctionSpec, event: Any, context: LambdaContext, timeout: float
) -> tuple[bytes] | BaseException | None:
    """The handler's JSON result, or the error it raised, or None if it is still running at `timeout`."""
    outcome: list[tuple[bytes] | BaseException] = []

    def invoke() -> None:
        try:
            hook = _registry.fault_hook
            if hook is not None:
                hook(spec.name, event)
            outcome.append((json.dumps(_load_handler(spec.handler_path)(event, context)).encode(),))
        except Exception as exc:  # a handler's error is the function's error, as in Lambda
            outcome.append(exc)

    handler_thread = threading.Thread(target=invoke, name=f"lambda-{spec.name}", daemon=True)
    handler_thread.start()
    handler_thread.join(timeout)
    return outcome[0] if outcome else None


def _error_payload(error_type: str, message: str, stack_trace: list[str] | None = None) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message, "stackTrace": stack_trace or []}).encode()


def _api_error(
    params: dict[str, Any], status: int, code: str, message: str, reason: str | None = None
) -> tuple[AWSResponse, dict[str, Any]]:
    """Lambda's API refusing the call itself (botocore raises it as a ClientError, as from AWS)."""
    headers = {"x-amzn-ErrorType": code}
    parsed: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "Type": "User",
        "message": message,
        **({"Reason": reason} if reason else {}),
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers, "RetryAttempts": 0,
                             "RequestId": str(uuid.uuid4())},
    }
    return AWSResponse(url=params.get("url", ""), status_code=status, headers=HTTPHeaders.from_dict(headers),
                       raw=None), parsed
