"""Predictions and counts in DynamoDB: idempotent per (image version, model version), exact counts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lambdas.records import ImageVersion, Prediction
from lambdas.stores import PredictionStore

pytestmark = pytest.mark.integration


def store(engine: Any) -> PredictionStore:
    return PredictionStore(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)


def prediction(n: int, label: str = "cat", model: str = "v1", date: str = "2026-11-20") -> Prediction:
    image = ImageVersion("bucket", f"incoming/{n}.jpg", f"ver{n}", f"{date}T10:00:00+00:00")
    return Prediction(image, label, 0.9, {label: 0.9, "dog": 0.1}, model, "run-1", "b0", date)


def test_a_prediction_is_written_and_counted_once(engine: Any) -> None:
    predictions = store(engine)
    first = predictions.write([prediction(n) for n in range(30)])  # spans two transactions
    again = predictions.write([prediction(n) for n in range(30)])
    assert (len(first.written), len(first.counted), len(first.duplicates)) == (30, 30, 0)
    assert (len(again.written), len(again.counted), len(again.duplicates)) == (0, 0, 30)
    assert predictions.day_counts("2026-11-20") == {"cat": 30}


def test_a_new_model_version_adds_a_prediction_but_not_a_count(engine: Any) -> None:
    predictions = store(engine)
    predictions.write([prediction(1, "cat", "v1")])
    outcome = predictions.write([prediction(1, "dog", "v2"), prediction(2, "dog", "v2")])
    assert len(outcome.written) == 2 and [p.image.key for p in outcome.counted] == ["incoming/2.jpg"]
    assert {r["sk"] for r in predictions.predictions_for(prediction(1).image.image_id)} == {
        "MODEL#v1", "MODEL#v2", "COUNTED"}
    assert predictions.day_counts("2026-11-20") == {"cat": 1, "dog": 1}


def test_concurrent_overlapping_writers_count_each_version_exactly_once(engine: Any) -> None:
    predictions = store(engine)
    labels = ["cat", "dog", "owl"]
    work = [[prediction(n, labels[n % 3]) for n in range(start, start + 60)] for start in (0, 20, 40, 0)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(predictions.write, work))
    assert sum(len(o.counted) for o in outcomes) == 100
    assert predictions.day_counts("2026-11-20") == {"cat": 34, "dog": 33, "owl": 33}


def test_rollup_never_goes_down(engine: Any) -> None:
    predictions = store(engine)
    predictions.write_rollup("2026-11-20", {"cat": 5})
    predictions.write_rollup("2026-11-20", {"cat": 3})  # a stale recount finishing late
    predictions.write_rollup("2026-11-20", {"cat": 7})
    assert predictions.rollups() == {"2026-11-20": {"cat": 7}}
