"""Every step's event is parsed in one place, with one form of error; every result turns into the
exact dict the state machine reads."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.records import BadRecord
from lambdas.steps import (
    AggregateDailyCountsRequest,
    AggregateDailyCountsResult,
    BuildReplayManifestRequest,
    ClassifyBatchRequest,
    ClassifyBatchResult,
    CollectTrainingDataRequest,
    EvaluateCandidateRequest,
    ListNewVersionsRequest,
    ManifestResult,
    PromoteIfBetterRequest,
    RecordBatchFailureRequest,
    Seconds,
    TrainingHookRequest,
)

pytestmark = pytest.mark.unit

ITEM = {"bucket": "b", "key": "incoming/a.png", "version_id": "v1", "last_modified": "2026-11-20T10:00:00+00:00"}
COLLECT = {"train_manifest": "s3://b/runs/r/train.json", "holdout_manifest": "s3://b/runs/r/holdout.json",
           "labels": ["cat"], "model_registry": "s3://b/models/m", "current_version": "v1",
           "candidate_version": "v2"}


@pytest.mark.parametrize(
    ("request_type", "event", "message"),
    [
        (ListNewVersionsRequest, None, "ListNewVersions needs an object with 'run_id'"),
        (ListNewVersionsRequest, {"input": {}}, "ListNewVersions needs an object with 'run_id'"),
        (BuildReplayManifestRequest, [], "BuildReplayManifest needs an object with 'run_id'"),
        (BuildReplayManifestRequest, {"run_id": "r", "input": {"mode": "replay"}}, "replay needs the run to replay"),
        (ClassifyBatchRequest, {"run_id": "r"}, "ClassifyBatch needs an object with 'run_id' and 'batch'"),
        (ClassifyBatchRequest, {"run_id": "r", "batch": {"items": "x"}}, "a batch must be an object"),
        (RecordBatchFailureRequest, {"run_id": "r", "batch": {"items": []}},
         "RecordBatchFailure needs an object with 'run_id', 'batch' and 'error'"),
        (AggregateDailyCountsRequest, {"mode": "score"}, "AggregateDailyCounts needs an object with 'run_id'"),
        (AggregateDailyCountsRequest, {"run_id": "r", "notes": "n"}, "'notes' as a list"),
        (AggregateDailyCountsRequest, {"run_id": "r", "already_done": "many"}, "'already_done' as a whole number"),
        (CollectTrainingDataRequest, "run", "CollectTrainingData needs an object with 'run_id'"),
        (TrainingHookRequest, {"run_id": "r"}, "the retraining steps need an object with 'run_id' and 'collect'"),
        (TrainingHookRequest, {"run_id": "r", "collect": {"labels": ["cat"]}},
         "the training hook needs train_manifest, model_registry, current_version, candidate_version"),
        (EvaluateCandidateRequest, {"run_id": "r", "collect": {"labels": ["cat"]}},
         "EvaluateCandidate needs the collect step's holdout_manifest and model_registry"),
        (PromoteIfBetterRequest, {"run_id": "r", "collect": {}},
         "PromoteIfBetter needs an object with 'run_id', 'collect' and 'evaluation'"),
        (PromoteIfBetterRequest, {"run_id": "r", "collect": {}, "evaluation": {"candidate_version": "v2"}},
         "PromoteIfBetter needs the evaluation's candidate_version and accuracies"),
        (PromoteIfBetterRequest, {"run_id": "r", "collect": {}, "evaluation": {
            "candidate_version": "v2", "candidate_accuracy": "high"}}, "candidate_version and accuracies"),
    ],
)
def test_a_malformed_event_gets_a_clear_error(request_type: Any, event: Any, message: str) -> None:
    with pytest.raises(BadRecord, match=message):
        request_type.from_event(event)


def test_a_listing_event_from_s3_uploads_keeps_the_good_records() -> None:
    # As S3 sends it through EventBridge (Powertools' parser model checks every field AWS always sets).
    good = {"version": "0", "id": "2d4eba74-fd51-3966-4bfa-b013c9da8ff1", "detail-type": "Object Created",
            "source": "aws.s3", "account": "123456789012", "time": "2026-11-25T16:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:s3:::b"],
            "detail": {"version": "0", "bucket": {"name": "b"},
                       "object": {"key": "incoming/a%20b.png", "size": 3, "etag": "e", "version-id": "v"},
                       "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject"}}
    request = ListNewVersionsRequest.from_event({"run_id": "r", "input": {"events": [good, {"body": "{}"}]}})
    assert [(o.key, o.version_id) for o in request.objects or ()] == [("incoming/a b.png", "v")]
    assert request.rejected_events[0].startswith("record 1: not an S3 Object Created event")


def test_well_formed_events_parse() -> None:
    assert ListNewVersionsRequest.from_event({"run_id": "r", "input": {"prefix": "incoming/x/"}}).prefix == (
        "incoming/x/")
    assert BuildReplayManifestRequest.from_event({"run_id": "r", "input": {"run": "old"}}).replay_of == "old"
    classify = ClassifyBatchRequest.from_event({"run_id": "r", "batch": {"batch_id": "b0", "items": [ITEM]}})
    assert classify.batch.items[0].key == "incoming/a.png"
    failure = RecordBatchFailureRequest.from_event({"run_id": "r", "batch": {"items": []}, "error": None})
    assert failure.batch.batch_id == "batch" and failure.error is None
    aggregate = AggregateDailyCountsRequest.from_event({"run_id": "r", "mode": None, "checkpoint": None,
                                                        "notes": None, "already_done": None})
    assert (aggregate.mode, aggregate.notes, aggregate.already_done) == ("score", (), 0)
    evaluate = EvaluateCandidateRequest.from_event({"run_id": "r", "collect": COLLECT, "training": {
        "candidate_version": "v3"}})
    assert evaluate.candidate_version == "v3"
    assert TrainingHookRequest.from_event({"run_id": "r", "collect": COLLECT}).collect == COLLECT
    promote = PromoteIfBetterRequest.from_event({"run_id": "r", "collect": COLLECT, "evaluation": {
        "candidate_version": "v2", "candidate_accuracy": "0.9", "current_accuracy": None}})
    assert (promote.candidate_accuracy, promote.current_accuracy) == (0.9, None)


def test_results_become_the_dicts_the_state_machine_reads() -> None:
    manifest = ManifestResult("b", "runs/r/manifest.json", 1, 2, 4, 0, None, [])
    assert list(manifest.to_dict()) == ["manifest_bucket", "manifest_key", "batches", "images", "max_concurrency",
                                        "already_done", "checkpoint", "notes", "slice", "slices", "more",
                                        "run_batches", "run_images", "next_execution"]
    # A run of one slice (a replay, an event-started run): the run's batches and images are the slice's.
    assert (manifest.slice, manifest.more, manifest.run_batches, manifest.run_images) == (1, False, 1, 2)
    classify = ClassifyBatchResult("b0", "v1", "litert-int8", 1, 1, 1, 0, 1, 0, ["2026-11-20"], [],
                                   Seconds(0.1, 0.2, 0.3))
    assert classify.to_dict()["seconds"] == {"read_decode": 0.1, "inference": 0.2, "total": 0.3}
    quiet = AggregateDailyCountsResult("r", "score", 1, 1, 1, 0, 0, {"2026-11-20": {"cat": 1}})
    assert "notes" not in quiet.to_dict() and "replay" not in quiet.to_dict()
    loud = AggregateDailyCountsResult("r", "score", 1, 0, 0, 0, 1, {}, ["a note"], "batchinfer replay r")
    assert (loud.to_dict()["notes"], loud.to_dict()["replay"]) == (["a note"], "batchinfer replay r")
