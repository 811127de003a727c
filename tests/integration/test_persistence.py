"""The local state's round trip on moto: objects with all their versions, tables, executions with their
histories and map runs; a snapshot that cannot be read; one stack per state folder."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from engine import persistence
from engine.local_engine import LocalConfig, LocalEngine
from lambdas.stores import scan_all

pytestmark = pytest.mark.integration


def scope_of(engine: LocalEngine) -> persistence.Scope:
    return persistence.Scope(engine.config.account, engine.config.region, engine.state_machine_arn)


def everything(engine: LocalEngine) -> dict[str, Any]:
    """All a user can read back: object versions and their bytes, table items, executions, histories."""
    s3, sfn, dynamodb = engine.client("s3"), engine.client("stepfunctions"), engine.client("dynamodb")
    versions = s3.list_object_versions(Bucket=engine.config.bucket).get("Versions", [])
    bodies = [s3.get_object(Bucket=engine.config.bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
              for v in versions]
    executions = sfn.list_executions(stateMachineArn=engine.state_machine_arn)["executions"]
    described = []
    for execution in executions:
        description = sfn.describe_execution(executionArn=execution["executionArn"])
        description.pop("ResponseMetadata")
        history = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
        described.append((description, history))
    tables = {name: sorted(scan_all(dynamodb, TableName=name), key=str)
              for name in dynamodb.list_tables()["TableNames"]}
    return {"versions": [(v["Key"], v["VersionId"], v["LastModified"], v["ETag"], v["IsLatest"]) for v in versions],
            "bodies": bodies, "executions": executions, "described": described, "tables": tables}


def test_round_trip_keeps_versions_tables_and_runs(tmp_path: Path) -> None:
    path = tmp_path / persistence.SNAPSHOT_FILE
    with LocalEngine(LocalConfig(name="keep")) as engine:
        s3 = engine.client("s3")
        for n in range(3):  # three versions of one key, LastModified and ids to keep
            s3.put_object(Bucket=engine.config.bucket, Key="incoming/a.png", Body=b"v%d" % n)
        engine.client("dynamodb").put_item(TableName=engine.state_table, Item={
            "pk": {"S": "checkpoint"}, "sk": {"S": "incoming/"}, "last_modified": {"S": "2026-11-25T10:00:00Z"}})
        s3.put_object(Bucket=engine.config.bucket, Key="models/digits/current.json", Body=b'{"version": "v1"}')
        assert engine.run({"mode": "replay", "run": "r0"}, name="replay-before")["status"] == "SUCCEEDED"
        failed = engine.run({"mode": "bogus"}, name="rejected-before")  # a failed run keeps its error and cause
        assert failed["status"] == "FAILED" and failed.get("error")
        before = everything(engine)
        persistence.write_atomically(path, persistence.capture(scope_of(engine)))

    with LocalEngine(LocalConfig(name="keep")) as engine:
        assert everything(engine)["executions"] == []  # a new stack starts empty
        restored = persistence.restore(scope_of(engine), persistence.read_snapshot(path))
        assert restored == 2
        assert everything(engine) == before
        # The restored stack works on: a new version, a new run beside the old one.
        engine.client("s3").put_object(Bucket=engine.config.bucket, Key="incoming/a.png", Body=b"v3")
        assert engine.run({"mode": "replay", "run": "r0"}, name="replay-after")["status"] == "SUCCEEDED"
        names = [e["name"] for e in engine.client("stepfunctions").list_executions(
            stateMachineArn=engine.state_machine_arn)["executions"]]
        assert names == ["replay-after", "rejected-before", "replay-before"]
        versions = engine.client("s3").list_object_versions(Bucket=engine.config.bucket, Prefix="incoming/")
        assert len(versions["Versions"]) == 4


def test_map_runs_come_back(tmp_path: Path) -> None:
    saved = persistence.SavedExecution(
        name="r1", arn="arn:aws:states:us-east-1:123456789012:execution:keep:r1", status="SUCCEEDED",
        start_date=datetime(2026, 11, 25, tzinfo=timezone.utc),
        stop_date=None, input="{}", output={"ok": 1}, error=None, cause=None, events=[],
        map_runs=[({"mapRunArn": "arn:map/1", "executionArn": "arn:...:r1"},
                   {"mapRunArn": "arn:map/1", "status": "SUCCEEDED", "itemCounts": {"total": 2}})])
    with LocalEngine(LocalConfig(name="keep")) as engine:
        snapshot = pickle.loads(persistence.capture(scope_of(engine)))
        snapshot["buckets"], snapshot["tables"] = pickle.loads(snapshot["buckets"]), pickle.loads(snapshot["tables"])
        snapshot["executions"] = [saved]
        persistence.restore(scope_of(engine), snapshot)
        sfn = engine.client("stepfunctions")
        arn = engine.state_machine_arn.replace(":stateMachine:", ":execution:") + ":r1"
        (listed,) = sfn.list_map_runs(executionArn=arn)["mapRuns"]
        assert listed["mapRunArn"] == "arn:map/1"
        assert sfn.describe_map_run(mapRunArn="arn:map/1")["itemCounts"]["total"] == 2


def test_an_unreadable_snapshot_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / persistence.SNAPSHOT_FILE
    path.write_bytes(b"\x80\x05half")
    with pytest.raises(persistence.StateError) as error:
        persistence.read_snapshot(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"cannot restore the local state from {path}: ")
    assert message.endswith("start with --fresh to discard it, or --state-dir to use another folder")
    path.write_bytes(pickle.dumps({"format": persistence.FORMAT, "moto": "0.0.1"}))
    with pytest.raises(persistence.StateError, match="saved with moto 0.0.1"):
        persistence.read_snapshot(path)


def test_one_stack_per_state_folder_and_fresh_discards(tmp_path: Path) -> None:
    first = persistence.StateKeeper(tmp_path)
    first.claim()
    with pytest.raises(persistence.StateError, match="is in use by another local stack"):
        persistence.StateKeeper(tmp_path).claim()
    first.release()
    (tmp_path / persistence.SNAPSHOT_FILE).write_bytes(b"old")
    again = persistence.StateKeeper(tmp_path)
    assert again.claim(fresh=True) is None and not (tmp_path / persistence.SNAPSHOT_FILE).exists()
    again.release()


def test_snapshots_are_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.pickle"
    persistence.write_atomically(path, b"first")
    persistence.write_atomically(path, b"second")
    assert path.read_bytes() == b"second" and sorted(p.name for p in tmp_path.iterdir()) == ["state.pickle"]
