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

    assert isinstance(meta["machine"]["vector_features"], list)
    assert isinstance(meta["machine"]["int8_dot_product"], bool)

    for runtime in ("tf_function", "litert_fp32", "litert_int8"):
        assert sorted(results["ceiling"][runtime]) == batch_sizes
        assert all(v > 0 for v in results["ceiling"][runtime].values())

    serving = results["serving"]
    assert serving["form"] in ("int8", "fp32") and serving["runtime"] == f"litert-{serving['form']}"
    assert serving["decision"]["calibration_images"] == 2 and "int8_agreement" in serving["decision"]
    assert serving["agreement_workload"]["images"] == 2 and "agreement_demo_digits" in serving

    for path in ("served", "fp32"):
        for b in batch_sizes:
            figures = results["classify_batch"][path][b]
            assert figures["images"] > 0 and figures["images_per_second"] > 0 and figures["ratio_to_ceiling"] >= 0
        assert results["classify_batch"][path]["1"]["runtime"] == (
            serving["runtime"] if path == "served" else "litert-fp32")
        flow = results["workflow"][path]
        assert flow["images"] == 6 and flow["failed"] == 0 and flow["ratio_to_ceiling"] >= 0
        assert flow["counts_exact"] is True
        assert sum(flow["stored_counts"].values()) == 6
    for b in batch_sizes:
        assert results["memory"][b]["peak_rss_mb"] > 0 and results["memory"][b]["scored"] == int(b)

    seed = results["seed_way"]
    for run in ("sequential", "concurrent"):
        assert seed[run]["images_per_second"] > 0
        assert sum(seed[run]["predictions"].values()) == seed[run]["images"]
        assert isinstance(seed[run]["lost_increments"], int)
    assert seed["ours_workflow_speedup"] > 0

    cold = results["cold_start"]
    assert cold["ours"]["total"] > 0 and cold["seed"]["total"] > 0 and cold["ratio"] > 0
    assert cold["ours"]["imports_tensorflow"] is False

    sizes = results["image_size"]
    assert 0 < sizes["classify"]["mb"] < sizes["classify_before"]["mb"] <= sizes["training"]["mb"]
    assert "tensorflow-cpu" not in sizes["classify"]["largest_mb"]

    per_million = results["cost"]["per_million_images"]
    assert set(per_million) == {"ours_express_children", "ours_fp32_express_children", "ours_standard_children",
                                "ours_10_classes_express_children", "ours_1000_classes_express_children",
                                "seed_way"}
    assert results["cost"]["memory"]["memory_mb"] in (1769, 3008)
    assert set(results["threads"]["served"]) == {"1", "2"} and all(v > 0 for v in results["threads"]["served"].values())
    for path in ("served", "fp32"):
        assert results["classify_batch"][path]["2"]["compute_ceiling"] > 0
        assert results["workflow"][path]["ratio_to_compute_ceiling"] > 0
    items = results["items"]
    assert items["workflow"]["counted_item"]["items"] == 6 and items["workflow"]["fold_marker"]["items"] >= 3
    assert items["heads"]["1000"]["kept"] == "top 5 of 1000" and items["heads"]["3"]["kept"] == "all"
    assert all(head["counted_item"]["write_units"] == 1 for head in items["heads"].values())
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

    assert len(results["targets"]) == 11
    # The capacity plan held against the engine: the run itself worked (whether it holds is the bench's line).
    check = results["plan_check"]
    assert "error" not in check, check
    assert check["measured_images_per_second"] > 0 and check["planned_images_per_second"] > 0
    assert any("capacity plan holds on the engine" in t["target"] for t in results["targets"])
    assert "the whole benchmark within 900 s" in results["targets"][-1]["target"]
    assert all(isinstance(t["holds"], bool) for t in results["targets"])
    assert "targets:" in completed.stdout
