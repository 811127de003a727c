"""Runs the real Python handlers when the embedded engine invokes a Lambda function.

moto's Lambda would need Docker to run a function. A botocore `before-call.lambda.Invoke`
handler, registered before any client is made, answers the call itself: it imports the
function's handler, calls it, and replies as Lambda does, including `FunctionError: Unhandled`
with `{errorType, errorMessage, stackTrace}` when the handler raises, so that Retry and Catch
see the same error names as in AWS.
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

Handler = Callable[[Any, Any], Any]
# A fault hook sees (function name, event) and may raise to make that invocation fail.
FaultHook = Callable[[str, Any], None]


@dataclass
class FunctionSpec:
    name: str
    handler_path: str  # "package.module.function"
    memory_mb: int = 1024
    timeout_seconds: int = 900


@dataclass
class _Registry:
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    fault_hook: FaultHook | None = None
    invocations: list[tuple[str, float, bool]] = field(default_factory=list)  # (name, seconds, error)
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
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

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


def register(functions: list[FunctionSpec], fault_hook: FaultHook | None = None) -> None:
    with _registry.lock:
        _registry.functions = {f.name: f for f in functions}
        _registry.fault_hook = fault_hook
        _registry.invocations = []


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
    event = json.loads(body.decode() if isinstance(body, bytes) else body)
    context = LambdaContext(
        function_name=name,
        memory_limit_in_mb=spec.memory_mb,
        invoked_function_arn=f"arn:aws:lambda:local:000000000000:function:{name}",
        timeout_seconds=spec.timeout_seconds,
    )
    started = time.perf_counter()
    error = False
    try:
        hook = _registry.fault_hook
        if hook is not None:
            hook(name, event)
        result = _load_handler(spec.handler_path)(event, context)
        payload, headers = json.dumps(result).encode(), {}
        parsed: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST"}
    except Exception as exc:  # a handler's error is the function's error, as in Lambda
        error = True
        payload = json.dumps(
            {
                "errorType": exc.error_type if isinstance(exc, InjectedFault) else type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_exception(exc)[-5:],
            }
        ).encode()
        headers = {"X-Amz-Function-Error": "Unhandled"}
        parsed = {"StatusCode": 200, "ExecutedVersion": "$LATEST", "FunctionError": "Unhandled"}
    with _registry.lock:
        _registry.invocations.append((name, time.perf_counter() - started, error))
    parsed["Payload"] = StreamingBody(io.BytesIO(payload), len(payload))
    parsed["ResponseMetadata"] = {"HTTPStatusCode": 200, "HTTPHeaders": headers, "RetryAttempts": 0}
    response = AWSResponse(url=params.get("url", ""), status_code=200, headers=HTTPHeaders.from_dict(headers), raw=None)
    return response, parsed
