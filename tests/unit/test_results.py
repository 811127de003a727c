"""Result files on the in-memory stores: a batch's file written once per batch whatever the retries, the
file of a batch whose child died filled from the table, failures streamed; the query side's DuckDB views
and the Athena request it sends (Athena itself cannot run here)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from contract.results import (
    FAILURES_TABLE,
    PREDICTION_FIELDS,
    PREDICTIONS_TABLE,
    failures_key,
    index_key,
    prediction_part_key,
)
from inference_image.classify import classify_batch
from lambdas.records import Batch
from lambdas.results import write_run_results
from lambdas.steps import ClassifyBatchRequest, WriteRunResultsRequest
from operate.query import athena_request, duckdb_views, query_athena
from operate.targets import Target
from tests.unit.conftest import BUCKET, World, png

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def classify(world: World, batch: Batch, run_id: str = "run-1") -> dict[str, Any]:
    return classify_batch(ClassifyBatchRequest(run_id, batch), world.settings, world.model, world.source,
                          world.predictions, world.failures, world.state).to_dict()


def lines(world: World, key: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in world.source.read_object(BUCKET, key).decode().splitlines()]


def test_a_batch_writes_its_file_and_a_retry_writes_the_same_one(world: World) -> None:
    dark = world.upload("incoming/dark.png", png(20), "2026-11-20T10:00:00+00:00")
    light = world.upload("incoming/light.png", png(230), "2026-11-21T10:00:00+00:00")
    broken = world.upload("incoming/broken.png", b"not an image")
    batch = Batch("b0", [dark, light, broken])
    classify(world, batch)
    first = world.source.read_object(BUCKET, prediction_part_key("run-1", "b0"))
    written = lines(world, prediction_part_key("run-1", "b0"))
    assert [(line["key"], line["class"], line["counted"]) for line in written] == [
        ("incoming/dark.png", "dark", True), ("incoming/light.png", "light", True)]
    assert all(list(line) == [f.name for f in PREDICTION_FIELDS] for line in written)

    retried = classify(world, batch)  # the retry finds its own writes: the same file, the same counts
    assert retried["duplicates"] == 2 and retried["counted"] == 2
    assert world.source.read_object(BUCKET, prediction_part_key("run-1", "b0")) == first

    other = classify(world, batch, run_id="run-2")  # an overlapping run: those lines are run-1's, not its own
    assert other["counted"] == 0 and lines(world, prediction_part_key("run-2", "b0")) == []


def test_the_results_step_fills_a_dead_batchs_file_from_the_table_and_streams_the_failures(world: World) -> None:
    images = [world.upload(f"incoming/{n}.png", png(20 + 50 * n)) for n in range(4)]
    bad = world.upload("incoming/bad.png", b"")
    batches = [Batch("b0", images[:2]), Batch("b1", [*images[2:], bad])]
    world.source.write_json(BUCKET, "runs/run-1/manifest.json", [b.to_dict() for b in batches])
    classify(world, batches[0])
    classify(world, batches[1])
    expected = lines(world, prediction_part_key("run-1", "b1"))
    world.source.objects[BUCKET].pop(prediction_part_key("run-1", "b1"))  # its child died before writing it

    request = WriteRunResultsRequest("run-1", BUCKET, "runs/run-1/manifest.json")
    result = write_run_results(request, BUCKET, world.source, world.predictions, world.failures)
    assert (result.prediction_files, result.filled_from_table, result.failure_lines) == (2, 1, 1)
    assert lines(world, prediction_part_key("run-1", "b1")) == expected
    (failure,) = lines(world, failures_key("run-1"))
    assert (failure["key"], failure["stage"], failure["run"], failure["batch"]) == ("incoming/bad.png", "decode",
                                                                                    "run-1", "b1")
    index = world.source.read_object(BUCKET, index_key(PREDICTIONS_TABLE, "run-1")).decode().split()
    assert index == [f"s3://{BUCKET}/{prediction_part_key('run-1', b)}" for b in ("b0", "b1")]
    assert world.source.read_object(BUCKET, index_key(FAILURES_TABLE, "run-1")).decode().split() == [
        f"s3://{BUCKET}/{failures_key('run-1')}"]

    again = write_run_results(request, BUCKET, world.source, world.predictions, world.failures)
    assert again.filled_from_table == 0 and lines(world, prediction_part_key("run-1", "b1")) == expected


def test_duckdb_views_have_the_columns_even_before_any_run(tmp_path: Path) -> None:
    import duckdb

    connection = duckdb.connect()
    duckdb_views(connection, tmp_path)
    assert connection.execute("SELECT count(*) FROM predictions").fetchone() == (0,)
    described = connection.execute("DESCRIBE predictions").fetchall()
    assert [(row[0], row[1]) for row in described] == [(f.name, f.duckdb) for f in PREDICTION_FIELDS]


def aws_target(workgroup: str = "batchinfer-dev-results", database: str = "batchinfer_dev_results") -> Target:
    return Target(kind="aws", region="us-east-1", state_machine_arn="arn:aws:states:us-east-1:1:stateMachine:x",
                  bucket="b", tables={}, athena_workgroup=workgroup, glue_database=database)


def test_athena_queries_go_to_the_stacks_workgroup_and_database() -> None:
    import boto3

    target = aws_target()
    athena = boto3.client("athena", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    target._clients["athena"] = athena
    sql = 'SELECT "date", class, count(*) AS n FROM predictions WHERE counted GROUP BY 1, 2'
    with Stubber(athena) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q1"}, athena_request(target, sql))
        stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "RUNNING"}}},
                          {"QueryExecutionId": "q1"})
        stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}},
                          {"QueryExecutionId": "q1"})
        header = {"Data": [{"VarCharValue": "date"}, {"VarCharValue": "class"}, {"VarCharValue": "n"}]}
        stub.add_response("get_query_results", {"ResultSet": {
            "ResultSetMetadata": {"ColumnInfo": [{"Name": n, "Type": "varchar"} for n in ("date", "class", "n")]},
            "Rows": [header, {"Data": [{"VarCharValue": "2026-12-07"}, {"VarCharValue": "3"},
                                       {"VarCharValue": "5"}]}]}}, {"QueryExecutionId": "q1"})
        result = query_athena(target, sql, sleep=lambda _: None)
    assert athena_request(target, sql) == {"QueryString": sql, "WorkGroup": "batchinfer-dev-results",
                                           "QueryExecutionContext": {"Database": "batchinfer_dev_results"}}
    assert (result.columns, result.rows) == (["date", "class", "n"], [["2026-12-07", "3", "5"]])


def test_duckdb_and_pyarrow_are_cli_side_only() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {r.split(">")[0] for r in project["optional-dependencies"]["results"]} == {"duckdb", "pyarrow"}
    for requirements in ("requirements.txt", "requirements-training.txt"):
        text = (REPO / "inference_image" / requirements).read_text().lower()
        assert "duckdb" not in text and "pyarrow" not in text
    assert "results" in (REPO / "Makefile").read_text().split("pip install --quiet -e", 1)[1].split("\n")[0]
