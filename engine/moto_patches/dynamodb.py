"""DynamoDB: what the embedded engine changes in moto's DynamoDB (fixes 1, 2, 10 and 17), and its throughput
quotas (18).

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

18. A partition's throughput, when the engine's quotas turn it on (`--quota dynamodb`, engine/throttling.py):
    each table has `dynamodb.partitions` partitions (4 by default: a new on-demand table sustains 4,000 write and
    12,000 read units a second, 1,000 and 3,000 a partition), an item's partition is a stable hash of its partition
    key value, and each partition and each table is a token bucket of units a second (scaled by the time scale).
    A write costs 1 unit a KB of what the request carries (2 in a transaction), a GetItem 1 (strongly consistent)
    or 0.5. Past a bucket, PutItem, UpdateItem, DeleteItem and GetItem are answered
    `ProvisionedThroughputExceededException`, TransactWriteItems is cancelled (`TransactionCanceledException`)
    with `ThrottlingError` as the reason of each action on a throttled partition and `None` for the others, and
    BatchWriteItem returns the throttled requests as UnprocessedItems (all of them: the exception). A throttled
    request consumes nothing. Query, Scan, BatchGetItem and TransactGetItems are not throttled.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from contract.resource_spec import (
    DYNAMODB_BATCH_WRITE_ITEMS,
    DYNAMODB_TRANSACTION_BYTES,
)
from engine import throttling

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


# What DynamoDB answers an on-demand table past a partition's throughput.
_THROTTLED = ("Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your "
              "table or index so please try again shortly. If exceptions persist, check if you have a hot key: "
              "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html")


def _partition(table: Any, key_or_item: dict[str, Any], partitions: int) -> str:
    """The partition of an item: a stable hash of its partition key value over the table's partitions."""
    value = json.dumps(key_or_item.get(table.hash_key_attr), sort_keys=True)
    return str(int.from_bytes(hashlib.blake2b(value.encode(), digest_size=4).digest(), "big") % partitions)


def _write_units(attributes: dict[str, Any]) -> float:
    """Write units of one item: 1 KB each, rounded up (from what the request carries)."""
    size = sum(_attribute_bytes(name, value) for name, value in attributes.items())
    return float(max(1, math.ceil(size / 1024)))


def _charges(backend: Any, table_name: str, key_or_item: dict[str, Any], units: float,
             kind: str) -> list[tuple[tuple[str, ...], float, float]]:
    """The buckets one item's request draws on: its partition's and its table's (kind "w" or "r")."""
    quotas = throttling.state.quotas
    table = backend.get_table(table_name)
    partition = _partition(table, key_or_item, quotas.dynamodb_partitions)
    per_partition = quotas.dynamodb_partition_writes if kind == "w" else quotas.dynamodb_partition_reads
    per_table = quotas.dynamodb_table_writes if kind == "w" else quotas.dynamodb_table_reads
    return [(("dynamodb", table_name, partition, kind), per_partition, units),
            (("dynamodb", table_name, "table", kind), per_table, units)]


