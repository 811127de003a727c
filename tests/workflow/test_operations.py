"""Operating runs through the CLI against a served local stack: start, runs, show, replay; the
S3 event path with duplicates and bursts."""

from __future__ import annotations

import math
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.app import app
from engine import lambda_bridge
from operate.operations import RunProgress
from tests.conftest import cli, cli_json, counted_rows, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.workflow


def test_start_runs_show(served: Any, held_out_digits: list[Any]) -> None:
    for digit in held_out_digits[:10]:
        upload(served, f"incoming/{digit.index}.png", digit.png)
    started = cli_json("start", "--mode", "score", "--wait")
    run_id = started["run_id"]
    assert started["status"] == "SUCCEEDED" and started["output"]["images_scored"] == 10

    (row,) = cli_json("runs")
    assert (row["run_id"], row["mode"], row["status"], row["scored"], row["failed"]) == (
        run_id, "score", "SUCCEEDED", 10, 0)
    assert row["seconds"] > 0

    detail = cli_json("show", run_id)
    states = [step["state"] for step in detail["timeline"]]
    assert states == ["RouteByMode", "ListNewVersions", "AnythingToScore", "Classify", "ReconcileBatches",
                      "ClassifyOutcome", "WriteRunResults", "MoreToScore", "AggregateDailyCounts"]
    assert all(step["seconds"] is not None for step in detail["timeline"])
    assert detail["map_runs"][0]["items"]["total"] == 2 and detail["map_runs"][0]["items"]["succeeded"] == 2
    assert detail["failures"] == [] and detail["console_url"] is None

    table = cli("show", run_id)
    assert "AggregateDailyCounts" in table.stdout and "map run SUCCEEDED" in table.stdout
    assert f"runs/{run_id}/results/failures.jsonl" in table.stdout  # the summary links the result files

    # Progress is the current Map Run's item counts and the latest slice's listing.
    calls: list[str] = []
    target = served.target()
    real_client = target.client

    counted: set[int] = set()

    def counting_client(service: str, **kwargs: Any) -> Any:
        client = real_client(service, **kwargs)
        if id(client) not in counted:  # a Target keeps one client a service: count its calls once
            counted.add(id(client))
            client.meta.events.register("before-call", lambda model, **_: calls.append(f"{service}:{model.name}"))
        return client

    object.__setattr__(target, "client", counting_client)  # Target is frozen; this one counts calls
    progress = RunProgress(target, run_id)
    first = progress()
    assert (first.done, first.planned, first.slice, first.slices) == (2, 2, 1, 1) and first.seconds_left == 0
    assert first.describe() == "2/2 batches, about 0 s left"
    calls.clear()
    again = progress()
    assert (again.done, again.planned) == (2, 2)
    # An ended Map Run sends the poll back to the latest listing: still a handful of calls, whatever the run's size.
    assert sorted(set(calls)) == ["stepfunctions:DescribeMapRun", "stepfunctions:GetExecutionHistory",
                                  "stepfunctions:ListMapRuns"]

    day = prediction_rows(served)[0]["date"]
    listed = cli_json("predictions", "--date", day)
    assert len(listed) == 10 and all(r["date"] == day for r in listed)
    # --json carries every field the table keeps for a prediction, and which probabilities it keeps
    for row in listed:
        assert set(row) == {"date", "class", "confidence", "probabilities", "captured_at", "model_version",
                            "runtime", "image", "bucket", "key", "version_id", "run_id", "batch_id",
                            "prediction_id", "created_at", "kept"}
        assert row["batch_id"].startswith(f"{run_id}-") and row["runtime"] == "keras"
        assert row["image"].startswith(f"s3://{row['bucket']}/{row['key']}?versionId=")
        assert max(row["probabilities"], key=row["probabilities"].get) == row["class"]
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-3
    assert cli_json("predictions", "--date", "1999-01-01") == []
    bad = CliRunner().invoke(app, ["predictions", "--date", "yesterday"])
    assert bad.exit_code == 2 and "--date must be a day as YYYY-MM-DD" in bad.output


