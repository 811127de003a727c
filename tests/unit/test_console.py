"""The console without a stack: the graph laid out from the definition, CSRF, and the error pages."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from console.app import create_app, definition
from console.graph import layout, overlay
from operate.targets import Target, TargetError

pytestmark = pytest.mark.unit


def _timeline(*names: str) -> list[dict[str, Any]]:
    return [{"state": n, "type": "Task", "entered": "", "seconds": 0.5, "status": "done"} for n in names]


def test_graph_has_every_state_of_the_definition_and_every_edge_points_down() -> None:
    graph = layout(definition())
    assert {n.name for n in graph.nodes} == set(definition()["States"])
    (classify,) = [n for n in graph.nodes if n.kind == "Map"]
    assert [(i.name, i.handler) for i in classify.inner] == [("ClassifyBatch", False), ("RecordBatchFailure", True)]
    for edge in graph.edges:
        if edge.kind != "loop":
            assert graph.node(edge.source).y < graph.node(edge.target).y, edge
    # The loops: the reconciliation sweep resuming from its cursor, and a run's next slice of the ledger.
    assert sorted((e.source, e.target) for e in graph.edges if e.kind == "loop") == [
        ("MoreToScore", "ListNewVersions"), ("SweepDone", "ReconcileVersions")]
    kinds = {(e.source, e.target): e.kind for e in graph.edges}
    assert kinds[("RouteByMode", "RejectInput")] == "default" and kinds[("TrainingHook", "TrainingFailed")] == "catch"
    for row in {n.level for n in graph.nodes}:  # no two states of a row overlap
        boxes = sorted((n.x, n.x + n.width) for n in graph.nodes if n.level == row)
        assert all(a[1] <= b[0] for a, b in zip(boxes, boxes[1:], strict=False))


def test_overlay_marks_the_path_statuses_durations_and_the_caught_batches() -> None:
    graph = overlay(layout(definition()),
                    _timeline("RouteByMode", "ListNewVersions", "AnythingToScore", "Classify", "ReconcileBatches",
                              "ClassifyOutcome", "WriteRunResults", "MoreToScore", "AggregateDailyCounts"),
                    "SUCCEEDED", [{"status": "SUCCEEDED", "items": {"total": 3, "succeeded": 3, "failed": 0}}],
                    [{"stage": "batch"}, {"stage": "batch"}, {"stage": "decode"}])
    assert graph.path() == ["RouteByMode>ListNewVersions", "ListNewVersions>AnythingToScore",
                            "AnythingToScore>Classify", "Classify>ReconcileBatches", "ReconcileBatches>ClassifyOutcome",
                            "ClassifyOutcome>WriteRunResults", "WriteRunResults>MoreToScore",
                            "MoreToScore>AggregateDailyCounts"]
    assert graph.node("Classify").status == "succeeded" and graph.node("Classify").seconds == 0.5
    assert graph.node("BuildReplayManifest").status == "not-run"
    assert (graph.node("ClassifyBatch").status, graph.node("ClassifyBatch").note) == ("succeeded", "3/3 batches")
    assert (graph.node("RecordBatchFailure").status, graph.node("RecordBatchFailure").note) == ("caught", "2 items")


def test_a_failed_run_marks_the_state_it_stopped_in() -> None:
    timeline = _timeline("RouteByMode", "CollectTrainingData")
    timeline[-1]["status"] = "running"
    graph = overlay(layout(definition()), timeline, "FAILED", [], [])
    assert graph.node("CollectTrainingData").status == "failed"
    assert graph.node("RouteByMode").status == "succeeded"


def _console(resolve: Any) -> Any:
    app = create_app(resolve, "local stack")
    app.testing = False  # the error handlers answer, as when served
    return app.test_client()


def _down() -> Target:
    raise TargetError("the local stack is not running: start it with `batchinfer local serve`")


def test_a_stack_that_is_down_gives_a_page_that_says_so() -> None:
    client = _console(_down)
    for path in ("/", "/runs/score-1", "/predictions", "/models", "/start?mode=score"):
        response = client.get(path)
        text = response.get_data(as_text=True)
        assert response.status_code == 503, path
        assert "The stack cannot be read" in text and "batchinfer local serve" in text
        assert "Traceback" not in text


def test_unknown_pages_are_404_with_a_link_back() -> None:
    response = _console(_down).get("/no/such/page")
    assert response.status_code == 404 and 'href="/"' in response.get_data(as_text=True)


def test_writes_need_this_sessions_csrf_token() -> None:
    calls: list[str] = []

    def resolve() -> Target:
        calls.append("resolved")
        raise TargetError("the local stack is not running")

    client = _console(resolve)
    assert client.post("/start", data={"mode": "score"}).status_code == 400
    assert client.post("/start", data={"mode": "score", "csrf_token": "guessed"}).status_code == 400
    assert client.post("/runs/score-1/replay", data={"csrf_token": ""}).status_code == 400
    assert client.post("/runs/score-1/stop", data={"reason": "r"}).status_code == 400
    for action in ("approve", "reject", "promote"):
        assert client.post(f"/models/digits/v2/{action}", data={"reason": "r"}).status_code == 400
    assert calls == []  # nothing reached the stack

    # The confirmation page carries the session's token; with it, the write goes through to the stack.
    client = _console(lambda: Target("local", "us-east-1", "arn:aws:states:us-east-1:1:stateMachine:x", "b", {}))
    page = client.get("/start?mode=score").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    other = _console(lambda: Target("local", "us-east-1", "arn", "b", {}))
    other.get("/start?mode=score")
    assert other.post("/start", data={"mode": "score", "csrf_token": token.group(1)}).status_code == 400
    assert client.post("/start", data={"mode": "bogus", "csrf_token": token.group(1)}).status_code == 400


def test_the_pages_use_no_network_resource() -> None:
    """Everything is served from the package: no CDN, so the console works offline."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "console"
    for path in folder.rglob("*.html"):
        assert not re.search(r'(src|href)="(https?:)?//', path.read_text()), path
    assert (folder / "static" / "vendor" / "chart.umd.min.js").stat().st_size > 100_000
    assert "MIT" in (folder / "static" / "vendor" / "chart.js.LICENSE.md").read_text()
    json.dumps(definition())
