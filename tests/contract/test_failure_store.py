"""FailureStore's contract, on moto and on the in-memory fake: failures kept by run, with the
stage, the reason and the image version that replay needs."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.records import Failure, ImageVersion
from tests.contract.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Any:
    if request.param == "fake":
        from lambdas.fakes import InMemoryFailureStore

        return InMemoryFailureStore()
    from lambdas.stores import FailureStore

    aws = request.getfixturevalue("moto_aws")
    return FailureStore(aws.dynamodb, aws.failures_table)


def failure(n: int, run: str = "run-1", reason: str = "not an image") -> Failure:
    image = ImageVersion("bucket", f"incoming/{n}.png", f"ver{n}", "2026-11-20T10:00:00+00:00", 120)
    return Failure(image, "decode", reason, "BadImage", run, "b0")


def test_failures_are_kept_by_run(store: Any) -> None:
    store.record([failure(1), failure(2), failure(3, run="run-2")])
    rows = store.for_run("run-1")
    assert [r["image"]["key"] for r in rows] == ["incoming/1.png", "incoming/2.png"]
    assert rows[0]["stage"] == "decode" and rows[0]["error_type"] == "BadImage" and rows[0]["batch_id"] == "b0"
    assert ImageVersion.from_dict(rows[0]["image"]) == failure(1).image
    assert store.for_run("run-3") == []


def test_a_failure_recorded_twice_is_one_row(store: Any) -> None:
    store.record([failure(1)])
    store.record([failure(1, reason="still not an image")])
    assert [r["reason"] for r in store.for_run("run-1")] == ["still not an image"]


def test_many_failures_are_all_kept(store: Any) -> None:
    store.record([failure(n) for n in range(60)])  # more than one BatchWriteItem
    assert len(store.for_run("run-1")) == 60


def test_a_long_reason_is_cut(store: Any) -> None:
    store.record([failure(1, reason="x" * 5000)])
    assert len(store.for_run("run-1")[0]["reason"]) <= 1000
