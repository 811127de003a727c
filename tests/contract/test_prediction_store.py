"""PredictionStore's contract, on moto and on the in-memory fake: idempotent per (image version,
model version), a second COUNTED row refused, exact sharded counts, rollups that never go down."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lambdas.records import Failure, ImageVersion, Prediction
from lambdas.stores import COUNTED, FAILED, PredictionStore
from tests.contract.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> PredictionStore:
    if request.param == "fake":
        from lambdas.fakes import InMemoryPredictionStore

        return InMemoryPredictionStore(count_shards=8)
    aws = request.getfixturevalue("moto_aws")
    return PredictionStore(aws.dynamodb, aws.predictions_table, aws.counts_table, 8)


def image(n: int, date: str = "2026-11-20") -> ImageVersion:
    return ImageVersion("bucket", f"incoming/{n}.jpg", f"ver{n}", f"{date}T10:00:00+00:00")


def prediction(n: int, label: str = "cat", model: str = "v1", date: str = "2026-11-20",
               confidence: float = 0.9, run: str = "run-1") -> Prediction:
    return Prediction(image(n, date), label, confidence, {label: confidence, "dog": 1 - confidence}, model, run,
                      "b0", date)


def test_a_prediction_is_written_and_counted_once(store: PredictionStore) -> None:
    first = store.write([prediction(n) for n in range(30)])  # spans two transactions
    again = store.write([prediction(n) for n in range(30)])
    assert (len(first.written), len(first.counted), len(first.duplicates)) == (30, 30, 0)
    assert (len(again.written), len(again.counted), len(again.duplicates)) == (0, 0, 30)
    assert store.day_counts("2026-11-20") == {"cat": 30}


def test_a_second_counted_row_is_refused_for_a_new_model_version(store: PredictionStore) -> None:
    store.write([prediction(1, "cat", "v1")])
    outcome = store.write([prediction(1, "dog", "v2"), prediction(2, "dog", "v2")])
    assert len(outcome.written) == 2 and [p.image.key for p in outcome.counted] == ["incoming/2.jpg"]
    assert {r["sk"] for r in store.predictions_for(image(1).image_id)} == {"MODEL#v1", "MODEL#v2", COUNTED}
    assert store.day_counts("2026-11-20") == {"cat": 1, "dog": 1}


def test_concurrent_overlapping_writers_count_each_version_exactly_once(store: PredictionStore) -> None:
    labels = ["cat", "dog", "owl"]
    work = [[prediction(n, labels[n % 3]) for n in range(start, start + 60)] for start in (0, 20, 40, 0)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(store.write, work))
    assert sum(len(o.counted) for o in outcomes) == 100
    assert store.day_counts("2026-11-20") == {"cat": 34, "dog": 33, "owl": 33}


def test_rows_keep_what_a_user_reads(store: PredictionStore) -> None:
    store.write([prediction(7, confidence=0.1234567)])
    rows = {r["sk"]: r for r in store.predictions_for(image(7).image_id)}
    row = rows["MODEL#v1"]
    assert row["confidence"] == 0.123457  # rounded to 6 places, as stored
    assert row["image_uri"] == image(7).image_id and row["date"] == "2026-11-20"
    assert row["captured_at"] == "2026-11-20T10:00:00+00:00" and row["model_version"] == "v1"
    assert rows[COUNTED]["run_id"] == "run-1" and rows[COUNTED]["date_shard"].startswith("2026-11-20#")


def test_ledger_tells_counted_from_failed(store: PredictionStore) -> None:
    store.write([prediction(1)])
    store.mark_failed([Failure(image(2), "decode", "not an image", "BadImage", "run-1", "b0")])
    assert store.ledger([image(1).image_id, image(2).image_id, image(3).image_id]) == {
        image(1).image_id: {COUNTED}, image(2).image_id: {FAILED}}


def test_ledger_owners_names_the_run_that_counted_or_failed(store: PredictionStore) -> None:
    store.write([prediction(1, run="run-a")])
    store.write([prediction(1, run="run-b"), prediction(2, run="run-b")])
    store.mark_failed([Failure(image(3), "decode", "not an image", "UnidentifiedImageError", "run-c", "b0")])
    assert store.ledger_owners([image(n).image_id for n in (1, 2, 3, 4)]) == {
        image(1).image_id: {COUNTED: "run-a"}, image(2).image_id: {COUNTED: "run-b"},
        image(3).image_id: {FAILED: "run-c"}}


def test_a_retried_batch_tells_its_own_earlier_writes_from_another_runs(store: PredictionStore) -> None:
    first = store.write([prediction(1), prediction(2, model="v0")])
    store.write([prediction(2)])  # image 2: v0 counted, v1's row written beside it by this run's batch b0
    retry = store.write([prediction(1), prediction(2)])  # the same batch again: both are its own
    assert (len(first.written), retry.written, len(retry.duplicates)) == (2, [], 2)
    assert retry.own == {image(1).image_id: True, image(2).image_id: False}  # counted / kept beside
    other = store.write([prediction(1, run="run-2"), prediction(2, run="run-2")])
    assert len(other.duplicates) == 2 and other.own == {}  # another run's batch owns none


def test_get_many_returns_only_the_projection(store: PredictionStore) -> None:
    store.write([prediction(1)])
    rows = list(store.get_many([{"image_id": image(1).image_id, "sk": COUNTED}], "image_id, run_id"))
    assert rows == [{"image_id": image(1).image_id, "run_id": "run-1"}]


def test_predictions_on_a_day_are_the_counted_ones(store: PredictionStore) -> None:
    store.write([prediction(1, "cat", "v1"), prediction(2, "dog", "v1", date="2026-11-21")])
    store.write([prediction(1, "dog", "v2")])  # not counted: image 1 was counted by v1
    on_day = store.predictions_on("2026-11-20")
    assert [(r["image_uri"], r["model_version"]) for r in on_day] == [(image(1).image_id, "v1")]
    assert len(store.model_predictions()) == 3


def test_below_confidence_picks_one_model_version(store: PredictionStore) -> None:
    store.write([prediction(1, confidence=0.3), prediction(2, confidence=0.9), prediction(3, confidence=0.5)])
    store.write([prediction(4, model="v2", confidence=0.1)])
    low = sorted(r["image_uri"] for r in store.below_confidence("v1", 0.6))
    assert low == sorted([image(1).image_id, image(3).image_id])


def test_day_counts_sum_the_shards_and_other_days_stay_apart(store: PredictionStore) -> None:
    for start in range(0, 40, 10):  # several writes land on several random shards
        store.write([prediction(n, "cat" if n % 4 else "owl") for n in range(start, start + 10)])
    store.write([prediction(100, "cat", date="2026-11-21")])
    assert store.day_counts("2026-11-20") == {"cat": 30, "owl": 10}
    assert store.day_counts("2026-11-21") == {"cat": 1}
    assert store.day_counts("2026-11-22") == {}


def test_rollup_never_goes_down(store: PredictionStore) -> None:
    store.write_rollup("2026-11-20", {"cat": 5})
    store.write_rollup("2026-11-20", {"cat": 3})  # a stale recount finishing late
    store.write_rollup("2026-11-20", {"cat": 7, "dog": 1})
    assert store.rollups() == {"2026-11-20": {"cat": 7, "dog": 1}}


def test_the_shard_count_is_recorded_with_the_counts(store: PredictionStore) -> None:
    assert store.recorded_count_shards() is None
    store.write([])  # nothing written, nothing recorded
    assert store.recorded_count_shards() is None
    store.write([prediction(1)])
    assert store.recorded_count_shards() == 8
    assert store.rollups() == {}  # the record is not a day


@pytest.mark.integration
def test_a_reader_uses_the_recorded_shard_count(moto_aws: Any) -> None:
    aws = moto_aws
    writer = PredictionStore(aws.dynamodb, aws.predictions_table, aws.counts_table, 3)
    writer.write([prediction(n) for n in range(20)])
    reader = PredictionStore.deployed(aws.dynamodb, aws.predictions_table, aws.counts_table, 8)
    assert reader.count_shards == 3
    assert reader.day_counts("2026-11-20") == {"cat": 20}
    assert len(reader.predictions_on("2026-11-20")) == 20


def test_a_batch_that_died_before_its_fold_is_counted_once_by_whoever_folds(
    store: PredictionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = [prediction(n, "cat" if n % 3 else "owl") for n in range(12)]
    original = PredictionStore.fold

    def killed(self: PredictionStore, items: Any) -> Any:
        raise RuntimeError("killed between the puts and the fold")

    monkeypatch.setattr(PredictionStore, "fold", killed)
    with pytest.raises(RuntimeError):
        store.write(batch)
    monkeypatch.setattr(PredictionStore, "fold", original)
    assert store.day_counts("2026-11-20") == {}  # written, not yet counted
    assert store.ledger([p.image.image_id for p in batch]) == {p.image.image_id: {COUNTED} for p in batch}
    ids = [p.image.image_id for p in batch]
    with ThreadPoolExecutor(max_workers=3) as pool:  # the retry and two reconciliations, at once
        folded = list(pool.map(lambda _: store.fold_orphans("run-1", "b0", ids), range(3)))
    retry = store.write(batch)
    assert sum(folded) == 12 and (len(retry.written), len(retry.duplicates)) == (0, 12)
    assert store.fold_orphans("run-2", "b0", ids) == 0  # another run's batch owns none of them
    assert store.day_counts("2026-11-20") == {"cat": 8, "owl": 4}
    assert sorted(r["image_uri"] for r in store.predictions_on("2026-11-20")) == sorted(ids)


def test_a_many_class_prediction_keeps_its_top_probabilities(store: PredictionStore) -> None:
    labels = [f"class-{k:04d}" for k in range(1000)]
    probabilities = {label: (k + 1) / 500500 for k, label in enumerate(labels)}
    store.write([Prediction(image(1), labels[-1], probabilities[labels[-1]], probabilities, "v1", "run-1", "b0",
                            "2026-11-20")])
    (row,) = [r for r in store.predictions_for(image(1).image_id) if r["sk"] == "MODEL#v1"]
    assert row["probabilities_kept"] == "top 5 of 1000"
    assert sorted(row["probabilities"]) == labels[-5:]


@pytest.mark.integration
def test_rows_of_the_layout_before_fold_markers_read_and_count_as_they_did(moto_aws: Any) -> None:
    """A table written by the transaction layout (a MODEL# row, its COUNTED marker with date_shard,
    counter shards) needs no migration: readers see its rows, its counts add to the new ones, and a
    new write of its image versions does not count them again."""
    from lambdas.stores import stable_shard, to_item

    aws = moto_aws
    store = PredictionStore(aws.dynamodb, aws.predictions_table, aws.counts_table, 8)
    old = prediction(1, "cat", "v1")
    image_id = old.image.image_id
    row = store.prediction_row(old, "2026-11-20T11:00:00+00:00")
    marker = {"image_id": image_id, "sk": COUNTED, "date": old.date, "predicted_class": "cat",
              "date_shard": f"{old.date}#{stable_shard(image_id, 8):02d}", "prediction_id": old.prediction_id,
              "model_version": "v1", "run_id": "run-0", "created_at": row["created_at"]}
    for item in (row, marker):
        aws.dynamodb.put_item(TableName=aws.predictions_table, Item=to_item(item))
    aws.dynamodb.put_item(TableName=aws.counts_table, Item=to_item({"pk": f"{old.date}#03", "sk": "cat", "count": 1}))

    outcome = store.write([prediction(1, "cat", "v1"), prediction(1, "dog", "v2"), prediction(2, "dog", "v1")])
    assert len(outcome.duplicates) == 1 and [p.image.key for p in outcome.counted] == ["incoming/2.jpg"]
    assert store.day_counts(old.date) == {"cat": 1, "dog": 1}
    assert {r["sk"] for r in store.predictions_for(image_id)} == {"MODEL#v1", "MODEL#v2", COUNTED}
    assert sorted((r["image_uri"], r["model_version"]) for r in store.predictions_on(old.date)) == [
        (image_id, "v1"), (image(2).image_id, "v1")]
