"""Load: the results step writes a 10,000-image run's files with its memory flat.

The run's data is made directly in moto (a manifest, the batches' files as ClassifyBatch writes them, one
batch whose child died with its predictions only in the table, a failure for every fiftieth image), so the
step is measured alone, in seconds. What its own code holds (the load test's method: tracemalloc, filtered
to batchinfer's code; moto's copies of the data are S3's and DynamoDB's in AWS) is held to the same figure
for 1,000 and for 10,000 images."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from contract.results import failures_key, index_key, prediction_part_key
from lambdas.records import Batch, Failure, ImageVersion, Prediction
from lambdas.results import write_batch_predictions, write_run_results
from lambdas.steps import WriteRunResultsRequest
from lambdas.stores import FailureStore, ImageSource, PredictionStore
from tests.contract.conftest import MotoAws, moto_aws  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.reliability, pytest.mark.load]

# Small batches, so that 10,000 images are ten pages of the manifest (the step holds one page of batches).
BATCH = 10
OWN_CODE = ("*/lambdas/*", "*/contract/*")
# The step keeps a page of batches, one batch's lines and the run's file names (about 100 bytes a batch);
# failures go through a spooled file (the standard library's, up to 8 MB, then disk). Ten times the images
# may not cost its own code 1 MB more.
MAX_PEAK_GROWTH_MB = 1.0


def make_run(aws: MotoAws, run_id: str, images: int) -> WriteRunResultsRequest:
    source = ImageSource(aws.s3)
    predictions = PredictionStore(aws.dynamodb, aws.predictions_table, aws.counts_table, 4)
    failures = FailureStore(aws.dynamodb, aws.failures_table)
    batches = [Batch(f"{run_id}-{b:05d}", [
        ImageVersion(aws.bucket, f"incoming/{run_id}/{b:05d}-{n:03d}.jpg", f"v{b}.{n}", "2026-12-07T10:00:00+00:00")
        for n in range(BATCH)]) for b in range(images // BATCH)]
    source.write_json(aws.bucket, f"runs/{run_id}/manifest.json", [b.to_dict() for b in batches])
    for index, batch in enumerate(batches):
        scored = [Prediction(image, "3", 0.75, {str(d): 0.75 if d == 3 else 0.025 for d in range(10)}, "v1",
                             run_id, batch.batch_id, "2026-12-07", "litert-int8")
                  for n, image in enumerate(batch.items) if n or index % 5]
        if index == 0:
            predictions.write(scored)  # its child died after the writes: no file
        else:
            write_batch_predictions(source, aws.bucket, run_id, batch.batch_id, [(p, True) for p in scored])
    failures.record([Failure(image, "decode", "the image data is truncated or corrupt " + "x" * 200, "BadImage",
                             run_id, batch.batch_id)
                     for b, batch in enumerate(batches) for n, image in enumerate(batch.items) if not n and not b % 5])
    return WriteRunResultsRequest(run_id, aws.bucket, f"runs/{run_id}/manifest.json")


def step_held_mb(aws: MotoAws, request: WriteRunResultsRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[float, Any]:
    """The most the step's own code holds (the load test's own-code filter on tracemalloc), looked at each time
    it writes an object: with a page of batches, a batch's lines, or every failure read so far in hand."""
    source = ImageSource(aws.s3)
    predictions = PredictionStore(aws.dynamodb, aws.predictions_table, aws.counts_table, 4)
    failures = FailureStore(aws.dynamodb, aws.failures_table)
    held: list[float] = []

    def looked_at(write: Any) -> Any:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, p) for p in OWN_CODE])
            held.append(sum(stat.size for stat in snapshot.statistics("filename")) / 2**20)
            return write(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(source, "write_text", looked_at(source.write_text))
    monkeypatch.setattr(source, "upload_file", looked_at(source.upload_file))
    gc.collect()
    tracemalloc.start()
    try:
        result = write_run_results(request, aws.bucket, source, predictions, failures)
    finally:
        tracemalloc.stop()
    return max(held), result


def test_the_results_step_writes_ten_thousand_images_with_flat_memory(
        moto_aws: MotoAws, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    small = make_run(moto_aws, "small", 1_000)
    large = make_run(moto_aws, "large", 10_000)
    small_mb, _ = step_held_mb(moto_aws, small, monkeypatch)
    large_mb, result = step_held_mb(moto_aws, large, monkeypatch)
    print({"small_mb": round(small_mb, 2), "large_mb": round(large_mb, 2)})

    assert (result.prediction_files, result.filled_from_table, result.failure_lines) == (1_000, 1, 200)
    body = moto_aws.s3.get_object(Bucket=moto_aws.bucket, Key=failures_key("large"))["Body"].read()
    assert body.count(b"\n") == 200
    index = moto_aws.s3.get_object(Bucket=moto_aws.bucket, Key=index_key("predictions", "large"))["Body"].read()
    assert index.count(b"\n") == 1_000
    assert index.decode().split() == [f"s3://{moto_aws.bucket}/{prediction_part_key('large', f'large-{b:05d}')}"
                                      for b in range(1_000)]
    filled = moto_aws.s3.get_object(Bucket=moto_aws.bucket, Key=prediction_part_key("large", "large-00000"))
    assert filled["Body"].read().count(b"\n") == BATCH - 1  # its predictions, from the table
    assert large_mb - small_mb < MAX_PEAK_GROWTH_MB, (small_mb, large_mb)
