"""The `batchinfer` command line: the demo, the local stack, and runs on it or in AWS."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="Batch image classification on AWS Step Functions, in AWS or on one machine.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
local_app = typer.Typer(help="The local stack: the embedded engine kept running between commands.",
                        no_args_is_help=True)
app.add_typer(local_app, name="local")
console = Console()
errors = Console(stderr=True)


@dataclass
class Options:
    stack: str | None = None
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None


def fail(message: str) -> None:
    errors.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


@app.callback()
def main(
    ctx: typer.Context,
    stack: str = typer.Option(None, "--stack", envvar="BATCHINFER_STACK",
                              help="A deployed stack's name; without it, commands use the local stack."),
    region: str = typer.Option(None, "--region", help="AWS region of the stack."),
    profile: str = typer.Option(None, "--profile", help="AWS profile to use."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="Override the AWS endpoint."),
) -> None:
    """Batch image classification on AWS Step Functions, in AWS or on one machine."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Function logs are JSON for CloudWatch; on a terminal the CLI reports what matters itself.
    os.environ.setdefault("BATCHINFER_LOG_LEVEL", "ERROR")
    ctx.obj = Options(stack=stack, region=region, profile=profile, endpoint_url=endpoint_url)


def target_of(ctx: typer.Context) -> Any:
    from operate.targets import TargetError, aws_target, local_target

    options: Options = ctx.obj
    try:
        if options.stack:
            return aws_target(options.stack, options.region, options.profile, options.endpoint_url)
        return local_target()
    except TargetError as error:
        fail(str(error))


def guarded(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an operation; turn the errors a person can act on into one line and exit code 2."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from operate.targets import TargetError

    try:
        return call(*args, **kwargs)
    except TargetError as error:
        fail(str(error))
    except NoCredentialsError:
        fail("no AWS credentials: set a profile with --profile or AWS_PROFILE, or run `aws configure`")
    except ClientError as error:
        fail(f"{error.response['Error'].get('Code')}: {error.response['Error'].get('Message')}")
    except BotoCoreError as error:
        fail(f"cannot reach the stack: {error}")


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


FAULT_HELP = ("Rehearse a failure: FUNCTION:KIND[:WHEN[:TIMES]], e.g. ClassifyBatch:throttle:2 or "
              "ClassifyBatch:error:batch-00001; KIND is error, throttle or timeout (engine/faults.py). Repeatable.")


def fault_plan(specs: list[str] | None) -> str | None:
    """The --fault rules as one plan, checked now: a bad rule is a one-line error."""
    if not specs:
        return None
    from engine.faults import FaultPlan, FaultSpecError

    plan = ",".join(specs)
    try:
        FaultPlan.parse(plan)
    except FaultSpecError as error:
        errors.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)  # one line, unwrapped
        raise typer.Exit(2) from None
    return plan


