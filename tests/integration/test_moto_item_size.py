"""moto's DynamoDB items with the engine's fix 17: an item's size is added up once, and the 400 KB
limit still refuses an item over it, when it is put and when an update grows it."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration


@pytest.fixture
def table(patched_moto: None) -> Any:
    import boto3

    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    return dynamodb.create_table(
        TableName="items", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )


def test_an_item_is_sized_once_not_once_per_attribute(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    calls = {"n": 0}
    size = DynamoType.size

    def counted(self: DynamoType) -> int:
        calls["n"] += 1
        return size(self)

    monkeypatch.setattr(DynamoType, "size", counted)
    item = {"pk": "wide", **{f"a{n:03d}": f"value {n}" for n in range(200)}}
    table.put_item(Item=item)
    assert table.get_item(Key={"pk": "wide"})["Item"] == item
    # Unpatched, moto re-added every attribute stored so far at each new one: about 20,000 calls.
    assert calls["n"] < 3 * len(item), calls["n"]


def test_the_item_size_limit_still_holds(table: Any) -> None:
    table.put_item(Item={"pk": "just-under", "blob": "x" * 399_000})
    with pytest.raises(ClientError) as refused:
        table.put_item(Item={"pk": "over", "blob": "x" * 300_000, "more": "y" * 200_000})
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "Item size has exceeded the maximum allowed size" in refused.value.response["Error"]["Message"]
    assert "Item" not in table.get_item(Key={"pk": "over"})
    with pytest.raises(ClientError) as grown:
        table.update_item(Key={"pk": "just-under"}, UpdateExpression="SET more = :v",
                          ExpressionAttributeValues={":v": "y" * 20_000})
    assert grown.value.response["Error"]["Code"] == "ValidationException"
    assert len(table.get_item(Key={"pk": "just-under"})["Item"]["blob"]) == 399_000
