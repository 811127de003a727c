"""DynamoDB: what the embedded engine changes in moto's DynamoDB (fixes 1, 2, 10 and 17).

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

A quota moto does not check (it does check the 400 KB item, 100 TransactWriteItems and 100
BatchGetItem keys itself):
10. BatchWriteItem takes at most 25 requests; TransactWriteItems at most 4 MB of items.

17. A new DynamoDB item's size is added up once. moto's item checks its 400 KB limit at every
    attribute it stores and adds up all the attributes stored so far each time: quadratic in the
    attributes, and about a third of a TransactWriteItems of 25 predictions (each a row of a dozen
    attributes with a map of class probabilities). Sizes are never negative, so the check at the
    last attribute was the one that decided: the total is checked once, against moto's limit, and
    an item over it is still refused with moto's error.

"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any

from contract.resource_spec import (
    DYNAMODB_BATCH_WRITE_ITEMS,
    DYNAMODB_TRANSACTION_BYTES,
)

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



def _attribute_bytes(name: str, value: dict[str, Any]) -> int:
    from moto.dynamodb.models.dynamo_type import DynamoType

    return len(name.encode()) + int(DynamoType(value).size())



def _transaction_bytes(transact_items: list[dict[str, Any]]) -> int:
    """The items a transaction writes, sized as DynamoDB sizes items (names and values)."""
    total = 0
    for entry in transact_items:
        for operation in entry.values():
            attributes = {**operation.get("Item", {}), **operation.get("Key", {}),
                          **operation.get("ExpressionAttributeValues", {})}
            total += sum(_attribute_bytes(name, value) for name, value in attributes.items())
    return total



def dynamodb_request_quotas() -> None:
    """Fix 10: BatchWriteItem's 25 requests and TransactWriteItems' 4 MB."""
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.batch_write_item, "_quota", False):
        return
    batch_write_item, transact_write_items = DynamoHandler.batch_write_item, DynamoHandler.transact_write_items

    def checked_batch_write_item(self: Any) -> Any:
        requests = sum(len(table_requests) for table_requests in self.body.get("RequestItems", {}).values())
        if requests > DYNAMODB_BATCH_WRITE_ITEMS:
            raise MockValidationException("Too many items requested for the BatchWriteItem call")
        return batch_write_item(self)

    def checked_transact_write_items(self: Any) -> Any:
        if _transaction_bytes(self.body.get("TransactItems", [])) > DYNAMODB_TRANSACTION_BYTES:
            raise MockValidationException("Transaction request cannot be larger than 4 MB")
        return transact_write_items(self)

    checked_batch_write_item._quota = True  # type: ignore[attr-defined]
    DynamoHandler.batch_write_item = checked_batch_write_item  # type: ignore[method-assign]
    DynamoHandler.transact_write_items = checked_transact_write_items  # type: ignore[method-assign]



# moto's own item limit: AWS's is 400 KB, and moto measured AWS refusing between 409 and 410 KB.
_MOTO_ITEM_BYTES = 405_000



def item_size_checked_once() -> None:
    """Fix 17: a new item's size is checked once, not once per attribute."""
    from moto.dynamodb.models import dynamo_type

    if getattr(dynamo_type.Item.__init__, "_sized_once", False):
        return

    def __init__(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        self.hash_key = hash_key
        self.range_key = range_key
        values = {key: dynamo_type.DynamoType(value) for key, value in attrs.items()}
        if sum(dynamo_type.bytesize(key) + value.size() for key, value in values.items()) > _MOTO_ITEM_BYTES:
            raise dynamo_type.ItemSizeTooLarge
        self.attrs = dynamo_type.LimitedSizeDict()  # later updates are still checked as they are set
        dict.update(self.attrs, values)

    __init__._sized_once = True  # type: ignore[attr-defined]
    dynamo_type.Item.__init__ = __init__  # type: ignore[method-assign]

