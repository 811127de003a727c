"""`batchinfer query`: SQL over the runs' result files, as `predictions` and `failures`.

DuckDB reads the files the Glue tables read (the index files under results-index/ list them), fetched
through the stack's S3 endpoint, the local stack's or AWS's, one file at a time into a temporary folder:
DuckDB's own S3 reader (httpfs) is an extension it downloads at first use, which a machine without
internet cannot. Athena runs the same SQL over the Glue tables, in the stack's workgroup.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.results import FIELDS_BY_TABLE, ResultField
from operate.results import indexed_files
from operate.targets import Target, TargetError

ENGINES = ("duckdb", "athena")


class QueryError(TargetError):
    """The query failed: the message is the engine's, on one line."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]


def _duckdb_columns(fields: tuple[ResultField, ...]) -> str:
    return "{" + ", ".join(f"'{f.name}': '{f.duckdb}'" for f in fields) + "}"


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def duckdb_views(connection: Any, folder: Path) -> None:
    """A view per table over the JSONL files under folder/<table>/, typed by contract/results.py."""
    for table, fields in FIELDS_BY_TABLE.items():
        files = sorted(str(path) for path in (folder / table).glob("*.jsonl"))
        if files:
            source = (f"read_json([{', '.join(_sql_text(f) for f in files)}], format='newline_delimited', "
                      f"columns={_duckdb_columns(fields)})")
        else:  # no run has results yet: the view exists, empty, with its columns
            source = "(SELECT " + ", ".join(f"CAST(NULL AS {f.duckdb}) AS \"{f.name}\"" for f in fields) + " LIMIT 0)"
        connection.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source}")


def fetch_results(target: Target, folder: Path, runs: list[str] | None = None) -> dict[str, int]:
    """Download what each Glue table reads into folder/<table>/; the number of files per table."""
    s3 = target.client("s3")
    counts = {}
    for table in FIELDS_BY_TABLE:
        (folder / table).mkdir(parents=True, exist_ok=True)
        n = 0
        for n, key in enumerate(indexed_files(target, table, runs), start=1):
            s3.download_file(target.bucket, key, str(folder / table / f"{n:07d}.jsonl"))
        counts[table] = n
    return counts


def query_duckdb(target: Target, sql: str, runs: list[str] | None = None) -> QueryResult:
    try:
        import duckdb
    except ImportError:
        raise QueryError("DuckDB is not installed: pip install 'batchinfer[results]'") from None
    with tempfile.TemporaryDirectory(prefix="batchinfer-query-") as folder:
        fetch_results(target, Path(folder), runs)
        connection = duckdb.connect()
        try:
            duckdb_views(connection, Path(folder))
            cursor = connection.execute(sql)
            columns = [d[0] for d in cursor.description or []]
            return QueryResult(columns, [list(row) for row in cursor.fetchall()])
        except duckdb.Error as error:
            raise QueryError(str(error)) from None
        finally:
            connection.close()


def athena_request(target: Target, sql: str) -> dict[str, Any]:
    """StartQueryExecution's arguments: the stack's workgroup (which sets the encrypted results location)
    and its Glue database, where `predictions` and `failures` are."""
    if not target.athena_workgroup or not target.glue_database:
        raise QueryError("this stack has no Athena workgroup or Glue database output: deploy this version, "
                         "or use --engine duckdb")
    return {"QueryString": sql, "WorkGroup": target.athena_workgroup,
            "QueryExecutionContext": {"Database": target.glue_database}}


def query_athena(target: Target, sql: str, poll_seconds: float = 1.0, timeout: float = 900,
                 sleep: Callable[[float], None] = time.sleep) -> QueryResult:
    athena = target.client("athena")
    execution_id = athena.start_query_execution(**athena_request(target, sql))["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = athena.get_query_execution(QueryExecutionId=execution_id)["QueryExecution"]["Status"]
        if status["State"] == "SUCCEEDED":
            break
        if status["State"] in ("FAILED", "CANCELLED"):
            raise QueryError(f"Athena: {status.get('StateChangeReason') or status['State']}")
        if time.monotonic() > deadline:
            athena.stop_query_execution(QueryExecutionId=execution_id)
            raise QueryError(f"Athena query {execution_id} still running after {timeout:.0f} s: stopped")
        sleep(poll_seconds)
    return athena_rows(athena.get_paginator("get_query_results").paginate(QueryExecutionId=execution_id))


def athena_rows(pages: Any) -> QueryResult:
    """The result of GetQueryResults pages: Athena puts the column names in the first row of the first page."""
    columns: list[str] = []
    rows: list[list[Any]] = []
    for page in pages:
        if not columns:
            columns = [c["Name"] for c in page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
            data = page["ResultSet"]["Rows"][1:]
        else:
            data = page["ResultSet"]["Rows"]
        rows += [[cell.get("VarCharValue") for cell in row["Data"]] for row in data]
    return QueryResult(columns, rows)


def run_query(target: Target, sql: str, engine: str | None = None, runs: list[str] | None = None) -> QueryResult:
    """DuckDB on the local stack; Athena on a deployed one unless `engine` says duckdb."""
    engine = engine or ("athena" if target.kind == "aws" else "duckdb")
    if engine not in ENGINES:
        raise QueryError(f"unknown engine {engine!r}: use duckdb or athena")
    if engine == "athena":
        if target.kind != "aws":
            raise QueryError("Athena queries a deployed stack: pass --stack, or use DuckDB on the local stack")
        return query_athena(target, sql)
    return query_duckdb(target, sql, runs)
