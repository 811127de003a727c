"""Fixes to moto that the embedded engine needs, installed by LocalEngine.start: two to DynamoDB, one
to Step Functions.

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
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any


def install() -> None:
    serialize_dynamodb_requests()
    cheap_transactions()
    map_runs_of_a_starting_execution()


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


def map_runs_of_a_starting_execution() -> None:
    """ListMapRuns on an execution that has just started lists no Map Run, as in AWS (fix 3).

    moto builds an execution's environment on its worker thread, so for the first moments of a
    run `exec_worker.env` is None and ListMapRuns fails with an AttributeError (a 500): the run
    console and `batchinfer show` poll runs in exactly those moments. DescribeMapRun of such a
    run is a ResourceNotFound, as for any Map Run that does not exist yet; and since moto's
    DescribeMapRun looks through every execution, one that is starting no longer breaks it for the
    others.
    """
    from moto.stepfunctions.parser.api import ResourceNotFound
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    if getattr(StepFunctionsParserBackend.list_map_runs, "_patched", False):
        return
    list_map_runs = StepFunctionsParserBackend.list_map_runs

    def has_environment(execution: Any) -> bool:
        return execution.exec_worker is not None and execution.exec_worker.env is not None

    def started(backend: Any, execution_arn: str) -> bool:
        return has_environment(backend.describe_execution(execution_arn=execution_arn))

    def patched_list(self: Any, execution_arn: str) -> dict[str, Any]:
        if not started(self, execution_arn):
            return {"mapRuns": []}
        return dict(list_map_runs(self, execution_arn))

    def patched_describe(self: Any, map_run_arn: str) -> dict[str, Any]:
        for execution in self._get_executions():
            if not has_environment(execution):
                continue
            record = execution.exec_worker.env.map_run_record_pool_manager.get(map_run_arn)
            if record is not None:
                return dict(record.describe())
        raise ResourceNotFound(f"Map Run {map_run_arn} not found")

    patched_list._patched = True  # type: ignore[attr-defined]
    StepFunctionsParserBackend.list_map_runs = patched_list  # type: ignore[method-assign]
    StepFunctionsParserBackend.describe_map_run = patched_describe  # type: ignore[method-assign]