# -- demo ------------------------------------------------------------------------------------------
@app.command()
def demo(
    images: int = typer.Option(300, min=1, max=20000, help="How many digit images to upload and score."),
    batch_size: int = typer.Option(32, min=1, max=256, help="Images per ClassifyBatch invocation."),
    concurrency: int = typer.Option(2, min=1, max=64, help="Batches in flight (the Map's MaxConcurrency)."),
    time_zone: str = typer.Option("UTC", help="IANA time zone that dates the predictions."),
    fault: list[str] = typer.Option(None, "--fault", help=FAULT_HELP),
    retrain: bool = typer.Option(False, "--retrain", help="Then label some digits and run one retraining round."),
) -> None:
    """Run the whole system on the embedded engine: train or reuse the demo model, upload digits,
    score them with the real state machine, and report counts and accuracy."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from demo.run import print_result, run_demo

    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--time-zone {time_zone!r} is not an IANA time zone (e.g. UTC, Africa/Lagos)")
    faults = fault_plan(fault)
    result = run_demo(images=images, batch_size=batch_size, concurrency=concurrency,
                      time_zone=time_zone, console=console, faults=faults, retrain=retrain)
    print_result(result, console)
    if result.status != "SUCCEEDED":
        raise typer.Exit(1)


# -- the local stack -------------------------------------------------------------------------------
@local_app.command("serve")
def local_serve(
    port: int = typer.Option(5000, min=1024, max=65535, help="Port of the local AWS endpoint."),
    model: bool = typer.Option(True, help="Publish the demo digits model as the current version."),
    pipe_batch_size: int = typer.Option(50, min=1, max=10000, help="Records per pipe-started execution."),
    pipe_window: float = typer.Option(20.0, min=0.0, help="Seconds the pipe waits to fill a batch."),
    batch_size: int = typer.Option(32, min=1, max=256, help="Images per ClassifyBatch invocation."),
    fault: list[str] = typer.Option(None, "--fault", help=FAULT_HELP),
) -> None:
    """Keep the embedded stack running: moto's AWS API on 127.0.0.1:PORT, the Lambda bridge,
    and the local pipe that turns uploads into executions. Ctrl-C stops it."""
    import signal
    import threading

    from engine.local_engine import LocalConfig, LocalEngine
    from operate.targets import local_stack_file, write_local_stack

    faults = fault_plan(fault)
    config = LocalConfig(pipe_batch_size=pipe_batch_size, pipe_window_seconds=pipe_window, batch_size=batch_size)
    if faults is not None:
        config.faults = faults
    engine = LocalEngine(config, port=port)
    try:
        engine.start()
    except OSError as error:
        fail(f"cannot serve on port {port}: {error}")
    try:
        if model:
            from demo.run import publish_demo_model

            publish_demo_model(engine, console)
        write_local_stack(engine.target(), os.getpid())
        assert engine.pipe is not None
        engine.pipe.run_forever()
        console.print(f"local stack serving at [bold]{engine.endpoint_url}[/]\n"
                      f"  bucket         s3://{config.bucket}/incoming/  (uploads start runs through the pipe)\n"
                      f"  state machine  {engine.state_machine_arn}\n"
                      f"  try            aws --endpoint-url {engine.endpoint_url} s3 cp photo.png "
                      f"s3://{config.bucket}/incoming/\n"
                      f"                 batchinfer start --wait; batchinfer runs\n"
                      "Ctrl-C stops it.")
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
    finally:
        local_stack_file().unlink(missing_ok=True)
        engine.stop()


# -- runs ------------------------------------------------------------------------------------------
def _wait_with_progress(target: Any, run_id: str) -> dict[str, Any]:
    from operate.operations import RunProgress, wait

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("batches"),
                  TimeElapsedColumn(), console=errors, transient=True) as bar:
        task = bar.add_task(f"run {run_id}", total=None)
        progress = RunProgress(target, run_id)  # one DescribeMapRun a poll, whatever the run's size

        def poll(description: dict[str, Any]) -> None:
            done, planned = progress()
            bar.update(task, completed=done, total=planned)

        return dict(guarded(wait, target, run_id, poll))


@app.command()
def start(
    ctx: typer.Context,
    mode: str = typer.Option("score", help="score, replay or retrain."),
    prefix: str = typer.Option(None, help="Score only versions under this prefix (default incoming/)."),
    run: str = typer.Option(None, help="With --mode replay: the run whose failures to replay."),
    wait_for_it: bool = typer.Option(False, "--wait", help="Wait for the run to end, showing progress."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Start an execution by hand, as the schedule would."""
    from operate.operations import MODES, start_run

    if mode not in MODES:
        fail(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "replay" and not run:
        fail("--mode replay needs --run RUN_ID (or use `batchinfer replay RUN_ID`)")
    target = target_of(ctx)
    run_id = guarded(start_run, target, mode, prefix=prefix, replay_of=run)
    _report_started(target, run_id, wait_for_it, as_json)


def _report_started(target: Any, run_id: str, wait_for_it: bool, as_json: bool) -> None:
    if not wait_for_it:
        if as_json:
            emit_json({"run_id": run_id, "status": "RUNNING"})
        else:
            console.print(f"started [bold]{run_id}[/]; follow it with `batchinfer show {run_id}`")
        return
    description = _wait_with_progress(target, run_id)
    from operate.operations import show_run

    detail = guarded(show_run, target, run_id)
    if as_json:
        emit_json(detail)
    else:
        _print_run(detail)
    if description["status"] != "SUCCEEDED":
        raise typer.Exit(1)


@app.command()
def runs(
    ctx: typer.Context,
    limit: int = typer.Option(20, min=1, max=1000, help="How many recent runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Recent executions: id, mode, status, start, duration, scored, failed."""
    from operate.operations import list_runs

    rows = guarded(list_runs, target_of(ctx), limit)
    if as_json:
        emit_json(rows)
        return
    table = Table(title="recent runs")
    for column in ("run", "mode", "status", "started", "seconds", "scored", "failed"):
        table.add_column(column, justify="right" if column in ("seconds", "scored", "failed") else "left")
    for row in rows:
        table.add_row(row["run_id"], row["mode"], _status(row["status"]), row["started"],
                      _blank(row["seconds"]), _blank(row["scored"]), _blank(row["failed"]))
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run id (execution name) or execution ARN."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """One run: state-by-state timeline, Map run item counts, failures with their reasons."""
    from operate.operations import show_run

    detail = guarded(show_run, target_of(ctx), run_id)
    if as_json:
        emit_json(detail)
    else:
        _print_run(detail)


@app.command()
def replay(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run whose failed items to score again."),
    wait_for_it: bool = typer.Option(False, "--wait", help="Wait for the replay to end, showing progress."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Start a replay of exactly the failed items of RUN_ID."""
    from operate.operations import replay_run

    target = target_of(ctx)
    new_run = guarded(replay_run, target, run_id)
    _report_started(target, new_run, wait_for_it, as_json)


@app.command()
def predictions(
    ctx: typer.Context,
    date: str = typer.Option(None, "--date", help="Only images captured on this day (YYYY-MM-DD)."),
    limit: int = typer.Option(50, min=1, max=100000, help="How many rows, newest capture first."),
    links: bool = typer.Option(False, "--links", help="Add a presigned link to each image version."),
    expires: int = typer.Option(3600, "--expires", help="Seconds a link works (at most 604800, 7 days)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Prediction rows: date, class, confidence, capture time, model version, image version; with
    --links, a presigned GET URL of each image version that expires (the bucket stays private)."""
    from operate.operations import list_predictions

    rows = guarded(list_predictions, target_of(ctx), date, limit, links, expires)
    if as_json:
        emit_json(rows)
        return
    table = Table(title="predictions")
    columns = ["date", "class", "confidence", "captured_at", "model_version", "link" if links else "image"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[f"{row[c]:.3f}" if c == "confidence" else str(row[c]) for c in columns])
    console.print(table)


@app.command()
def models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The model registry: every version with its metrics, and which one serves."""
    from operate.operations import list_models

    rows = guarded(list_models, target_of(ctx))
    if as_json:
        emit_json(rows)
        return
    table = Table(title="model registry")
    for column in ("model", "version", "current", "accuracy", "held out", "trained on", "from"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["model"], row["version"], "[green]serving[/]" if row["current"] else "",
                      _blank(row["accuracy"]), _blank(row["held_out"]), _blank(row["trained_on"]),
                      _blank(row["base_version"]))
    console.print(table)


@app.command("console")
def console_command(
    ctx: typer.Context,
    port: int = typer.Option(8400, min=0, max=65535, help="Port on 127.0.0.1 to serve the console on."),
) -> None:
    """Serve the run console in the browser at http://127.0.0.1:PORT for the local stack or --stack:
    runs, a run's graph and failures, replay, predictions and models. Ctrl-C stops it."""
    from console.app import create_app
    from console.serve import console_server
    from operate.targets import aws_target, local_target

    options: Options = ctx.obj
    if options.stack:
        cached: list[Any] = []

        def resolve() -> Any:  # a deployed stack's outputs do not change while the console runs
            if not cached:
                cached.append(aws_target(options.stack or "", options.region, options.profile,
                                         options.endpoint_url))
            return cached[0]

        label = f"stack {options.stack}"
    else:
        resolve, label = local_target, "local stack"
    try:
        server = console_server(create_app(resolve, label), port)
    except OSError as error:
        fail(f"cannot serve the console on 127.0.0.1:{port}: {error}")
    console.print(f"console for the {label} at [bold]http://127.0.0.1:{server.server_port}/[/]  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _status(status: str) -> str:
    colour = {"SUCCEEDED": "green", "RUNNING": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/]"


def _blank(value: Any) -> str:
    return "" if value is None else str(value)


def _print_run(detail: dict[str, Any]) -> None:
    console.print(f"run [bold]{detail['run_id']}[/] ({detail['mode']}): {_status(detail['status'])}, "
                  f"started {detail['started']}, {_blank(detail['seconds'])} s")
    if detail.get("console_url"):
        console.print(f"console: {detail['console_url']}")
    if detail.get("error"):
        console.print(f"[red]{detail['error']}: {detail.get('cause')}[/]")
    timeline = Table(title="timeline")
    for column in ("state", "type", "entered", "seconds", "status"):
        timeline.add_column(column)
    for step in detail["timeline"]:
        timeline.add_row(step["state"], step["type"], step["entered"], _blank(step["seconds"]), step["status"])
    console.print(timeline)
    for map_run in detail["map_runs"]:
        items = map_run["items"]
        console.print(f"map run {map_run['status']}: {items.get('total')} batches, {items.get('succeeded')} "
                      f"succeeded, {items.get('failed')} failed")
    output = detail.get("output") or {}
    if output:
        console.print(f"images scored: {output.get('images_scored')}   failed: {output.get('images_failed')}   "
                      f"already scored: {output.get('already_scored')}")
        for day, counts in (output.get("daily_counts") or {}).items():
            console.print(f"  {day}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        for note in output.get("notes") or []:
            console.print(f"  note: {note}")
    if detail["failures"]:
        # One row per reason: a failed batch is many items with one cause. --json lists every item.
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for failure in detail["failures"]:
            groups.setdefault((failure["stage"], failure["reason"]), []).append(failure)
        failures = Table(title=f"{len(detail['failures'])} failed item(s), by reason")
        for column in ("items", "stage", "reason", "objects"):
            failures.add_column(column, overflow="fold")
        for (stage, reason), items in sorted(groups.items(), key=lambda g: -len(g[1])):
            keys = [f["object"].split("/", 3)[-1] for f in items]
            shown = ", ".join(keys[:3]) + (f", … {len(keys) - 3} more" if len(keys) > 3 else "")
            failures.add_row(str(len(items)), stage, reason, shown)
        console.print(failures)
        if output.get("replay"):
            console.print(f"replay them with: [bold]{output['replay']}[/]")


if __name__ == "__main__":
    app()