def test_failures_then_replay_counts_exactly_once(served: Any, held_out_digits: list[Any]) -> None:
    for digit in held_out_digits[:20]:  # batches of 8: 8, 8, 4 (+ the corrupt one)
        upload(served, f"incoming/{digit.index:04d}.png", digit.png)
    upload(served, "incoming/zz-corrupt.png", held_out_digits[30].png[:100])

    def crash_first_batch(function: str, event: Any) -> None:
        if function.endswith("ClassifyBatch") and event["batch"]["batch_id"].endswith("-00000"):
            raise RuntimeError("simulated crash")

    lambda_bridge.set_fault_hook(crash_first_batch)
    try:
        first = cli_json("start", "--wait")
    finally:
        lambda_bridge.set_fault_hook(None)
    assert first["status"] == "SUCCEEDED"
    assert first["output"]["images_scored"] == 12 and first["output"]["images_failed"] == 9
    reasons = {f["object"].rsplit("/", 1)[-1]: f["reason"] for f in first["failures"]}
    assert "truncated or corrupt" in reasons["zz-corrupt.png"]
    assert sum("RuntimeError: simulated crash" in r for r in reasons.values()) == 8
    assert first["output"]["replay"] == f"batchinfer replay {first['run_id']}"

    # Fix the corrupt object (a new upload of the same key) and replay the failed items.
    upload(served, "incoming/zz-corrupt.png", held_out_digits[30].png)
    replayed = cli_json("replay", first["run_id"], "--wait")
    assert replayed["status"] == "SUCCEEDED" and replayed["mode"] == "replay"
    assert replayed["output"]["images_scored"] == 9 and replayed["output"]["images_failed"] == 0
    assert any("replaced by the newer upload" in note for note in replayed["output"]["notes"])

    assert len(counted_rows(served)) == 21 and len(prediction_rows(served)) == 21
    assert stored_counts(served) == recount(served)
    assert sum(stored_counts(served)[replayed["started"][:10]].values()) == 21

    again = cli_json("replay", first["run_id"], "--wait")  # replaying twice changes nothing
    assert again["output"]["images_scored"] == 0 and again["output"]["already_scored"] == 9
    assert len(counted_rows(served)) == 21 and stored_counts(served) == recount(served)


def test_replay_of_an_item_still_broken_keeps_it_failed(served: Any) -> None:
    upload(served, "incoming/broken.png", b"still not an image")
    first = cli_json("start", "--wait")
    replayed = cli_json("replay", first["run_id"], "--wait")
    assert replayed["output"]["images_failed"] == 1
    assert replayed["failures"][0]["reason"] == "not an image: the bytes are in no format Pillow can read"


def test_the_same_s3_event_twice_gives_one_prediction(served: Any, held_out_digits: list[Any]) -> None:
    upload(served, "incoming/once.png", held_out_digits[0].png)
    sqs = served.client("sqs")
    (message,) = sqs.receive_message(QueueUrl=served.queue_url, MaxNumberOfMessages=10)["Messages"]
    sqs.change_message_visibility(QueueUrl=served.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                  VisibilityTimeout=0)
    sqs.send_message(QueueUrl=served.queue_url, MessageBody=message["Body"])  # delivered again
    first = served.pipe.drain()
    assert len(first) == 1
    sqs.send_message(QueueUrl=served.queue_url, MessageBody=message["Body"])  # and once more, later
    first += served.pipe.drain()
    for arn in first:
        assert served.wait(arn)["status"] == "SUCCEEDED"
    assert len(prediction_rows(served)) == 1 and len(counted_rows(served)) == 1


def test_a_burst_of_uploads_starts_few_executions_and_scores_each_once(
    served: Any, held_out_digits: list[Any]
) -> None:
    burst = 200
    for n in range(burst):
        upload(served, f"incoming/burst-{n:03d}.png", held_out_digits[n % len(held_out_digits)].png)
    executions = served.pipe.drain()
    assert len(executions) <= math.ceil(burst / served.config.pipe_batch_size)
    for arn in executions:
        assert served.wait(arn, timeout=600)["status"] == "SUCCEEDED"
    rows = prediction_rows(served)
    assert len(rows) == burst and len({r["version_id"] for r in rows}) == burst
    assert stored_counts(served) == recount(served)
    assert sum(sum(day.values()) for day in stored_counts(served).values()) == burst


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["start", "--mode", "bogus"], "unknown mode 'bogus'"),
        (["start", "--mode", "replay"], "--mode replay needs --run"),
        (["show", "no-such-run"], "unknown run id 'no-such-run'"),
        (["replay", "no-such-run"], "unknown run id 'no-such-run'"),
    ],
)
def test_clear_errors_with_a_non_zero_exit(served: Any, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and message in result.output


def test_no_local_stack_running(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHINFER_CACHE", str(tmp_path))
    result = CliRunner().invoke(app, ["runs"])
    assert result.exit_code == 2
    assert "the local stack is not running: start it with `batchinfer local serve`" in result.output


def test_stack_not_found_and_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = CliRunner().invoke(app, ["--stack", "prod", "runs"])
    assert result.exit_code == 2 and "no AWS credentials" in result.output
    with mock_aws():
        result = CliRunner().invoke(app, ["--stack", "prod", "runs"])
    assert result.exit_code == 2 and "stack 'prod' not found in eu-west-1" in result.output
