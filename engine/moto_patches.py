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
