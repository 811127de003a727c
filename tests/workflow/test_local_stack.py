"""`batchinfer local serve` as a user runs it: state kept across a restart, several stacks at once,
a taken port, a state that cannot be restored, a hard kill; the pipe's log line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from cli.app import app
from lambdas.stores import scan_all
from tests.conftest import free_port

pytestmark = pytest.mark.workflow

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "batchinfer-local-images"


class Stack:
    """One `batchinfer local serve` process."""

    def __init__(self, cache: Path, port: int, *extra: str):
        self.port = port
        self.log = cache / f"serve-{port}-{time.monotonic_ns()}.log"
        env = {**os.environ, "BATCHINFER_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
        env.pop("BATCHINFER_PORT", None)
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli.app", "local", "serve", "--port", str(port), "--pipe-window", "1",
                 "--batch-size", "8", *extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ctrl-C stops it." in self.output():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"local serve ended with {self.process.returncode}: {self.output()}")
            time.sleep(0.5)
        raise AssertionError(f"local serve not ready after {timeout} s: {self.output()}")

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=120)

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")

    def dynamodb(self) -> Any:
        return boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                            aws_access_key_id="local", aws_secret_access_key="local")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_model: Any) -> Path:
    """A cache of its own, holding the trained demo model so that serve does not train it again."""
    shutil.copytree(demo_model[0].parent, tmp_path / demo_model[0].parent.name)
    monkeypatch.setenv("BATCHINFER_CACHE", str(tmp_path))
    monkeypatch.delenv("BATCHINFER_PORT", raising=False)
    return tmp_path


@pytest.fixture
def stacks() -> Any:
    started: list[Stack] = []
    yield started
    for stack in started:
        if stack.process.poll() is None:
            stack.stop(signal.SIGKILL)


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def as_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def daily_counts(stack: Stack) -> list[dict[str, Any]]:
    rows = scan_all(stack.dynamodb(), TableName="batchinfer-local-dailycounts")
    return sorted(rows, key=lambda r: (r["pk"], r["sk"]))


def test_state_survives_sigterm_and_restart(cache: Path, stacks: list[Stack], held_out_digits: list[Any]) -> None:
    port = free_port()
    # The uploads start one run through the pipe, as in AWS: it fires when its 13 records are in.
    pipe = ("--pipe-window", "600", "--pipe-batch-size", "13")
    first = Stack(cache, port, *pipe)
    stacks.append(first)
    first.wait_ready()
    s3 = first.s3()
    for digit in held_out_digits[:12]:
        s3.put_object(Bucket=BUCKET, Key=f"incoming/camera/{digit.index}.png", Body=digit.png)
    s3.put_object(Bucket=BUCKET, Key="incoming/camera/broken.png", Body=b"not an image")
    deadline = time.monotonic() + 300
    while not [r for r in as_json("runs") if r["status"] != "RUNNING"]:
        assert time.monotonic() < deadline, first.output()
        time.sleep(1)
    [started] = as_json("runs")
    scored = as_json("show", started["run_id"])
    assert scored["output"]["images_scored"] == 12 and scored["output"]["images_failed"] == 1
    run_id = scored["run_id"]
    before = {"runs": as_json("runs"), "show": as_json("show", run_id), "predictions": as_json("predictions"),
              "counts": daily_counts(first)}
    versions_before = s3.list_object_versions(Bucket=BUCKET)["Versions"]

    assert first.stop(signal.SIGTERM) == 0
    assert "state saved in" in first.output()
    assert "not running" in run("runs").output  # its stack file went with it

    second = Stack(cache, port, *pipe)
    stacks.append(second)
    second.wait_ready()
    assert "restored the state saved at" in second.output() and "1 run(s)" in second.output()
    after = {"runs": as_json("runs"), "show": as_json("show", run_id), "predictions": as_json("predictions"),
             "counts": daily_counts(second)}
    assert after == before
    assert second.s3().list_object_versions(Bucket=BUCKET)["Versions"] == versions_before
    assert "model digits/v1" not in second.output()  # the registry came back: nothing published again
    assert [(e["event"], e["version"], e["by"]) for e in as_json("models", "history")] == [
        ("published", "v1", "local"), ("promoted", "v1", "local")]  # serve published the digits model once

    # Fix the broken image and replay the run from before the restart.
    second.s3().put_object(Bucket=BUCKET, Key="incoming/camera/broken.png", Body=held_out_digits[20].png)
    replayed = as_json("replay", run_id, "--wait")
    assert replayed["status"] == "SUCCEEDED" and replayed["output"]["images_scored"] == 1
    assert len(as_json("predictions")) == 13
    assert second.stop(signal.SIGINT) == 0


def test_a_hard_kill_loses_at_most_the_last_seconds(cache: Path, stacks: list[Stack]) -> None:
    port = free_port()
    first = Stack(cache, port, "--no-model")
    stacks.append(first)
    first.wait_ready()
    first.s3().put_object(Bucket=BUCKET, Key="labels/7/one.png", Body=b"kept")
    # No model serves: the run fails at once (ModelError), a short run that the restart must bring back.
    skipped = json.loads(run("start", "--wait", "--json").output)
    assert skipped["error"] == "ModelError"
    time.sleep(6)  # one snapshot interval (5 s) and a little
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    assert not list((cache / "local-state" / str(port)).glob(".*.tmp"))  # no half-written snapshot left

    second = Stack(cache, port, "--no-model")
    stacks.append(second)
    second.wait_ready()
    assert [r["run_id"] for r in as_json("runs")] == [skipped["run_id"]]
    assert second.s3().get_object(Bucket=BUCKET, Key="labels/7/one.png")["Body"].read() == b"kept"
    second.stop()


def test_two_stacks_each_with_its_own_state(cache: Path, stacks: list[Stack]) -> None:
    one, two = free_port(), free_port()
    first, second = Stack(cache, one, "--no-model"), Stack(cache, two, "--no-model")
    stacks += [first, second]
    first.wait_ready()
    second.wait_ready()
    first.s3().put_object(Bucket=BUCKET, Key="elsewhere/only-on-one.png", Body=b"x")

    both = run("runs")
    assert both.exit_code == 2 and "2 local stacks are running" in both.output and "--port" in both.output
    started = as_json("--port", str(one), "start", "--prefix", "incoming/nothing-here/")
    assert [r["run_id"] for r in as_json("--port", str(one), "runs")] == [started["run_id"]]
    assert as_json("--port", str(two), "runs") == []
    os.environ["BATCHINFER_PORT"] = str(two)  # the environment variable picks one too
    try:
        assert as_json("runs") == []
    finally:
        del os.environ["BATCHINFER_PORT"]
    assert second.s3().list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0

    assert second.stop() == 0  # stopping one leaves the other serving, and findable
    assert [r["run_id"] for r in as_json("runs")] == [started["run_id"]]
    assert (cache / "local-state" / str(one)).is_dir() and (cache / "local-state" / str(two)).is_dir()
    first.stop()


def test_a_port_already_taken_is_one_error_at_once(cache: Path, stacks: list[Stack]) -> None:
    port = free_port()
    first = Stack(cache, port, "--no-model")
    stacks.append(first)
    first.wait_ready()
    started = time.monotonic()
    taken = subprocess.run([sys.executable, "-m", "cli.app", "local", "serve", "--port", str(port)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert taken.returncode == 2 and time.monotonic() - started < 60
    assert taken.stderr.strip() == (f"error: port {port} is already in use: stop what listens there, "
                                    "or serve on another with --port")
    assert as_json("--port", str(port), "runs") == []  # the first stack is untouched
    first.stop()


def test_a_state_that_cannot_be_restored_stops_the_start(cache: Path, stacks: list[Stack]) -> None:
    port = free_port()
    state = cache / "elsewhere"
    state.mkdir()
    (state / "state.pickle").write_bytes(b"half a snapshot")
    result = subprocess.run([sys.executable, "-m", "cli.app", "local", "serve", "--port", str(port),
                             "--state-dir", str(state)], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot restore the local state from {state / 'state.pickle'}: ")
    assert line.endswith("start with --fresh to discard it, or --state-dir to use another folder")
    assert "not running" in run("runs").output  # nothing started on top of it

    fresh = Stack(cache, port, "--no-model", "--state-dir", str(state), "--fresh")
    stacks.append(fresh)
    fresh.wait_ready()
    assert as_json("runs") == []
    fresh.stop()


def test_serve_logs_each_execution_its_pipe_starts(cache: Path, stacks: list[Stack]) -> None:
    port = free_port()
    stack = Stack(cache, port, "--no-model")
    stacks.append(stack)
    stack.wait_ready()
    stack.s3().put_object(Bucket=BUCKET, Key="incoming/a.png", Body=b"x")
    stack.s3().put_object(Bucket=BUCKET, Key="incoming/b.png", Body=b"y")
    deadline = time.monotonic() + 60
    while "pipe started" not in stack.output() and time.monotonic() < deadline:
        time.sleep(0.5)
    (line,) = [line for line in stack.output().splitlines() if "pipe started" in line]
    name = line.split("pipe started ")[1].split(" ")[0]
    assert name.startswith("pipe-") and line.endswith("for 2 upload(s)")
    assert name in [r["run_id"] for r in as_json("runs")]
    stack.stop()


def test_an_explicit_port_reaches_a_stack_served_from_another_cache(cache: Path, stacks: list[Stack], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     demo_model: Any) -> None:
    from demo import digits
    from lambdas.model_registry import ModelRegistry

    port = free_port()
    stack = Stack(cache, port, "--model-name", "moth")
    stacks.append(stack)
    stack.wait_ready()
    assert f"model          s3://{BUCKET}/models/moth" in stack.output()
    assert "no version of moth serves yet" in stack.output()  # the digits model is not published as moth
    ModelRegistry(f"s3://{BUCKET}/models/moth", s3_client=stack.s3()).publish(
        "2026-12-01", demo_model[0], digits.LABELS, demo_model[1])

    other = tmp_path / "another-cache"  # another shell, another BATCHINFER_CACHE: no stack file for the port
    monkeypatch.setenv("BATCHINFER_CACHE", str(other))
    assert "the local stack is not running" in run("runs").output
    assert as_json("--port", str(port), "runs") == []
    assert [(r["model"], r["version"], r["current"]) for r in as_json("--port", str(port), "models")] == [
        ("moth", "2026-12-01", False)]
    promoted = as_json("--port", str(port), "models", "promote", "2026-12-01")  # the stack's model, found by port
    assert (promoted["model"], promoted["event"], promoted["by"]) == ("moth", "promoted", "local")
    assert stack.stop() == 0
    gone = run("--port", str(port), "runs")
    assert gone.exit_code == 2 and f"no local stack is running on port {port}" in gone.output
