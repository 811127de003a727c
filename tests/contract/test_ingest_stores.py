"""The ingest ledger's stores, on moto and on the in-memory fakes: the ledger (idempotent puts,
pages per shard, removal), the ingest queue (a received message stays hidden until deleted) and the
last sweep (moves forward only)."""

from __future__ import annotations

from typing import Any

import pytest

from contract.resource_spec import INGEST_LEDGER, RUN_STATE
from lambdas.records import ImageVersion
from tests.contract.conftest import BACKENDS, BUCKET


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest) -> tuple[Any, Any, Any]:
    if request.param == "fake":
        from lambdas.ingest_fakes import InMemoryIngestLedger, InMemoryReconciliationState, InMemoryUploadEventQueue

        return InMemoryIngestLedger(), InMemoryUploadEventQueue(), InMemoryReconciliationState()
    from lambdas.ingest_stores import IngestLedger, ReconciliationState, UploadEventQueue

    aws = request.getfixturevalue("moto_aws")
    import boto3

    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = UploadEventQueue(sqs, sqs.create_queue(QueueName="contract-ingest")["QueueUrl"])
    queue.send = lambda body: sqs.send_message(QueueUrl=queue.queue_url, MessageBody=body)  # type: ignore[attr-defined]
    return (IngestLedger(aws.dynamodb, aws.tables[INGEST_LEDGER.logical_id]), queue,
            ReconciliationState(aws.dynamodb, aws.tables[RUN_STATE.logical_id]))


def version(n: int) -> ImageVersion:
    return ImageVersion(BUCKET, f"incoming/{n:03d}.png", f"v{n}", "2026-11-20T10:00:00+00:00", 10)


def test_the_ledger_keeps_each_version_once_spread_over_shards_and_forgets_on_removal(stores: Any) -> None:
    ledger, _, _ = stores
    versions = [version(n) for n in range(60)]
    ledger.record(versions, seen_by="event")
    ledger.record(versions[:10] + versions[:10], seen_by="reconciliation")  # again, and twice in one call
    by_shard = {f"{n:02d}": [v for page in ledger.pages(f"{n:02d}", page_size=3) for v in page]
                for n in range(ledger.shards)}
    assert sorted(v.image_id for vs in by_shard.values() for v in vs) == sorted(v.image_id for v in versions)
    assert sum(1 for vs in by_shard.values() if vs) > ledger.shards // 2  # no single hot partition
    assert all(max(len(p) for p in ledger.pages(s, page_size=3)) <= 3 for s, vs in by_shard.items() if vs)
    assert by_shard[ledger.shard_of(versions[0].image_id)][0].to_dict().keys() == versions[0].to_dict().keys()
    ledger.remove([v.image_id for v in versions[:50]] + [versions[0].image_id])
    assert sorted(e["image_id"] for e in ledger.all_entries()) == sorted(v.image_id for v in versions[50:])


def test_a_received_message_is_hidden_until_deleted(stores: Any) -> None:
    _, queue, _ = stores
    for n in range(12):
        queue.send(f"body-{n}")
    first = queue.receive()
    second = queue.receive()
    assert len(first) == 10 and len(second) == 2
    assert {m["Body"] for m in first + second} == {f"body-{n}" for n in range(12)}
    queue.delete(first + second)
    assert queue.receive() == []


def test_the_last_sweep_moves_forward_only(stores: Any) -> None:
    _, _, sweeps = stores
    scope = f"{BUCKET}/incoming/"
    assert sweeps.swept_since(scope) is None
    assert sweeps.record_sweep(scope, "2026-11-20T10:00:00+00:00", "sweep-1") is True
    assert sweeps.record_sweep(scope, "2026-11-19T10:00:00+00:00", "sweep-0") is False
    assert sweeps.swept_since(scope) == "2026-11-20T10:00:00+00:00"
