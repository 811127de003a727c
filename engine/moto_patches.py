"""Fixes to moto that the embedded engine needs, installed by LocalEngine.start.

DynamoDB:

1. Requests run one at a time. Map iterations run on threads, and moto's TransactWriteItems
   deep-copies tables while other threads write to them. DynamoDB itself serializes conflicting
   writes; one lock around moto's request handling gives the same (stricter) guarantee.
2. TransactWriteItems costs what DynamoDB's does: a few items, not the whole table. moto backs up
   every table a transaction touches with `copy.deepcopy`, once per item of the transaction, so
   each transaction costs the size of the table times its items: quadratic over a run, minutes and
   gigabytes of memory at ten thousand images. The backup exists only to roll the transaction
   back. Puts and condition checks replace or read whole items, so a shallow copy of the table's
   item maps restores them exactly; a table that the transaction updates or deletes from in place
   is still copied in full (our updates go to the small counters table). The rollback restores
   the same state as before (tests/integration/test_moto_patches.py).

Step Functions:
3. A Map worker loops over its items instead of recursing. moto's workers (`_eval_pool`) call
   themselves once per item, so past ~1,000 items a worker thread dies with RecursionError.
4. A Map whose worker thread dies fails with `States.Runtime` naming the cause, instead of
   waiting forever for items that no thread will run (the run would stay RUNNING).
5. The 256 KiB payload quota where moto does not check it: a state's input, the input after
   Parameters/ItemSelector (a Task's payload, a Map child's input), a Map's gathered result
   before ResultSelector/ResultPath, and StartExecution's input (ValidationException, as AWS's
   API answers). moto already checks a state's output and a Task's result.
6. `States.ALL` does not match `States.DataLimitExceeded` or `States.Runtime`: both are terminal
   in AWS (a Retry or Catch on States.ALL does not see them); moto matched them.
7. A Parallel branch or inline Map iteration that fails with a `States.*` error passes that error
   on, as AWS does; moto rebuilt it as a custom error name, which refuses the `States.` prefix, so
   every such error became `States.Runtime`.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any


def install() -> None:
    serialize_dynamodb_requests()
    cheap_transactions()
    map_workers_loop()
    dead_map_workers_fail_the_map()
    payload_quota()
    terminal_errors_escape_states_all()
    states_errors_pass_through_branches()


_state = threading.local()


class _Backup:
    """Stands in for the `copy` module inside moto's DynamoDB backend."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        in_place = getattr(_state, "in_place", None)
        if isinstance(value, Table) and in_place is not None and id(value) in _state.made:
            return _state.made[id(value)]  # moto asks again for each item: one backup is enough
        if isinstance(value, Table) and in_place is not None and value.name not in in_place:
            backup = copy.copy(value)
            backup.items = defaultdict(dict)
            for hash_value, entry in value.items.items():
                backup.items[hash_value] = dict(entry) if isinstance(entry, dict) else entry
            _state.backups.append(backup)
            _state.made[id(value)] = backup
            return backup
        copied = copy.deepcopy(value, memo)
        if isinstance(value, Table) and in_place is not None:
            _state.backups.append(copied)
            _state.made[id(value)] = copied
        return copied


def cheap_transactions() -> None:
    """Fix 2: back up each table once per transaction, cheaply where nothing changes in place."""
    import moto.dynamodb.models as models

    backend = models.DynamoDBBackend
    if getattr(backend.transact_write_items, "_cheap", False):
        return
    original = backend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        _state.in_place = {
            op.get("TableName") for item in transact_items for kind, op in item.items() if kind in ("Update", "Delete")
        }
        _state.backups, _state.made = [], {}
        try:
            return original(self, transact_items)
        finally:
            # A table object holds cycles, so unused backups would wait for a full collection:
            # empty them now (a backup that a rollback put in place is kept, of course).
            in_use = {id(table) for table in self.tables.values()}
            for backup in _state.backups:
                if id(backup) not in in_use:
                    backup.__dict__.clear()
            _state.in_place, _state.backups, _state.made = None, [], {}

    transact_write_items._cheap = True  # type: ignore[attr-defined]
    backend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    models.copy = _Backup()  # type: ignore[assignment]


