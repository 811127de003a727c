"""Fixes to moto that the embedded engine needs, installed by LocalEngine.start: two to its DynamoDB,
one to its Step Functions interpreter (3).

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
3. A Distributed Map's ResultWriter reads its Parameters' paths (`"Bucket.$"`, `"Prefix.$"`) from the
   Map state's input, as in AWS. moto reads them from the list of the children's results, so a path
   into the state's input fails the Map with States.Runtime.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any


def install() -> None:
    serialize_dynamodb_requests()
    cheap_transactions()
    result_writer_reads_the_state_input()


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


def result_writer_reads_the_state_input() -> None:
    """Fix 3: evaluate the ResultWriter's Parameters against the Map state's input."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.result_writer_decl import (
        ResultWriter,
    )

    if getattr(ResultWriter._eval_body, "_state_input", False):
        return

    def _eval_body(self: Any, env: Any) -> None:
        results = env.stack.pop()
        env.stack.append(env.states.get_input())
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.append(results)
        env.stack.append(parameters)
        self.resource_eval.eval_resource(env=env)

    _eval_body._state_input = True  # type: ignore[attr-defined]
    ResultWriter._eval_body = _eval_body  # type: ignore[method-assign]
