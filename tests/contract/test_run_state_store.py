"""RunStateStore's contract, on moto and on the in-memory fake: checkpoints that only move
forward, and the result of each batch of a run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "fake":
        from lambdas.fakes import InMemoryRunStateStore

        return InMemoryRunStateStore()
    from lambdas.stores import RunStateStore

    aws = request.getfixturevalue("moto_aws")
    return RunStateStore(aws.dynamodb, aws.state_table)


def test_a_checkpoint_starts_empty_and_moves_forward_only(store: Any) -> None:
    assert store.checkpoint("bucket/incoming/") is None
    assert store.advance_checkpoint("bucket/incoming/", "2026-11-20T10:00:00+00:00", "run-1") is True
    assert store.advance_checkpoint("bucket/incoming/", "2026-11-19T10:00:00+00:00", "run-0") is False
    assert store.advance_checkpoint("bucket/incoming/", "2026-11-20T10:00:00+00:00", "run-2") is False
    assert store.checkpoint("bucket/incoming/") == "2026-11-20T10:00:00+00:00"
    assert store.advance_checkpoint("bucket/incoming/", "2026-11-21T10:00:00+00:00", "run-3") is True
    assert store.checkpoint("bucket/incoming/") == "2026-11-21T10:00:00+00:00"


def test_checkpoints_of_different_scopes_are_apart(store: Any) -> None:
    store.advance_checkpoint("bucket/a/", "2026-11-20T10:00:00+00:00", "run-1")
    assert store.checkpoint("bucket/b/") is None


def test_batch_results_are_kept_per_run_in_batch_order(store: Any) -> None:
    store.put_batch_result("run-1", "run-1-00001", {"batch_id": "run-1-00001", "counted": 2, "dates": ["2026-11-20"]})
    store.put_batch_result("run-1", "run-1-00000", {"batch_id": "run-1-00000", "counted": 3, "dates": []})
    store.put_batch_result("run-2", "run-2-00000", {"batch_id": "run-2-00000", "counted": 9, "dates": []})
    results = store.batch_results("run-1")
    assert [r["batch_id"] for r in results] == ["run-1-00000", "run-1-00001"]
    assert results[1]["counted"] == 2 and results[1]["dates"] == ["2026-11-20"]


def test_a_retried_batch_replaces_its_result(store: Any) -> None:
    store.put_batch_result("run-1", "b0", {"batch_id": "b0", "counted": 1, "seconds": {"total": 0.5}})
    store.put_batch_result("run-1", "b0", {"batch_id": "b0", "counted": 4, "seconds": {"total": 0.25}})
    assert [(r["counted"], r["seconds"]) for r in store.batch_results("run-1")] == [(4, {"total": 0.25})]


def test_which_batches_have_a_result_and_many_results_at_once(store: Any) -> None:
    store.put_batch_result("run-1", "b0", {"batch_id": "b0", "counted": 1})
    store.put_batch_results("run-1", [{"batch_id": f"b{n}", "failed": 1, "reconciled": True} for n in range(2, 40)])
    store.put_batch_result("run-2", "b1", {"batch_id": "b1", "counted": 1})
    wanted = [f"b{n}" for n in range(120)]  # more than one BatchGetItem's 100 keys
    assert store.batches_with_result("run-1", wanted) == {"b0", *(f"b{n}" for n in range(2, 40))}
    assert store.batches_with_result("run-3", wanted) == set()
    assert {r["batch_id"]: r.get("reconciled") for r in store.batch_results("run-1")}["b39"] is True