_dynamodb_lock = threading.RLock()


def serialize_dynamodb_requests() -> None:
    """Run moto's DynamoDB requests one at a time (fix 1)."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialized", False):
        return
    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _dynamodb_lock:
            return original(self)

    call_action._serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def map_workers_loop() -> None:
    """Fix 3: run each Map worker's items in a loop.

    moto's `_eval_pool` ends with a tail call to itself for the next item. The wrapper lets the
    outermost call run moto's own code and turns each inner (tail) call into the next turn of a
    loop, so the worker's logic stays moto's and its stack depth stays constant.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator import (
        distributed_iterator_worker,
    )

    for worker_class in (
        iteration_worker.IterationWorker,
        distributed_item_processor_worker.DistributedItemProcessorWorker,
        distributed_iterator_worker.DistributedIteratorWorker,
    ):
        original = worker_class.__dict__["_eval_pool"]
        if getattr(original, "_looping", False):
            continue
        worker_class._eval_pool = _looping(original)  # type: ignore[method-assign]


def _looping(original: Callable[..., None]) -> Callable[..., None]:
    def _eval_pool(self: Any, job: Any, worker_frame: Any) -> None:
        if getattr(self, "_in_pool", False):
            self._next_pool_call = (job, worker_frame)  # moto's tail call: the loop below runs it
            return
        self._in_pool = True
        try:
            call: tuple[Any, Any] | None = (job, worker_frame)
            while call is not None:
                self._next_pool_call = None
                original(self, *call)
                call = self._next_pool_call
        finally:
            self._in_pool = False

    _eval_pool._looping = True  # type: ignore[attr-defined]
    return _eval_pool


