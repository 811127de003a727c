"""The benchmark's smoke mode runs end to end and reports every figure (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--out", str(out)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads(out.read_text())
    batch_sizes = ["1", "2"]

    meta = results["meta"]
    assert meta["mode"] == "smoke"
    assert meta["load_at_start"]["loadavg"] and meta["load_at_end"]["uptime"]

    for runtime in ("tf_function", "tflite_xnnpack"):
        assert sorted(results["ceiling"][runtime]) == batch_sizes
        assert all(v > 0 for v in results["ceiling"][runtime].values())
    assert sorted(results["ceiling"]["best"]) == batch_sizes

    for b in batch_sizes:
        figures = results["classify_batch"][b]
        assert figures["images"] > 0 and figures["images_per_second"] > 0 and figures["ratio_to_ceiling"] >= 0
        assert results["memory"][b]["peak_rss_mb"] > 0 and results["memory"][b]["scored"] == int(b)

    flow = results["workflow"]
    assert flow["images"] == 6 and flow["failed"] == 0 and flow["ratio_to_ceiling"] >= 0
    assert flow["counts_exact"] is True
    assert sum(flow["stored_counts"].values()) == 6

    seed = results["seed_way"]
    for run in ("sequential", "concurrent"):
        assert seed[run]["images_per_second"] > 0
        assert sum(seed[run]["predictions"].values()) == seed[run]["images"]
        assert isinstance(seed[run]["lost_increments"], int)
    assert seed["ours_workflow_speedup"] > 0

    serving = results["serving"]
    assert serving["runtime"] == "tflite"
    assert serving["agreement_workload"]["top1_agreement"] == 1.0
    assert "agreement_demo_digits" in serving and serving["int8"]

    cold = results["cold_start"]
    assert cold["ours"]["total"] > 0 and cold["seed"]["total"] > 0 and cold["ratio"] > 0
    assert cold["ours"]["imports_tensorflow"] is False

    per_million = results["cost"]["per_million_images"]
    assert set(per_million) == {"ours_express_children", "ours_standard_children", "seed_way"}
    assert all(c["total_usd"] > 0 for c in per_million.values())
    assert "list prices as of" in results["cost"]["prices"]

    scale = results["scale"]
    assert [r["history"] for r in scale["runs"]] == [1_000, 2_000, 4_000]
    for run in scale["runs"]:
        assert run["as_it_was"]["s3_requests"]["ListObjectVersions"] == -(-(run["history"] + run["new"]) // 1000)
        assert "ListObjectVersions" not in run["ledger"]["s3_requests"]  # the ledger never lists the bucket
        assert run["ledger"]["s3_requests"]["HeadObject"] == run["new"]
    assert scale["projection"]["history"] == 100_000_000 and scale["projection"]["sweep_invocations"] > 0
    assert "listing at scale" in completed.stdout

    assert len(results["targets"]) == 8
    assert all(isinstance(t["holds"], bool) for t in results["targets"])
    assert "targets:" in completed.stdout