def _throughput_exceeded(table_name: str, charges: list[tuple[tuple[str, ...], float, float]]) -> Exception:
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException

    throttling.state.count("dynamodb", f"{table_name}#{charges[0][0][2]}")
    return DynamodbException(ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException", _THROTTLED)


def partition_throughput() -> None:
    """Fix 18: DynamoDB's per-partition and per-table throughput, when the engine's quotas turn it on."""
    from moto.dynamodb.exceptions import TransactionCanceledException
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.put_item, "_throttled", False):
        return
    put_item, update_item, delete_item, get_item = (DynamoHandler.put_item, DynamoHandler.update_item,
                                                    DynamoHandler.delete_item, DynamoHandler.get_item)
    batch_write_item, transact_write_items = DynamoHandler.batch_write_item, DynamoHandler.transact_write_items

    def single(original: Callable[..., Any], kind: str, units_of: Callable[[dict[str, Any]], float]) -> Any:
        def throttled(self: Any) -> Any:
            if throttling.state.quotas.dynamodb:
                body, name = self.body, self.body["TableName"]
                charges = _charges(self.dynamodb_backend, name, body.get("Item") or body["Key"], units_of(body), kind)
                if not all(throttling.state.admit(charges)):
                    raise _throughput_exceeded(name, charges)
            return original(self)

        throttled._throttled = True  # type: ignore[attr-defined]
        return throttled

    def put_units(body: dict[str, Any]) -> float:
        return _write_units(body["Item"])

    def key_units(body: dict[str, Any]) -> float:
        return _write_units({**body["Key"], **body.get("ExpressionAttributeValues", {})})

    def read_units(body: dict[str, Any]) -> float:
        return 1.0 if body.get("ConsistentRead") else 0.5  # an item of up to 4 KB

    def throttled_transaction(self: Any) -> Any:
        if not throttling.state.quotas.dynamodb:
            return transact_write_items(self)
        actions = self.body.get("TransactItems", [])
        per_action = []
        for action in actions:
            (_, operation), = action.items()
            target = operation.get("Item") or operation["Key"]
            units = 2 * _write_units({**target, **operation.get("ExpressionAttributeValues", {})})  # transactional
            per_action.append(_charges(self.dynamodb_backend, operation["TableName"], target, units, "w"))
        fits = throttling.state.admit([charge for charges in per_action for charge in charges])
        if all(fits):
            return transact_write_items(self)
        # A transaction is cancelled as a whole; the reasons name the actions whose partition (or table) had no room.
        reasons, position, first = [], 0, None
        for action, charges in zip(actions, per_action, strict=True):
            ok = all(fits[position:position + len(charges)])
            position += len(charges)
            if not ok and first is None:
                (_, operation), = action.items()
                first = f"{operation['TableName']}#{charges[0][0][2]}"
            reasons.append((None, None, None) if ok else ("ThrottlingError", _THROTTLED, None))
        throttling.state.count("dynamodb", first or "")
        raise TransactionCanceledException(reasons)

    def throttled_batch_write(self: Any) -> Any:
        if not throttling.state.quotas.dynamodb:
            return batch_write_item(self)
        admitted: dict[str, list[Any]] = {}
        unprocessed: dict[str, list[Any]] = {}
        first = None
        for table_name, requests in self.body.get("RequestItems", {}).items():
            for request in requests:
                (kind, operation), = request.items()
                target = operation.get("Item") or operation["Key"]
                charges = _charges(self.dynamodb_backend, table_name, target, _write_units(target), "w")
                fits = all(throttling.state.admit(charges))
                (admitted if fits else unprocessed).setdefault(table_name, []).append(request)
                if not fits and first is None:
                    first = f"{table_name}#{charges[0][0][2]}"
        if unprocessed and not admitted:  # nothing could be written: DynamoDB refuses the whole call
            throttling.state.count("dynamodb", first or "")
            from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException

            raise DynamodbException(ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException", _THROTTLED)
        self.body["RequestItems"] = admitted
        result = batch_write_item(self)
        if unprocessed:
            throttling.state.count("dynamodb", first or "")
            result.result["UnprocessedItems"] = unprocessed  # type: ignore[index]  # moto's dict, typed object
        return result

    DynamoHandler.put_item = single(put_item, "w", put_units)  # type: ignore[method-assign]
    DynamoHandler.update_item = single(update_item, "w", key_units)  # type: ignore[method-assign]
    DynamoHandler.delete_item = single(delete_item, "w", key_units)  # type: ignore[method-assign]
    DynamoHandler.get_item = single(get_item, "r", read_units)  # type: ignore[method-assign]
    DynamoHandler.transact_write_items = throttled_transaction  # type: ignore[method-assign]
    DynamoHandler.batch_write_item = throttled_batch_write  # type: ignore[method-assign]
