"""DynamoDB's and SQS's quotas on the embedded engine, a test per quota: moto enforces some itself (the item
size, TransactWriteItems' 100 items, BatchGetItem's 100 keys), the engine patches the rest."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from contract.resource_spec import SQS_MESSAGE_BYTES

pytestmark = pytest.mark.integration

KIB = 1024


def counter(n: int, pad: int = 0) -> dict[str, Any]:
    item = {"pk": {"S": f"limits#{n}"}, "sk": {"S": "x"}}
    if pad:
        item["pad"] = {"S": "x" * pad}
    return item


def refused(call: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as error:
        call()
    return {"Code": str(error.value.response["Error"].get("Code")),
            "Message": str(error.value.response["Error"].get("Message"))}


def test_an_item_over_400_kb_is_refused(engine: Any) -> None:
    dynamodb, table = engine.client("dynamodb"), engine.counts_table
    error = refused(lambda: dynamodb.put_item(TableName=table, Item=counter(1, pad=401 * KIB)))
    assert error["Code"] == "ValidationException" and "Item size has exceeded" in error["Message"]
    dynamodb.put_item(TableName=table, Item=counter(1, pad=390 * KIB))


def test_a_transaction_of_more_than_100_items_is_refused(engine: Any) -> None:
    dynamodb, table = engine.client("dynamodb"), engine.counts_table
    puts = [{"Put": {"TableName": table, "Item": counter(n)}} for n in range(101)]
    error = refused(lambda: dynamodb.transact_write_items(TransactItems=puts))
    assert error["Code"] == "ValidationException" and "less than or equal to 100" in error["Message"]
    dynamodb.transact_write_items(TransactItems=puts[:100])


def test_a_transaction_over_4_mb_is_refused_and_writes_nothing(engine: Any) -> None:
    dynamodb, table = engine.client("dynamodb"), engine.counts_table
    puts = [{"Put": {"TableName": table, "Item": counter(n, pad=380 * KIB)}} for n in range(11)]  # ~4.1 MB
    error = refused(lambda: dynamodb.transact_write_items(TransactItems=puts))
    assert error == {"Code": "ValidationException", "Message": "Transaction request cannot be larger than 4 MB"}
    assert dynamodb.scan(TableName=table)["Count"] == 0
    dynamodb.transact_write_items(TransactItems=puts[:10])  # ~3.7 MB


def test_a_batch_write_of_more_than_25_items_is_refused_and_writes_nothing(engine: Any) -> None:
    dynamodb, table = engine.client("dynamodb"), engine.counts_table
    requests = [{"PutRequest": {"Item": counter(n)}} for n in range(26)]
    error = refused(lambda: dynamodb.batch_write_item(RequestItems={table: requests}))
    assert error == {"Code": "ValidationException", "Message": "Too many items requested for the BatchWriteItem call"}
    assert dynamodb.scan(TableName=table)["Count"] == 0
    dynamodb.batch_write_item(RequestItems={table: requests[:25]})


def test_a_batch_get_of_more_than_100_keys_is_refused(engine: Any) -> None:
    dynamodb, table = engine.client("dynamodb"), engine.counts_table
    keys = [counter(n) for n in range(101)]
    error = refused(lambda: dynamodb.batch_get_item(RequestItems={table: {"Keys": keys}}))
    assert error["Code"] == "ValidationException" and "less than or equal to 100" in error["Message"]
    dynamodb.batch_get_item(RequestItems={table: {"Keys": keys[:100]}})


def test_an_sqs_message_over_256_kib_with_its_attributes_is_refused(engine: Any) -> None:
    sqs = engine.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=engine.queue_url, AttributeNames=["MaximumMessageSize"])
    assert attributes["Attributes"]["MaximumMessageSize"] == str(SQS_MESSAGE_BYTES) == str(256 * KIB)
    body = "x" * (256 * KIB - 50)
    big_attribute = {"note": {"DataType": "String", "StringValue": "y" * 100}}
    error = refused(lambda: sqs.send_message(QueueUrl=engine.queue_url, MessageBody=body,
                                             MessageAttributes=big_attribute))
    assert "Message must be shorter than 262144 bytes" in error["Message"]
    error = refused(lambda: sqs.send_message_batch(QueueUrl=engine.queue_url, Entries=[
        {"Id": "one", "MessageBody": body, "MessageAttributes": big_attribute}]))
    assert "Message must be shorter than 262144 bytes" in error["Message"]
    sqs.send_message(QueueUrl=engine.queue_url, MessageBody=body)
    assert sqs.get_queue_attributes(QueueUrl=engine.queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "1"