def dead_map_workers_fail_the_map() -> None:
    """Fix 4: an error that escapes a Map worker's thread ends the Map with a clear error."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        inline_iteration_component as inline,
    )

    component = inline.InlineIterationComponent
    if getattr(component._launch_worker, "_watched", False):
        return

    def _launch_worker(self: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
        worker = self._create_worker(env=env, eval_input=eval_input, job_pool=job_pool)
        thread = threading.Thread(target=_watched_worker, args=(worker, env, job_pool), daemon=True)
        inline.TMP_THREADS.append(thread)
        thread.start()
        return worker

    _launch_worker._watched = True  # type: ignore[attr-defined]
    component._launch_worker = _launch_worker  # type: ignore[method-assign]


def _watched_worker(worker: Any, env: Any, job_pool: Any) -> None:
    try:
        worker.eval()
    except BaseException as exc:  # the thread is ending: whatever it was, the Map must hear of it
        cause = (
            f"A Map worker thread of the embedded engine died with {type(exc).__name__}: {exc}; "
            "the items it had not finished can no longer run, so the Map fails instead of waiting for them."
        )
        with job_pool._mutex:
            if job_pool._worker_exception is None:
                job_pool._worker_exception = _runtime_failure(env, cause)
            job_pool._termination_event.set()
        if not isinstance(exc, Exception):
            raise


def _runtime_failure(env: Any, cause: str) -> Exception:
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    runtime = StatesErrorNameType.StatesRuntime
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=runtime),
            event_type=HistoryEventType.ExecutionFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]  # moto builds it the same way
                executionFailedEventDetails=ExecutionFailedEventDetails(error=runtime.to_name(), cause=cause)
            ),
        )
    )


PAYLOAD_QUOTA_BYTES = 256 * 1024  # Step Functions: input or output of a task, state or execution


def _payload_bytes(value: Any) -> int:
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    return len((value if isinstance(value, str) else to_json_str(value)).encode("utf-8"))


def _check_payload(env: Any, value: Any, what: str) -> None:
    size = _payload_bytes(value)
    if size > PAYLOAD_QUOTA_BYTES:
        raise _data_limit_failure(env, f"{what} has {size} bytes, over the {PAYLOAD_QUOTA_BYTES}-byte payload quota")


def _data_limit_failure(env: Any, cause: str) -> Exception:
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    limit = StatesErrorNameType.StatesStatesDataLimitExceeded
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=limit),
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]  # moto builds it the same way
                taskFailedEventDetails=TaskFailedEventDetails(error=limit.to_name(), cause=cause)
            ),
        )
    )


def payload_quota() -> None:
    """Fix 5: enforce the 256 KiB payload quota where moto does not."""
    from moto.stepfunctions import models as sfn_models
    from moto.stepfunctions.exceptions import ValidationException
    from moto.stepfunctions.parser import models as parser_models
    from moto.stepfunctions.parser.asl.component.common.parargs import Parargs
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_selector import ItemSelector
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField

    if getattr(CommonStateField._eval_body, "_quota", False):
        return

    state_body = CommonStateField._eval_body

    def state_eval_body(self: Any, env: Any) -> None:
        _check_payload(env, env.states.get_input(), f"The input of state '{self.name}'")
        state_body(self, env)

    def after(original: Callable[..., None], what: Callable[[Any], str]) -> Callable[..., None]:
        def eval_body(self: Any, env: Any) -> None:
            original(self, env)
            _check_payload(env, env.stack[-1], what(self))

        return eval_body

    def start_execution(original: Callable[..., Any]) -> Callable[..., Any]:
        def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            execution_input = kwargs.get("execution_input", args[2] if len(args) > 2 else None)
            if execution_input is not None and _payload_bytes(execution_input) > PAYLOAD_QUOTA_BYTES:
                # AWS's API model caps `input` at 262144 and answers a longer one with this error.
                raise ValidationException(
                    "1 validation error detected: Value at 'input' failed to satisfy constraint: "
                    f"Member must have length less than or equal to {PAYLOAD_QUOTA_BYTES}"
                )
            return original(self, *args, **kwargs)

        return checked

    CommonStateField._eval_body = state_eval_body  # type: ignore[method-assign]
    CommonStateField._eval_body._quota = True  # type: ignore[attr-defined]
    Parargs._eval_body = after(Parargs._eval_body, lambda _: "The input after Parameters")  # type: ignore[method-assign]
    ItemSelector._eval_body = after(  # type: ignore[method-assign]
        ItemSelector._eval_body, lambda _: "A Map child's input after ItemSelector"
    )
    StateMap._eval_execution = after(  # type: ignore[method-assign]
        StateMap._eval_execution, lambda state: f"The result of Map state '{state.name}'"
    )
    for backend in (sfn_models.StepFunctionBackend, parser_models.StepFunctionsParserBackend):
        if "start_execution" in backend.__dict__:
            backend.start_execution = start_execution(backend.__dict__["start_execution"])  # type: ignore[method-assign]


def terminal_errors_escape_states_all() -> None:
    """Fix 6: a Retry or Catch on States.ALL does not see States.DataLimitExceeded or States.Runtime."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    if getattr(ErrorEqualsDecl._eval_body, "_terminal", False):
        return
    original = ErrorEqualsDecl._eval_body
    terminal = {StatesErrorNameType.StatesStatesDataLimitExceeded, StatesErrorNameType.StatesRuntime}

    def _eval_body(self: Any, env: Any) -> None:
        error_name = env.stack[-1]
        terminal_error = isinstance(error_name, StatesErrorName) and error_name.typ in terminal
        if terminal_error and error_name not in self.error_names:
            env.stack.pop()
            env.stack.append(False)  # only an explicit ErrorEquals on the name itself matches
            return
        original(self, env)

    _eval_body._terminal = True  # type: ignore[attr-defined]
    ErrorEqualsDecl._eval_body = _eval_body  # type: ignore[method-assign]


def states_errors_pass_through_branches() -> None:
    """Fix 7: a branch's or iteration's `States.*` error keeps its name."""
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    def error_name_of(error_name: str) -> Any:
        if error_name.startswith("States."):
            try:
                return StatesErrorName.from_name(error_name)
            except ValueError:
                pass
        return CustomErrorName(error_name=error_name)

    iteration_worker.CustomErrorName = error_name_of  # type: ignore[attr-defined]
    branches_decl.CustomErrorName = error_name_of  # type: ignore[attr-defined]
