"""ClassifyBatch: read a batch of image versions concurrently, classify them in one forward pass,
write the predictions idempotently, and turn every bad image into a failure record."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from contract.settings import Settings
from inference_image.preprocess import BadImage, decode_image
from lambdas.records import Failure, ImageVersion, Prediction
from lambdas.results import batch_lines, write_batch_predictions
from lambdas.steps import ClassifyBatchRequest, ClassifyBatchResult, Seconds
from lambdas.stores import (
    FailureStore,
    ImageSource,
    ImageTooLarge,
    ObjectUnreadable,
    PredictionStore,
    RunStateStore,
    WriteOutcome,
)
from lambdas.throttles import carrying_context, current

# Images per forward pass inside a batch: small enough that reading the next sub-batch overlaps
# the model, large enough to keep the forward pass as fast per image as a whole batch.
SUB_BATCH = 8


class Model(Protocol):
    version: str
    labels: list[str]
    input_size: tuple[int, int]
    channels: int
    runtime: str

    def predict(self, images: np.ndarray) -> np.ndarray: ...


def _load(
    image: ImageVersion, source: ImageSource, model: Model, settings: Settings
) -> np.ndarray | tuple[str, str, str]:
    """The model input for one image, or (stage, error type, reason) when it cannot be had."""
    try:
        data = source.read(image, settings.max_image_bytes)
    except ImageTooLarge as error:
        return "read", "ImageTooLarge", str(error)
    except ObjectUnreadable as error:
        # Throttling and other transient errors are not caught: they fail the batch, so its retry policy applies.
        return "read", error.code, str(error)
    try:
        return decode_image(data, model.input_size, model.channels, settings.max_image_pixels)
    except BadImage as error:
        return "decode", "BadImage", str(error)


@dataclass
class ReadAndPredicted:
    """A batch after reading, decoding and the forward passes."""

    good: list[tuple[ImageVersion, np.ndarray]]  # in batch order, with the model input of each
    probabilities: np.ndarray  # one row per good image
    failures: list[tuple[ImageVersion, tuple[str, str, str]]]  # (image, (stage, error type, reason))
    read_seconds: float
    inference_seconds: float


def read_and_predict(items: list[ImageVersion], settings: Settings, model: Model,
                     source: ImageSource) -> ReadAndPredicted:
    loaded: list[np.ndarray | tuple[str, str, str]] = []
    good: list[tuple[ImageVersion, np.ndarray]] = []
    parts: list[np.ndarray] = []
    read_seconds = inference_seconds = 0.0
    with ThreadPoolExecutor(max_workers=min(settings.read_threads, max(1, len(items)))) as pool:
        load = carrying_context(_load)  # its reads count in the invocation's throttle tally
        futures = [pool.submit(load, image, source, model, settings) for image in items]
        # Each sub-batch goes through the model as soon as its images are in, while the pool
        # goes on reading and decoding the next ones (the forward pass releases the GIL).
        for start in range(0, len(items), SUB_BATCH):
            waited = time.perf_counter()
            chunk = [(image, future.result()) for image, future in
                     zip(items[start:start + SUB_BATCH], futures[start:start + SUB_BATCH], strict=True)]
            read_seconds += time.perf_counter() - waited
            loaded.extend(array for _, array in chunk)
            ready = [(image, array) for image, array in chunk if isinstance(array, np.ndarray)]
            if ready:
                inference_started = time.perf_counter()
                parts.append(model.predict(np.stack([array for _, array in ready])))
                inference_seconds += time.perf_counter() - inference_started
                good.extend(ready)
    failures = [(image, r) for image, r in zip(items, loaded, strict=True) if not isinstance(r, np.ndarray)]
    probabilities = np.concatenate(parts) if parts else np.zeros((0, len(model.labels)))
    return ReadAndPredicted(good, probabilities, failures, read_seconds, inference_seconds)


def to_predictions(done: ReadAndPredicted, model: Model, request: ClassifyBatchRequest,
                   settings: Settings) -> list[Prediction]:
    zone = settings.zone
    batch_predictions = []
    for (image, _), row in zip(done.good, done.probabilities, strict=True):
        best = int(np.argmax(row))
        batch_predictions.append(
            Prediction(
                image=image,
                predicted_class=model.labels[best],
                confidence=float(row[best]),
                probabilities={label: float(p) for label, p in zip(model.labels, row, strict=True)},
                model_version=model.version,
                run_id=request.run_id,
                batch_id=request.batch.batch_id,
                date=image.capture_date(zone),
                runtime=model.runtime,
            )
        )
    return batch_predictions


def write_counting_retries(batch_predictions: list[Prediction], run_id: str,
                           predictions: PredictionStore) -> tuple[WriteOutcome, list[tuple[Prediction, bool]]]:
    """Write the predictions; (the outcome, the batch's predictions that are this run's, each with whether
    this run counted it). A retried batch finds its own earlier writes: they are still this run's work."""
    outcome = predictions.write(batch_predictions)
    counted_ids = {p.image.image_id for p in outcome.counted}
    return outcome, batch_lines(outcome.written, counted_ids, outcome.duplicates, outcome.own)


def classify_batch(
    request: ClassifyBatchRequest,
    settings: Settings,
    model: Model,
    source: ImageSource,
    predictions: PredictionStore,
    failures: FailureStore,
    state: RunStateStore,
) -> ClassifyBatchResult:
    started = time.perf_counter()
    items = request.batch.items
    done = read_and_predict(items, settings, model, source)
    failed = [
        Failure(image=image, stage=stage, error_type=error_type, reason=reason, run_id=request.run_id,
                batch_id=request.batch.batch_id)
        for image, (stage, error_type, reason) in done.failures
    ]
    batch_predictions = to_predictions(done, model, request, settings)
    outcome, lines = write_counting_retries(batch_predictions, request.run_id, predictions)
    counted = sum(1 for _, was_counted in lines if was_counted)
    # The batch's result file, named by the batch: a retry writes the same object again.
    write_batch_predictions(source, settings.bucket, request.run_id, request.batch.batch_id, lines)
    if failed:
        failures.record(failed)
        predictions.mark_failed(failed)
    result = ClassifyBatchResult(
        batch_id=request.batch.batch_id,
        model_version=model.version,
        runtime=model.runtime,
        images=len(items),
        written=len(outcome.written),
        counted=counted,
        duplicates=len(outcome.duplicates),
        scored=len(done.good),
        failed=len(failed),
        dates=sorted({p.date for p in batch_predictions}),
        failures=[{"image_id": f.image.image_id, "stage": f.stage, "reason": f.reason} for f in failed],
        seconds=Seconds(
            read_decode=round(done.read_seconds, 4),
            inference=round(done.inference_seconds, 4),
            total=round(time.perf_counter() - started, 4),
        ),
        throttled=current(),  # AggregateDailyCounts sums them into the run's summary
    )
    state.put_batch_result(request.run_id, request.batch.batch_id, result.to_dict())
    return result
