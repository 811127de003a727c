"""A run's result files (contract/results.py) read back: exported as JSONL, CSV or Parquet, a file at a time."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

from botocore.exceptions import ClientError

from contract.results import (
    FIELDS_BY_TABLE,
    ResultField,
    index_key,
    index_prefix,
)
from operate.targets import Target, TargetError

FORMATS = ("jsonl", "csv", "parquet")


class ResultsMissing(TargetError):
    """The run has no result files (yet): it is running, scored nothing, or ran before they existed."""


def run_files(target: Target, table: str, run_id: str) -> list[str]:
    """The keys of a finished run's files of one table (its index file lists them): its predictions, a file
    per batch, or its failures."""
    return list(indexed_files(target, table, [run_id]))


def indexed_files(target: Target, table: str, runs: list[str] | None = None) -> Iterator[str]:
    """The keys the Glue table reads (its index files list them), for every run or the given ones."""
    s3 = target.client("s3")
    if runs:
        index_keys = [index_key(table, run) for run in runs]
    else:
        paginator = s3.get_paginator("list_objects_v2")
        index_keys = [obj["Key"] for page in paginator.paginate(Bucket=target.bucket, Prefix=index_prefix(table))
                      for obj in page.get("Contents", [])]
    prefix = f"s3://{target.bucket}/"
    for key in index_keys:
        try:
            body = s3.get_object(Bucket=target.bucket, Key=key)["Body"]
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                run = key.rsplit("/", 1)[-1].removesuffix(".txt")
                raise ResultsMissing(f"run {run!r} has no result files: is it still running, did it classify "
                                     "nothing, or did it run before runs wrote them?") from None
            raise
        for line in body.iter_lines():
            uri = line.decode().strip()
            if uri.startswith(prefix):
                yield uri[len(prefix):]


def lines(target: Target, keys: list[str]) -> Iterator[dict[str, Any]]:
    """Every line of the files, parsed, one file streaming at a time."""
    s3 = target.client("s3")
    for key in keys:
        for raw in s3.get_object(Bucket=target.bucket, Key=key)["Body"].iter_lines():
            if raw.strip():
                yield json.loads(raw)


def export(target: Target, run_id: str, table: str, fmt: str, out: IO[bytes]) -> int:
    """Write a run's predictions or failures to `out` as jsonl, csv or parquet; the number of rows."""
    if fmt not in FORMATS:
        raise TargetError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    keys = run_files(target, table, run_id)
    fields = FIELDS_BY_TABLE[table]
    if fmt == "jsonl":
        return _copy_jsonl(target, keys, out)
    if fmt == "csv":
        return write_csv(lines(target, keys), fields, out)
    return write_parquet(lines(target, keys), fields, out)


def _copy_jsonl(target: Target, keys: list[str], out: IO[bytes]) -> int:
    s3, rows = target.client("s3"), 0
    for key in keys:
        for raw in s3.get_object(Bucket=target.bucket, Key=key)["Body"].iter_lines():
            if raw.strip():
                out.write(raw + b"\n")
                rows += 1
    return rows


def _cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def write_csv(rows: Iterator[dict[str, Any]], fields: tuple[ResultField, ...], out: IO[bytes]) -> int:
    """CSV with a header; the probabilities as a JSON object in one cell."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow([f.name for f in fields])
    count = 0
    for row in rows:
        writer.writerow([_cell(row.get(f.name)) for f in fields])
        count += 1
    text.detach()  # leave `out` open for the caller
    return count


def arrow_schema(fields: tuple[ResultField, ...]) -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "double": pa.float64(), "boolean": pa.bool_(),
             "map<string,double>": pa.map_(pa.string(), pa.float64())}
    return pa.schema([(f.name, types[f.athena]) for f in fields])


def write_parquet(rows: Iterator[dict[str, Any]], fields: tuple[ResultField, ...], out: IO[bytes],
                  rows_per_group: int = 10_000) -> int:
    """Parquet, a row group at a time, so that a large run is never held whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(fields)
    count = 0
    with pq.ParquetWriter(out, schema) as writer:
        group: list[dict[str, Any]] = []
        for row in rows:
            group.append({f.name: _arrow_value(row.get(f.name), f) for f in fields})
            if len(group) == rows_per_group:
                writer.write_table(pa.Table.from_pylist(group, schema=schema))
                count, group = count + len(group), []
        if group or count == 0:
            writer.write_table(pa.Table.from_pylist(group, schema=schema))
            count += len(group)
    return count


def _arrow_value(value: Any, field: ResultField) -> Any:
    if field.athena.startswith("map<") and isinstance(value, dict):
        return list(value.items())
    return value


