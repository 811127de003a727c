"""The two sides of every store contract: the in-memory fake (unit) and the real store on moto
(integration). moto is imported only when a moto-side test runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from contract.resource_spec import DAILY_COUNTS, FAILURES, PREDICTIONS, RUN_STATE, TABLES

REGION = "us-east-1"
BUCKET = "contract-images"

BACKENDS = [pytest.param("fake", marks=pytest.mark.unit), pytest.param("moto", marks=pytest.mark.integration)]


@dataclass
class MotoAws:
    dynamodb: Any
    s3: Any
    tables: dict[str, str]  # logical id -> table name
    bucket: str = BUCKET

    @property
    def predictions_table(self) -> str:
        return self.tables[PREDICTIONS.logical_id]

    @property
    def counts_table(self) -> str:
        return self.tables[DAILY_COUNTS.logical_id]

    @property
    def failures_table(self) -> str:
        return self.tables[FAILURES.logical_id]

    @property
    def state_table(self) -> str:
        return self.tables[RUN_STATE.logical_id]


@pytest.fixture
def moto_aws(patched_moto: None) -> MotoAws:
    """A versioned bucket and the tables of the resource spec, on moto with the engine's patches."""
    import boto3

    dynamodb = boto3.client("dynamodb", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    tables = {}
    for spec in TABLES:
        name = f"contract-{spec.logical_id.lower()}"
        request: dict[str, Any] = {"TableName": name, "KeySchema": spec.key_schema(),
                                   "AttributeDefinitions": spec.attribute_definitions(),
                                   "BillingMode": "PAY_PER_REQUEST"}
        if spec.indexes:
            request["GlobalSecondaryIndexes"] = spec.global_secondary_indexes()
        dynamodb.create_table(**request)
        tables[spec.logical_id] = name
    return MotoAws(dynamodb, s3, tables)
