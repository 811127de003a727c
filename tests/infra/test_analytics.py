"""The Glue tables and the Athena workgroup over the runs' result files: columns from the one definition
the JSONL writer uses, only result files read, query results encrypted, access limited to them."""

from __future__ import annotations

from typing import Any

import pytest

from contract.results import FIELDS_BY_TABLE, RESULTS_INDEX_PREFIX, index_prefix
from infra.constructs.analytics import JSON_SERDE, SYMLINK_INPUT_FORMAT
from lambdas.records import ImageVersion, Prediction
from lambdas.results import failure_line, prediction_line

pytestmark = pytest.mark.infra


def _tables(synthesized: Any) -> dict[str, dict[str, Any]]:
    return {t["Properties"]["TableInput"]["Name"]: t["Properties"]["TableInput"]
            for t in synthesized.resources("AWS::Glue::Table").values()}


def test_the_tables_columns_are_the_fields_the_writer_writes(synthesized: Any) -> None:
    image = ImageVersion("bucket", "incoming/a.png", "v1", "2026-12-07T10:00:00+00:00")
    written = {
        "predictions": list(prediction_line(Prediction(image, "3", 0.9, {"3": 0.9, "5": 0.1}, "m1", "run", "b0",
                                                       "2026-12-07", "litert-int8"), True)),
        "failures": list(failure_line({"image": image.to_dict(), "run_id": "run", "stage": "decode",
                                       "error_type": "BadImage", "reason": "no", "batch_id": "b0"})),
    }
    tables = _tables(synthesized)
    assert set(tables) == set(FIELDS_BY_TABLE)
    for name, table in tables.items():
        columns = table["StorageDescriptor"]["Columns"]
        assert [c["Name"] for c in columns] == written[name] == [f.name for f in FIELDS_BY_TABLE[name]]
        assert [c["Type"] for c in columns] == [f.athena for f in FIELDS_BY_TABLE[name]]


def test_the_tables_read_only_the_result_files_through_their_index(synthesized: Any) -> None:
    for name, table in _tables(synthesized).items():
        descriptor = table["StorageDescriptor"]
        # Symlink manifests, one per run: no crawler, no partition to add, nothing else under runs/ read.
        assert descriptor["InputFormat"] == SYMLINK_INPUT_FORMAT
        assert descriptor["SerdeInfo"]["SerializationLibrary"] == JSON_SERDE
        location = descriptor["Location"]["Fn::Join"][1]
        assert location[0] == "s3://" and location[-1] == f"/{index_prefix(name)}"
        assert "PartitionKeys" not in table
    assert not synthesized.resources("AWS::Glue::Crawler")


def test_the_workgroup_keeps_query_results_encrypted_in_its_own_bucket(synthesized: Any) -> None:
    (workgroup,) = synthesized.resources("AWS::Athena::WorkGroup").values()
    configuration = workgroup["Properties"]["WorkGroupConfiguration"]
    assert configuration["EnforceWorkGroupConfiguration"] is True
    results = configuration["ResultConfiguration"]
    assert results["EncryptionConfiguration"]["EncryptionOption"] == "SSE_S3"
    bucket_id = results["OutputLocation"]["Fn::Join"][1][1]["Ref"]
    bucket = synthesized.template["Resources"][bucket_id]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    outputs = synthesized.template["Outputs"]
    assert {"AthenaWorkGroup", "GlueDatabase", "QueryPolicyArn"} <= set(outputs)


def test_the_query_policy_reads_only_result_files(synthesized: Any) -> None:
    (policy,) = synthesized.resources("AWS::IAM::ManagedPolicy").values()
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a.endswith("*") for a in actions)
        if "s3:GetObject" in actions and "s3:PutObject" not in actions:
            paths = ["".join(str(p) for p in r["Fn::Join"][1][1:]) for r in statement["Resource"]]
            assert sorted(paths) == sorted(["/runs/*/results/*", f"/{RESULTS_INDEX_PREFIX}*"])


def test_the_index_files_expire_before_the_files_they_list(synthesized: Any) -> None:
    rules = {r["Id"]: r for r in synthesized.template["Resources"]["ImagesBucket"]["Properties"]
             ["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-results-index"]["Prefix"] == RESULTS_INDEX_PREFIX
    assert rules["expire-results-index"]["ExpirationInDays"] < rules["expire-run-manifests"]["ExpirationInDays"]
