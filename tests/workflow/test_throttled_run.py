"""A score run under AWS's throughput quotas, scaled down so that they bind: DynamoDB partitions and S3 prefix
rates throttle, the SDK's retries and the stores' backoff ride them out, and nothing is lost or counted twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine import throttling
from tests.conftest import counted_rows, output_of, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.workflow

IMAGES = 100
# A table's 4 partitions at 3 write units a second (of 1,000) and the images' prefix at 20 GETs a second
# (of 5,500). A bucket holds one second of its rate, and a batch writes its images' puts (one a image) and
# reads its images at once, so every batch overflows both, however the throttling spaces the batches out;
# the run's ~120 write units and 100 GETs take at least 10 and 5 seconds.
QUOTAS = "dynamodb.partition_writes=3,dynamodb.partition_reads=300,s3.prefix_reads=20,s3.prefix_writes=100"


@pytest.fixture
def throttled_engine(scoring_engine: Any) -> Iterator[Any]:
    yield scoring_engine
    throttling.configure(throttling.Quotas())


def test_a_score_run_under_dynamodb_and_s3_throttling_loses_nothing(
        throttled_engine: Any, held_out_digits: list[Any]) -> None:
    engine = throttled_engine
    versions = [upload(engine, f"incoming/{n:04d}.png", digit.png, digit.label)
                for n, digit in enumerate((held_out_digits * 2)[:IMAGES])]
    throttling.configure(throttling.Quotas.parse(QUOTAS), engine.config.time_scale)

    description = engine.run({"mode": "score"})

    assert description["status"] == "SUCCEEDED", description
    throttled = engine.throttled()
    throttling.configure(throttling.Quotas())  # the checks below read freely
    summary = output_of(description)
    assert summary["images_scored"] == IMAGES and summary["images_failed"] == 0
    rows = prediction_rows(engine)
    assert sorted(r["version_id"] for r in rows) == sorted(versions)  # every version scored, once
    assert len(counted_rows(engine)) == IMAGES
    assert stored_counts(engine) == recount(engine) == summary["daily_counts"]
    assert throttled["dynamodb"] > 0 and throttled["s3"] > 0, throttled
    # The run's summary counts what its batches saw throttled (the SDK retried them): some of what the engine
    # answered, never more (the listing, the other steps and the batches' failed attempts saw the rest).
    counted = summary["throttled"]
    assert set(counted) == {"dynamodb", "s3"}, counted
    assert 0 < counted["dynamodb"] <= throttled["dynamodb"] and 0 < counted["s3"] <= throttled["s3"], (
        counted, throttled)
