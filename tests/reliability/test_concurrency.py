"""Concurrency: overlapping score runs, duplicate S3 events and a scheduled run while event-started
runs are going — every image version is scored once and the counts are exact."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import counted_rows, output_of, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.reliability


@pytest.fixture
def busy_engine(demo_model: Any) -> Iterator[Any]:
    from demo import digits
    from engine.local_engine import LocalConfig, LocalEngine
    from lambdas.model_registry import ModelRegistry

    with LocalEngine(LocalConfig(name="rel-busy", batch_size=6, max_concurrency=2, pipe_batch_size=10)) as engine:
        registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
        registry.promote("v1")
        yield engine


def test_overlapping_runs_duplicate_events_and_a_scheduled_run_score_each_version_once(
    busy_engine: Any, held_out_digits: list[Any]
) -> None:
    engine = busy_engine
    versions = {upload(engine, f"incoming/{d.index:04d}.png", d.png) for d in held_out_digits[:30]}
    # The same key uploaded again: a new version, scored too.
    versions.add(upload(engine, f"incoming/{held_out_digits[0].index:04d}.png", held_out_digits[40].png))
    assert len(versions) == 31

    # Every upload's event delivered twice (SQS is at-least-once).
    sqs = engine.client("sqs")
    bodies = []
    while messages := sqs.receive_message(QueueUrl=engine.queue_url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(QueueUrl=engine.queue_url,
                                 Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                          for i, m in enumerate(messages)])
    assert len(bodies) == 31
    for body in bodies + bodies:
        sqs.send_message(QueueUrl=engine.queue_url, MessageBody=body)

    # Two score runs started by hand at once, the pipe's event-started runs, and the nightly
    # schedule's run ({"mode": "score"}, as its target input says) while those are going.
    started = [engine.start_execution({"mode": "score"}), engine.start_execution({"mode": "score"})]
    started += engine.pipe.drain()
    started.append(engine.start_execution({"mode": "score"}, name="scheduled-nightly"))
    assert len(started) >= 3 + 62 // engine.config.pipe_batch_size

    outputs = []
    for arn in started:
        description = engine.wait(arn, timeout=600)
        assert description["status"] == "SUCCEEDED", description
        outputs.append(output_of(description))

    rows = prediction_rows(engine)
    assert sorted(r["version_id"] for r in rows) == sorted(versions)  # one prediction per version
    assert len(counted_rows(engine)) == 31
    assert sum(o["images_failed"] for o in outputs) == 0
    assert sum(o["images_scored"] for o in outputs) == 31  # each version counted by exactly one run
    assert stored_counts(engine) == recount(engine)
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == 31
