"""Two fixes to moto's DynamoDB that the embedded engine needs, installed by LocalEngine.start.

1. Requests run one at a time. Map iterations run on threads, and moto's TransactWriteItems
   deep-copies tables while other threads write to them. DynamoDB itself serializes conflicting
   writes; one lock around moto's request handling gives the same (stricter) guarantee.
2. Transactions cost what they cost in AWS: no more than their own items. moto 5.2.5's
   `transact_write_items` deep-copies a whole table, for rollback, once for every action that
   names it: a 25-image transaction (about 53 actions) copies the predictions table 53 times, so a
   1,000-image run slows to seconds per transaction and grows to gigabytes. Here each table is
   backed up once per transaction, before any write, as moto intends; and a table that the
   transaction only puts into, deletes from or checks is backed up by copying its item index, not
   its items: Put and Delete replace or remove item objects and never change one in place, so the
   old objects are the backup. A table that an Update names is still deep-copied. The rollback
   restores the same state as before (tests/integration/test_moto_patches.py).
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

_state = threading.local()
_installed = False


def _backup(table: Any) -> Any:
    in_place: set[str] = getattr(_state, "updated_tables", set())
    if table.name in in_place or getattr(table, "stream_shard", None) is not None:
        return copy.deepcopy(table)
    clone = copy.copy(table)
    if table.has_range_key:
        clone.items = defaultdict(dict, {h: dict(r) for h, r in table.items.items()})
    else:
        clone.items = defaultdict(dict, table.items)
    return clone


def _deepcopy(value: Any, memo: Any = None) -> Any:
    backups = getattr(_state, "backups", None)
    if backups is None or type(value).__name__ != "Table":
        return copy.deepcopy(value, memo)
    if id(value) not in backups:
        backups[id(value)] = _backup(value)
    return backups[id(value)]


def install() -> None:
    serialize_dynamodb_requests()
    if not fast_transaction_rollback():
        raise RuntimeError("moto's DynamoDB backend is not the shape this engine patches: pin moto to 5.2.x")


def fast_transaction_rollback() -> bool:
    """Back each table up once per transaction (idempotent); False if moto's shape differs."""
    global _installed
    if _installed:
        return True
    from moto.dynamodb import models

    if getattr(models, "copy", None) is not copy:
        return False
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        _state.backups = {}
        _state.updated_tables = {
            op.get("TableName") for item in transact_items for kind, op in item.items() if kind == "Update"
        }
        try:
            original(self, transact_items)
        finally:
            _state.backups = None
            _state.updated_tables = set()

    models.copy = SimpleNamespace(deepcopy=_deepcopy, copy=copy.copy)  # type: ignore[assignment]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    _installed = True
    return True


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
