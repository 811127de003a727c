"""SQS: what the embedded engine changes in moto's SQS (fixes 11 and 15).

A quota moto does not check:
11. An SQS message counts its attributes as well as its body against the queue's MaximumMessageSize
    (moto counted the body's characters only).

15. SQS SendMessage, ReceiveMessage and DeleteMessage stay cheap as a queue grows. moto built all
    of a queue's attributes (three counts over every message, each reading the clock per message)
    for every message sent, and three times for every message received (its retention check), and
    deleted a message in two passes over the queue: a queue of 3,000 upload events took minutes to
    drain 10 at a time, and the listing step of a 3,000-image demo ran into its time budget. The
    retention is read from the queue, the counts read the clock once, and a delete is one pass.
"""

from __future__ import annotations

from typing import Any


def _sqs_message_bytes(body: str, attributes: dict[str, Any] | None) -> int:
    size = len(body.encode())
    for name, attribute in (attributes or {}).items():
        value = attribute.get("StringValue") or attribute.get("BinaryValue") or ""
        size += len(name.encode()) + len(str(attribute.get("DataType", "")).encode())
        size += len(value) if isinstance(value, bytes) else len(str(value).encode())
    return size


def sqs_message_size() -> None:
    """Fix 11: a message's body and attributes, in bytes, within the queue's MaximumMessageSize."""
    from moto.sqs.exceptions import InvalidParameterValue
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.send_message, "_sized", False):
        return
    send_message, send_message_batch = SQSBackend.send_message, SQSBackend.send_message_batch

    def check(queue: Any, body: str, attributes: dict[str, Any] | None) -> None:
        limit = int(queue.maximum_message_size)
        if _sqs_message_bytes(body, attributes) > limit:
            raise InvalidParameterValue(
                f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )

    def checked_send_message(self: Any, queue_name: str, message_body: str, *args: Any, **kwargs: Any) -> Any:
        check(self.get_queue(queue_name), message_body, kwargs.get("message_attributes", args[0] if args else None))
        return send_message(self, queue_name, message_body, *args, **kwargs)

    def checked_send_message_batch(self: Any, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
        queue = self.get_queue(queue_name)
        for entry in entries.values():
            check(queue, entry.get("MessageBody", ""), entry.get("MessageAttributes"))
        return send_message_batch(self, queue_name, entries)

    checked_send_message._sized = True  # type: ignore[attr-defined]
    SQSBackend.send_message = checked_send_message  # type: ignore[method-assign]
    SQSBackend.send_message_batch = checked_send_message_batch  # type: ignore[method-assign]


def sqs_costs_stay_flat_as_a_queue_grows() -> None:
    """Fix 15: a message's retention check reads one attribute, the counts read the clock once, a delete
    is one pass over the queue."""
    from moto.core.utils import unix_time, unix_time_millis
    from moto.sqs import models
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    backend, queue_class = models.SQSBackend, models.Queue
    if getattr(backend.is_message_valid_based_on_retention_period, "_scaled", False):
        return

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()  # what Message.visible and Message.delayed each read anew
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed_count(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible_count(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return  # deleted already: deleting again is not an error
        kept, found = [], False
        for message in self._messages:
            # Message.had_receipt_handle, without building a list of handles for every message.
            if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                found = True
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
            else:
                kept.append(message)
        if not found:
            raise ReceiptHandleIsInvalid()
        self._messages = kept

    is_message_valid_based_on_retention_period._scaled = True  # type: ignore[attr-defined]
    backend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period)
    queue_class.messages = property(messages)  # type: ignore[assignment,method-assign]
    queue_class.approximate_number_of_messages_delayed = property(delayed_count)  # type: ignore[assignment,method-assign]
    queue_class.approximate_number_of_messages_not_visible = property(  # type: ignore[assignment,method-assign]
        not_visible_count)
    queue_class.delete_message = delete_message  # type: ignore[method-assign]
