"""The nightly listing on the embedded engine: the ingest ledger fed by upload events, and the
reconciliation sweep that finds what no event announced. Real definition, real model, exact counts."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.stores import ImageSource
from tests.conftest import counted_rows, output_of, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.workflow


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every listing of the bucket any function makes (ListObjectVersions, whole or a page at a time)."""
    calls: list[str] = []
    whole, paged = ImageSource.list_versions, ImageSource.version_pages

    def list_versions(self: ImageSource, bucket: str, prefix: str) -> Any:
        calls.append(f"list_versions {prefix}")
        return whole(self, bucket, prefix)

    def version_pages(self: ImageSource, bucket: str, prefix: str, cursor: Any = None) -> Any:
        calls.append(f"version_pages {prefix}")
        return paged(self, bucket, prefix, cursor)

    monkeypatch.setattr(ImageSource, "list_versions", list_versions)
    monkeypatch.setattr(ImageSource, "version_pages", version_pages)
    return calls


def upload_digits(engine: Any, digits: list[Any], prefix: str = "incoming/") -> set[str]:
    return {upload(engine, f"{prefix}{d.index:04d}.png", d.png, d.label) for d in digits}


def assert_exact(engine: Any, versions: set[str]) -> None:
    assert sorted(r["version_id"] for r in prediction_rows(engine)) == sorted(versions)
    assert len(counted_rows(engine)) == len(versions)
    assert stored_counts(engine) == recount(engine)
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == len(versions)


def test_the_nightly_run_scores_new_versions_from_the_ledger_without_listing_the_bucket(
    scoring_engine: Any, held_out_digits: list[Any], listings: list[str]
) -> None:
    engine = scoring_engine
    first = upload_digits(engine, held_out_digits[:20])
    night_one = output_of(engine.run({"mode": "score"}))
    assert (night_one["images_scored"], night_one["images_failed"]) == (20, 0)

    second = upload_digits(engine, held_out_digits[20:30], prefix="incoming/day-2/")
    night_two = output_of(engine.run({"mode": "score"}))
    assert (night_two["images_scored"], night_two["images_failed"]) == (10, 0)
    assert listings == []  # neither night listed the bucket: the work was the new versions only
    assert_exact(engine, first | second)


def test_a_version_uploaded_with_the_event_path_off_is_found_by_the_reconciliation(
    scoring_engine: Any, held_out_digits: list[Any], listings: list[str]
) -> None:
    engine = scoring_engine
    announced = upload_digits(engine, held_out_digits[:8])
    assert output_of(engine.run({"mode": "score"}))["images_scored"] == 8

    s3, bucket = engine.client("s3"), engine.config.bucket
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})  # the event path off
    lost = upload_digits(engine, held_out_digits[8:13], prefix="incoming/no-event/")
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    nightly = output_of(engine.run({"mode": "score"}))
    assert nightly["images_scored"] == 0  # the ledger never heard of them

    swept = engine.run({"mode": "reconcile"})
    assert swept["status"] == "SUCCEEDED", swept
    summary = output_of(swept)
    assert (summary["mode"], summary["images_scored"], summary["images_failed"]) == ("reconcile", 5, 0)
    assert listings and all(call == "version_pages incoming/" for call in listings)
    assert_exact(engine, announced | lost)

    # A second sweep finds nothing more, and a night after it scores nothing twice.
    assert output_of(engine.run({"mode": "reconcile"}))["images_scored"] == 0
    assert output_of(engine.run({"mode": "score"}))["images_scored"] == 0
    assert_exact(engine, announced | lost)


def test_duplicated_and_late_events_score_each_version_once(
    scoring_engine: Any, held_out_digits: list[Any]
) -> None:
    engine = scoring_engine
    sqs, ingest = engine.client("sqs"), engine.config.ingest_queue_url
    versions = upload_digits(engine, held_out_digits[:12])
    bodies = []
    while messages := sqs.receive_message(QueueUrl=ingest, MaxNumberOfMessages=10).get("Messages"):
        bodies += [m["Body"] for m in messages]
        sqs.delete_message_batch(QueueUrl=ingest, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                                                           for n, m in enumerate(messages)])
    assert len(bodies) == 12
    on_time, late = bodies[:8], bodies[8:]
    for body in on_time * 3:  # every event delivered three times
        sqs.send_message(QueueUrl=ingest, MessageBody=body)
    night_one = output_of(engine.run({"mode": "score"}))
    assert night_one["images_scored"] == 8

    # The other four events arrive after that run (an upload that finished late, a slow
    # delivery): the next run scores them, and the duplicates of the first eight count nothing.
    for body in late + on_time:
        sqs.send_message(QueueUrl=ingest, MessageBody=body)
    night_two = output_of(engine.run({"mode": "score"}))
    assert (night_two["images_scored"], night_two["already_scored"]) == (4, 8)
    assert_exact(engine, versions)
