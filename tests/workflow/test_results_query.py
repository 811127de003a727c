"""`batchinfer query` and the exports on a served local stack: SQL over the result files agrees with the
tables after two overlapping runs and a replay; Parquet and CSV read back with the same rows."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from console.app import create_app
from contract.results import PREDICTION_FIELDS
from tests.conftest import cli, output_of, prediction_rows, stored_counts, upload

pytestmark = pytest.mark.workflow

DAY_COUNTS = 'SELECT "date", class, count(*) AS n FROM predictions WHERE counted GROUP BY 1, 2 ORDER BY 1, 2'


def test_query_counts_equal_the_daily_counts_after_overlapping_runs_and_a_replay(
        served: Any, held_out_digits: list[Any], tmp_path: Path) -> None:
    for digit in held_out_digits[:14]:
        upload(served, f"incoming/{digit.index:04d}.png", digit.png)
    upload(served, "incoming/late.png", b"not yet an image")
    # Two score runs at once over the same images: each version is scored and counted once.
    started = [served.start_execution({"mode": "score"}), served.start_execution({"mode": "score"})]
    outputs = []
    for arn in started:
        description = served.wait(arn, timeout=600)
        assert description["status"] == "SUCCEEDED", description
        outputs.append(output_of(description))
    assert sum(o["images_scored"] for o in outputs) == 14
    # The failed image is uploaded again, whole, and the run that failed it is replayed.
    failed_run = next(o["run_id"] for o in outputs if o["images_failed"])
    upload(served, "incoming/late.png", held_out_digits[20].png)
    replay = served.run({"mode": "replay", "run": failed_run}, timeout=600)
    assert replay["status"] == "SUCCEEDED" and output_of(replay)["images_scored"] == 1

    result = cli("query", DAY_COUNTS, "--format", "json")
    assert result.exit_code == 0, result.output
    counts: dict[str, dict[str, int]] = {}
    for row in json.loads(result.stdout):
        counts.setdefault(row["date"], {})[row["class"]] = row["n"]
    assert counts == stored_counts(served) and sum(sum(c.values()) for c in counts.values()) == 15

    # Every prediction row of every run is one line, once.
    total = cli("query", "SELECT count(*) AS n, count(DISTINCT image_uri) AS images FROM predictions",
                "--format", "csv")
    assert total.stdout.splitlines() == ["n,images", f"{len(prediction_rows(served))},15"]
    table = cli("query", "SELECT stage, count(*) AS n FROM failures GROUP BY stage")
    assert table.exit_code == 0 and "decode" in table.stdout

    bad = cli("query", "SELECT no_such_column FROM predictions")
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "no_such_column" in bad.stderr

    missing = cli("predictions", "--run", "no-such-run", "--format", "csv")
    assert missing.exit_code == 2 and "'no-such-run' has no result files" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1

    # A run's predictions exported: JSONL as stored, Parquet and CSV with the same rows.
    run_id = max(outputs, key=lambda o: o["images_scored"])["run_id"]
    jsonl = cli("predictions", "--run", run_id, "--format", "jsonl")
    assert jsonl.exit_code == 0, jsonl.output
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(lines) == sum(1 for r in prediction_rows(served) if r["run_id"] == run_id) > 0
    parquet = tmp_path / "run.parquet"
    written = cli("predictions", "--run", run_id, "--format", "parquet", "--output", str(parquet))
    assert written.exit_code == 0, written.output

    import pyarrow.parquet as pq

    read_back = pq.read_table(parquet)
    assert read_back.column_names == [f.name for f in PREDICTION_FIELDS]
    rows = read_back.to_pylist()
    for row in rows:
        row["probabilities"] = dict(row["probabilities"])
    assert rows == lines

    # The console's run page offers the same as CSV.
    client = create_app(served.target, "local stack").test_client()
    page = client.get(f"/runs/{run_id}")
    assert f"/runs/{run_id}/predictions.csv" in page.get_data(as_text=True)
    download = client.get(f"/runs/{run_id}/predictions.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    records = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert [(r["image_uri"], r["class"], json.loads(r["probabilities"])) for r in records] == [
        (line["image_uri"], line["class"], line["probabilities"]) for line in lines]
    assert client.get(f"/runs/{failed_run}/failures.csv").status_code == 200
