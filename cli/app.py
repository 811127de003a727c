"""The `batchinfer` command line: the demo, the local stack, and runs on it or in AWS."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from contract.settings import MAX_IMAGES_PER_RUN_LIMIT, variable_of
from operate.output import Column, one_line, print_table, say

app = typer.Typer(help="Batch image classification on AWS Step Functions, in AWS or on one machine.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
local_app = typer.Typer(help="The local stack: the embedded engine kept running between commands.",
                        no_args_is_help=True)
app.add_typer(local_app, name="local")
models_app = typer.Typer(help="The model registry. Alone: every version with its metrics, its approval and the one "
                              "serving. Its commands approve, reject, promote (or roll back) and show the history.")
app.add_typer(models_app, name="models")
console = Console()
errors = Console(stderr=True)


@dataclass
class Options:
    stack: str | None = None
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    port: int | None = None


DEMO_MODEL_NAME = "digits"


def fail(message: str) -> None:
    # One line whatever the width: soft_wrap leaves long lines to the terminal, which does not break them.
    errors.print(f"[red]error:[/] {escape(one_line(message))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.callback()
def main(
    ctx: typer.Context,
    stack: str = typer.Option(None, "--stack", envvar="BATCHINFER_STACK",
                              help="A deployed stack's name; without it, commands use the local stack."),
    region: str = typer.Option(None, "--region", help="AWS region of the stack."),
    profile: str = typer.Option(None, "--profile", help="AWS profile to use."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="Override the AWS endpoint."),
    port: int = typer.Option(None, "--port", envvar="BATCHINFER_PORT", min=1024, max=65535,
                             help="The local stack to use, by its port (needed when several run)."),
) -> None:
    """Batch image classification on AWS Step Functions, in AWS or on one machine."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Function logs are JSON for CloudWatch; on a terminal the CLI reports what matters itself.
    os.environ.setdefault("BATCHINFER_LOG_LEVEL", "ERROR")
    ctx.obj = Options(stack=stack, region=region, profile=profile, endpoint_url=endpoint_url, port=port)


def target_of(ctx: typer.Context) -> Any:
    from operate.targets import TargetError, aws_target, local_target

    options: Options = ctx.obj
    try:
        if options.stack:
            return aws_target(options.stack, options.region, options.profile, options.endpoint_url)
        return local_target(options.port)
    except TargetError as error:
        fail(str(error))


def guarded(call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run an operation; turn the errors a person can act on into one line and exit code 2."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from lambdas.model_registry import ModelError
    from operate.targets import TargetError

    try:
        return call(*args, **kwargs)
    except (TargetError, ModelError) as error:
        fail(str(error))
    except NoCredentialsError:
        fail("no AWS credentials: set a profile with --profile or AWS_PROFILE, or run `aws configure`")
    except ClientError as error:
        fail(f"{error.response['Error'].get('Code')}: {error.response['Error'].get('Message')}")
    except BotoCoreError as error:
        fail(f"cannot reach the stack: {error}")


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


# The rule's syntax is in FAULTS_DOC, printed full width below the options: in the options table,
# tokens as long as FUNCTION:KIND[:WHEN[:TIMES]] would be cut to fit the help column.
FAULT_HELP = "Rehearse a failure (repeatable); SPEC is described below."
FAULTS_DOC = ("--fault SPEC rehearses a failure. SPEC is FUNCTION:KIND[:WHEN[:TIMES]]: KIND is error, throttle or "
              "timeout; WHEN is N (the first N calls) or batch-NNNNN (every call for that batch); TIMES, with a batch, "
              "only its first TIMES calls. Examples: ClassifyBatch:throttle:2, ClassifyBatch:error:batch-00001, "
              "ClassifyBatch:timeout:batch-00000:1 (engine/faults.py).")


QUOTA_HELP = "Throttle where AWS would (repeatable); SPEC is described below."
# Printed full width below the options, as FAULTS_DOC is: its tokens are too long for the help column.
QUOTAS_DOC = ("--quota SPEC throttles where AWS would: aws (every quota at AWS's figure), dynamodb, s3, lambda, or "
              "SERVICE.NAME=VALUE, e.g. dynamodb.partition_writes=50 (engine/throttling.py). Default: none, or "
              "BATCHINFER_ENGINE_QUOTAS.")


def quota_spec(specs: list[str] | None) -> str | None:
    """The --quota rules as one spec, checked now: a bad one is a one-line error."""
    from engine.throttling import Quotas, QuotaSpecError

    return _checked_spec(specs, Quotas.parse, QuotaSpecError)


def _checked_spec(specs: list[str] | None, parse: Callable[[str], object], error: type[ValueError]) -> str | None:
    """Repeated option values joined into one comma-separated spec, parsed now so that a bad one fails here."""
    if not specs:
        return None
    spec = ",".join(specs)
    try:
        parse(spec)
    except error as bad:
        fail(str(bad))
    return spec


def fault_plan(specs: list[str] | None) -> str | None:
    """The --fault rules as one plan, checked now: a bad rule is a one-line error."""
    from engine.faults import FaultPlan, FaultSpecError

    return _checked_spec(specs, FaultPlan.parse, FaultSpecError)


# -- demo ------------------------------------------------------------------------------------------
@app.command(epilog=FAULTS_DOC)
def demo(
    images: int = typer.Option(300, min=1, max=20000, help="How many digit images to upload and score."),
    batch_size: int = typer.Option(32, min=1, max=256, help="Images per ClassifyBatch invocation."),
    concurrency: int = typer.Option(2, min=1, max=64, help="Batches in flight (the Map's MaxConcurrency)."),
    time_zone: str = typer.Option("UTC", help="IANA time zone that dates the predictions."),
    fault: list[str] = typer.Option(None, "--fault", metavar="SPEC", help=FAULT_HELP),
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
@local_app.command("serve", epilog=FAULTS_DOC + "\n\n" + QUOTAS_DOC)
def local_serve(
    ctx: typer.Context,
    port: int = typer.Option(None, min=1024, max=65535,
                             help="Port of the local AWS endpoint (default: BATCHINFER_PORT or 5000)."),
    state_dir: Path = typer.Option(None, "--state-dir", file_okay=False,
                                   help="Folder that keeps this stack's data (default: the cache's "
                                        "local-state/PORT)."),
    fresh: bool = typer.Option(False, "--fresh", help="Discard the saved state and start empty."),
    no_model: bool = typer.Option(False, "--no-model", help="Start with no model, instead of publishing the "
                                                            "demo digits model when no version serves yet (only "
                                                            "under the model name digits)."),
    model_name: str = typer.Option("digits", "--model-name",
                                   help="The stack's model: its registry is models/NAME in the bucket."),
    pipe_batch_size: int = typer.Option(50, min=1, max=10000, help="Records per pipe-started execution."),
    pipe_window: float = typer.Option(20.0, min=0.0, help="Seconds the pipe waits to fill a batch."),
    batch_size: int = typer.Option(32, min=1, max=256, help="Images per ClassifyBatch invocation."),
    max_concurrency: int = typer.Option(2, min=1, max=10_000, help="Classify batches running at once in a run."),
    max_images_per_run: int = typer.Option(100_000, min=1, max=MAX_IMAGES_PER_RUN_LIMIT,
                                           help="Image versions one score run takes; the rest wait for the next."),
    fault: list[str] = typer.Option(None, "--fault", metavar="SPEC", help=FAULT_HELP),
    quota: list[str] = typer.Option(None, "--quota", metavar="SPEC", help=QUOTA_HELP),
) -> None:
    """Keep the embedded stack running: moto's AWS API on 127.0.0.1:PORT, the Lambda bridge,
    and the local pipe that turns uploads into executions. Its data is kept in --state-dir and is
    there again after a restart. Ctrl-C (or SIGTERM) stops it."""
    import signal
    import threading

    from engine import moto_patches
    from engine.local_engine import LocalConfig, LocalEngine
    from engine.persistence import SNAPSHOT_SECONDS, Scope, StateError, StateKeeper, restore
    from operate.models import MODEL_NAME
    from operate.targets import (
        DEFAULT_PORT,
        default_state_dir,
        port_is_free,
        remove_local_stack,
        write_local_stack,
    )

    options: Options = ctx.obj
    port = port or options.port or DEFAULT_PORT
    faults = fault_plan(fault)
    if not MODEL_NAME.match(model_name):
        fail(f"--model-name {model_name!r} must be a plain name (letters, digits, '.', '_', '-')")
    quotas = quota_spec(quota)
    if not port_is_free(port):
        fail(f"port {port} is already in use: stop what listens there, or serve on another with --port")
    folder = state_dir or default_state_dir(port)
    keeper = StateKeeper(folder)
    try:
        snapshot = keeper.claim(fresh=fresh)
    except StateError as error:
        fail(str(error))
    config = LocalConfig(pipe_batch_size=pipe_batch_size, pipe_window_seconds=pipe_window, batch_size=batch_size,
                         model_name=model_name, max_concurrency=max_concurrency,
                         extra_settings={variable_of("max_images_per_run"): str(max_images_per_run)})
    if faults is not None:
        config.faults = faults
    if quotas is not None:
        config.quotas = quotas
    engine = LocalEngine(config, port=port)
    try:
        engine.start()
    except OSError as error:
        keeper.release()
        fail(f"cannot serve on port {port}: {error}")
    kept = False
    try:
        scope = Scope(config.account, config.region, engine.state_machine_arn)
        if snapshot is not None:
            try:
                runs = restore(scope, snapshot)
            except StateError as error:
                fail(str(error))
            say(console, f"restored the state saved at {snapshot['saved_at']} from {folder}: {runs} run(s)")
        if not _serving_version(engine):
            if not no_model and model_name == DEMO_MODEL_NAME:
                from demo.run import publish_demo_model

                publish_demo_model(engine, console, by="local")
            else:  # the digits model under another name would serve digits as that model
                say(console, f"no version of {model_name} serves yet: publish one to {engine.config.model_registry}/ "
                             "and promote it")
        keeper.keep(scope, dynamodb_lock=getattr(moto_patches, "_dynamodb_lock", None))
        kept = True
        write_local_stack(engine.target(), os.getpid(), folder)
        assert engine.pipe is not None
        engine.pipe.on_started = _log_pipe_execution
        engine.pipe.run_forever()
        console.print(f"local stack serving at [bold]{engine.endpoint_url}[/]\n"
                      f"  bucket         s3://{config.bucket}/incoming/  (uploads start runs through the pipe)\n"
                      f"  state machine  {engine.state_machine_arn}\n"
                      f"  model          {config.model_registry}  (`batchinfer --port {port} models` lists it)\n"
                      f"  state          {folder}  (saved every {SNAPSHOT_SECONDS:g} s and on stop)\n"
                      f"  try            aws --endpoint-url {engine.endpoint_url} s3 cp photo.png "
                      f"s3://{config.bucket}/incoming/\n"
                      f"                 batchinfer --port {port} start --wait; batchinfer --port {port} runs\n"
                      + "".join(f"  throttles      {line}\n" for line in engine.quotas.describe())
                      + "Ctrl-C stops it.", highlight=False, soft_wrap=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            _report_throttles_until(stopped, engine)
        except KeyboardInterrupt:
            pass
    finally:
        remove_local_stack(port, os.getpid())
        if engine.pipe is not None:
            engine.pipe.stop()
        try:
            if kept:
                keeper.close()
                console.print(f"state saved in {folder}", highlight=False, soft_wrap=True)
            else:
                keeper.release()
        finally:
            engine.stop()


THROTTLE_REPORT_SECONDS = 5.0


def _report_throttles_until(stopped: Any, engine: Any) -> None:
    """Wait for `stopped`; with quotas on, print the requests the engine has throttled whenever they grow."""
    from datetime import datetime, timezone

    reported: dict[str, int] = {}
    while not stopped.wait(THROTTLE_REPORT_SECONDS if engine.quotas else None):
        throttled = engine.throttled()
        if any(throttled.values()) and throttled != reported:
            stamp = datetime.now(tz=timezone.utc).isoformat(timespec="seconds")
            console.print(f"{stamp} throttled so far: " + ", ".join(f"{n} {service}" for service, n in
                                                                     throttled.items()), highlight=False)
            reported = throttled


def _serving_version(engine: Any) -> str | None:
    from lambdas.model_registry import ModelError, ModelRegistry

    try:
        return ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3")).current_version()
    except ModelError:
        return None


def _log_pipe_execution(execution_arn: str, records: int) -> None:
    from datetime import datetime, timezone

    stamp = datetime.now(tz=timezone.utc).isoformat(timespec="seconds")
    console.print(f"{stamp} pipe started {execution_arn.rsplit(':', 1)[-1]} for {records} upload(s)",
                  highlight=False, soft_wrap=True)


# -- runs ------------------------------------------------------------------------------------------
def _wait_with_progress(target: Any, run_id: str, mode: str) -> dict[str, Any]:
    """Wait for a run, showing what it is doing: for scoring, its slice, the batches done of those listed
    and the time left (one DescribeMapRun a poll, whatever the run's size); for retraining, the
    step it is on (collect, train, evaluate, promote)."""
    from operate.operations import RunProgress, wait
    from operate.run_details import current_step

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if mode not in ("retrain", "publish"):
        columns.append(BarColumn())
    with Progress(*columns, TimeElapsedColumn(), console=errors, transient=True) as bar:
        task = bar.add_task(f"run {run_id}: starting", total=None)
        progress = RunProgress(target, run_id)

        def poll(description: dict[str, Any]) -> None:
            step = current_step(target, run_id) or "starting"
            if mode in ("retrain", "publish"):
                bar.update(task, description=f"run {run_id}: {step}")
                return
            now = progress()
            if now.planned is None:  # not listed yet: say so, rather than 0/?
                bar.update(task, description=f"run {run_id}: {step}")
            else:
                bar.update(task, description=f"run {run_id}: {step}, {now.describe()}",
                           completed=now.done, total=max(now.planned, 1))

        return dict(guarded(wait, target, run_id, poll))


@app.command()
def start(
    ctx: typer.Context,
    mode: str = typer.Option("score", help="score, replay, retrain or reconcile."),
    prefix: str = typer.Option(None, help="Score only versions under this prefix (default incoming/)."),
    run: str = typer.Option(None, help="With --mode replay: the run whose failures to replay."),
    max_images: int = typer.Option(
        None, min=1, help="Score at most this many versions in all (default: every waiting one, a slice of "
        "max_images_per_run at a time); the rest stay in the ledger for the next run."),
    wait_for_it: bool = typer.Option(False, "--wait", help="Wait for the run to end, showing progress."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Start an execution by hand, as the schedule would: it drains the backlog slice by slice."""
    from operate.operations import MODES, start_run

    if mode not in MODES:
        fail(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "replay" and not run:
        fail("--mode replay needs --run RUN_ID (or use `batchinfer replay RUN_ID`)")
    if max_images is not None and mode not in ("score", "reconcile"):
        fail(f"--max-images applies to score and reconcile runs, not {mode}")
    target = target_of(ctx)
    run_id = guarded(start_run, target, mode, prefix=prefix, replay_of=run, max_images=max_images)
    _report_started(target, run_id, wait_for_it, as_json, mode)


def _report_started(target: Any, run_id: str, wait_for_it: bool, as_json: bool, mode: str) -> None:
    if not wait_for_it:
        if as_json:
            emit_json({"run_id": run_id, "status": "RUNNING"})
        else:
            say(console, f"started [bold]{run_id}[/]; follow it with `batchinfer show {run_id}`")
        return
    from operate.operations import run_output, show_run

    description = _wait_with_progress(target, run_id, mode)
    # A run past slices_per_execution slices goes on in a new execution: follow it to the run's end.
    while description["status"] == "SUCCEEDED" and run_output(description).get("continued_in"):
        run_id = run_output(description)["continued_in"]
        say(errors, f"the run goes on in [bold]{run_id}[/]")
        description = _wait_with_progress(target, run_id, mode)

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
    """Recent executions: id, mode, status, start, duration, scored, failed; a retraining run's outcome."""
    from operate.operations import list_runs

    rows = guarded(list_runs, target_of(ctx), limit)
    if as_json:
        emit_json(rows)
        return
    columns = [Column("run", key=True), Column("mode"), Column("status"), Column("started", key=True),
               Column("seconds", right=True), Column("scored", right=True), Column("failed", right=True),
               Column("outcome")]
    print_table(console, columns, [
        [row["run_id"], row["mode"], _status(row["status"]), row["started"], _blank(row["seconds"]),
         _blank(row["scored"]), _blank(row["failed"]), _blank(row.get("outcome"))]
        for row in rows])


@app.command()
def plan(
    ctx: typer.Context,
    images: int = typer.Option(10_000_000, "--images", min=1, help="The backlog to plan for, in images."),
    seconds_per_batch: float = typer.Option(
        None, "--seconds-per-batch", min=0.001,
        help="ClassifyBatch's seconds per batch (default: the served version's, measured at publish)."),
    max_concurrency: int = typer.Option(None, "--max-concurrency", min=1, max=100_000,
                                        help="Plan for this many batches at once instead of the deployment's."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, max=1000,
                                   help="Plan for batches of this many images instead of the deployment's."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The capacity plan: images/s and wall time for a backlog, every AWS quota's ceiling, the one that binds
    first, and the cost. With --stack, read from the deployed stack and its account; else the default
    deployment (cdk.json) with the local stack's served model when it runs."""
    from operate.planning import local_facts, make_plan, stack_facts
    from operate.targets import TargetError, local_target

    options: Options = ctx.obj
    if options.stack:
        facts = guarded(stack_facts, target_of(ctx))
    else:
        try:
            local = local_target(options.port)
        except TargetError:
            local = None
        facts = guarded(local_facts, local)
    try:
        result = make_plan(facts, images, seconds=seconds_per_batch, max_concurrency=max_concurrency,
                           batch_size=batch_size)
    except ValueError as error:
        fail(str(error))
    if as_json:
        emit_json({**result.to_dict(), "notes": facts.notes})
        return
    _print_plan(result, facts.notes)


def _print_plan(result: Any, notes: list[str]) -> None:
    from contract.capacity import HISTORY_EVENTS_LIMIT, SLICES_PER_EXECUTION, duration_text

    d = result.deployment
    say(console, f"plan for [bold]{result.images:,}[/] images: max_concurrency {d.max_concurrency:,}, batches of "
                 f"{d.batch_size}, {result.seconds_per_batch:.3g} s a batch ({result.seconds_source})")
    say(console, f"[bold]{result.images_per_second:,.0f} images/s[/], wall time "
                 f"[bold]{duration_text(result.wall_seconds)}[/] (Lambda's ramp-up {result.ramp_seconds:.0f} s)")
    headroom = f", {result.headroom:.2f}x below the next ({result.next_ceiling.name})" if result.next_ceiling else ""
    say(console, f"binds first: [bold]{result.binding.name}[/] ({result.binding.kind}){headroom}")
    columns = [Column("limit", key=True), Column("kind"), Column("images/s", right=True), Column("from", wrap=True)]
    print_table(console, columns, [
        [c.name, c.kind, f"{c.images_per_second:,.0f}", c.limit] for c in result.ceilings])
    cost = result.cost
    say(console, f"cost: [bold]${cost['total_usd']:,.2f}[/] ("
                 + ", ".join(f"{k} ${v:,.2f}" for k, v in cost["usd"].items()) + f"); {result.prices}")
    say(console, f"slices: {result.slices:,} of {d.max_images_per_run:,} images; {result.history_events:,} of "
                 f"{HISTORY_EVENTS_LIMIT:,} history events per execution ({SLICES_PER_EXECUTION} slices at most, "
                 f"{result.executions} execution(s))")
    for warning in result.warnings:
        say(console, f"[yellow]warning:[/] {escape(warning)}")
    for note in notes:
        say(console, f"note: {escape(note)}")


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
    _report_started(target, new_run, wait_for_it, as_json, "replay")


@app.command()
def stop(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The running run to stop (its id or execution ARN)."),
    reason: str = typer.Option(None, "--reason", help="Why: kept in the execution's cause and the run's summary."),
    settle: float = typer.Option(10.0, "--settle", min=0.0,
                                 help="Seconds without a new batch result before its batches count as settled."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Stop a running run. What it scored stays counted: once its batches in flight have settled, the days it
    touched are rolled up and its result files written, as its last steps would have; the versions it did not
    reach stay in the ingest ledger for the next run."""
    from operate.stopping import stop_run

    target = target_of(ctx)
    with errors.status(f"stopping {escape(run_id)}") as status:
        record = guarded(stop_run, target, run_id, reason, settle,
                         on_progress=lambda text: status.update(escape(text)))
    if as_json:
        emit_json(record)
        return
    summary = record.get("summary") or {}
    say(console, f"run [bold]{record['run_id']}[/] {_status('ABORTED')}: stopped by {escape(record['stopped_by'])}"
                 + (f" ({escape(record['reason'])})" if record.get("reason") else ""))
    if "batches_planned" in record:
        say(console, f"{record['batches_run']} of {record['batches_planned']} batch(es) ran: images scored "
                     f"{summary.get('images_scored')}, failed {summary.get('images_failed')}, already scored "
                     f"{summary.get('already_scored')}; the days they touched are rolled up")
        if record["batches_run"] < record["batches_planned"]:
            say(console, "the versions it did not reach stay in the ingest ledger: the next run takes them")


@app.command()
def predictions(
    ctx: typer.Context,
    date: str = typer.Option(None, "--date", help="Only images captured on this day (YYYY-MM-DD)."),
    limit: int = typer.Option(50, min=1, max=100000, help="How many rows, newest capture first."),
    links: bool = typer.Option(False, "--links", help="Add a presigned link to each image version."),
    expires: int = typer.Option(3600, "--expires", help="Seconds a link works (at most 604800, 7 days)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    run: str = typer.Option(None, "--run", help="Export this run's predictions from its result files."),
    fmt: str = typer.Option("jsonl", "--format", help="With --run: jsonl, csv or parquet."),
    output: Path = typer.Option(None, "--output", "-o", help="With --run: write here (default: standard output)."),
    failures: bool = typer.Option(False, "--failures", help="With --run: the run's failures instead."),
) -> None:
    """Prediction rows: date, class, confidence, capture time, model version, image version; with
    --links, a presigned GET URL of each image version that expires (the bucket stays private).
    With --run, a run's predictions (or --failures) streamed from its result files as jsonl, csv or parquet."""
    if run:
        _export_run(ctx, run, fmt, output, failures)
        return
    from operate.operations import list_predictions

    rows = guarded(list_predictions, target_of(ctx), date, limit, links, expires)
    if as_json:
        emit_json(rows)
        return
    # "kept": the probabilities a row keeps, all of them or the top few of a many-class model.
    fields = ["date", "class", "confidence", "kept", "captured_at", "model_version", "link" if links else "image"]
    columns = [Column(f, key=f in ("captured_at", "link", "image"), right=f == "confidence") for f in fields]
    print_table(console, columns, [[f"{row[f]:.3f}" if f == "confidence" else escape(str(row[f])) for f in fields]
                                   for row in rows])


def _export_run(ctx: typer.Context, run: str, fmt: str, output: Path | None, failures: bool) -> None:
    from contract.results import FAILURES_TABLE, PREDICTIONS_TABLE
    from operate.results import FORMATS, export

    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "parquet" and output is None:
        fail("Parquet is written to a file: pass --output FILE")
    table = FAILURES_TABLE if failures else PREDICTIONS_TABLE
    target = target_of(ctx)
    try:
        if output is None:
            rows = guarded(export, target, run, table, fmt, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            partial = output.with_name(output.name + ".partial")
            with partial.open("wb") as out:
                rows = guarded(export, target, run, table, fmt, out)
            partial.replace(output)  # a failed export leaves no half file under the asked name
    except ImportError as error:
        fail(f"{error.name} is not installed: pip install 'batchinfer[results]'")
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror}")
    if output is not None:
        errors.print(f"{rows} {table} of run {run} written to {output} ({fmt})", highlight=False, soft_wrap=True)


QUERY_FORMATS = ("table", "csv", "json")


@app.command()
def query(
    ctx: typer.Context,
    sql: str = typer.Argument(..., help="SQL over the views predictions and failures."),
    engine: str = typer.Option(None, "--engine", help="duckdb or athena (default: athena with --stack, "
                                                     "duckdb on the local stack)."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json."),
    runs: list[str] = typer.Option(None, "--run", help="DuckDB: read only these runs' files (repeatable)."),
) -> None:
    """SQL over every run's result files: `predictions` (one row per image version scored) and `failures`.
    On the local stack DuckDB reads them through its endpoint; with --stack, Athena queries the Glue
    tables, or DuckDB (--engine duckdb) reads them from S3."""
    from operate.query import run_query

    if fmt not in QUERY_FORMATS:
        fail(f"--format must be one of {', '.join(QUERY_FORMATS)}, not {fmt!r}")
    if not sql.strip():
        fail("the query is empty")
    result = guarded(run_query, target_of(ctx), sql, engine, runs or None)
    if fmt == "json":
        emit_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        columns = [Column(name) for name in result.columns]
        print_table(console, columns, [[escape("" if v is None else str(v)) for v in row] for row in result.rows])


@models_app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """The model registry: every version with its metrics, its approval, and which one serves."""
    if ctx.invoked_subcommand is not None:
        return
    from operate.operations import list_models

    rows = guarded(list_models, target_of(ctx))
    if as_json:
        emit_json(rows)
        return
    columns = [Column("model"), Column("version", key=True), Column("current"), Column("approval"),
               Column("serves"), Column("preprocess"), Column("int8 agreement, drop"), Column("accuracy", right=True),
               Column("held out", right=True), Column("held-out set", key=True), Column("trained on", right=True),
               Column("from")]
    print_table(console, columns, [
        [row["model"], row["version"], "[green]serving[/]" if row["current"] else "",
         _approval(row.get("approval")), _blank(row["serves"]), _blank(row.get("preprocess")),
         "" if row["int8_agreement"] is None
         else f"{row['int8_agreement']}, {_blank(row['int8_accuracy_drop_points'])} pt",
         _blank(row["accuracy"]), _blank(row["held_out"]), escape(_blank(row.get("held_out_set"))),
         _blank(row["trained_on"]), _blank(row["base_version"])]
        for row in rows])
    sets = {row.get("held_out_set") for row in rows}
    if "its own" in sets:
        say(console, "accuracy on \"its own\" held-out set is not comparable across versions; a retraining "
                     "round scores every version on its held-out set")
    for row in rows:
        if row["serving_reason"]:
            say(console, f"{row['model']}/{row['version']} serves {row['serves']}: {row['serving_reason']}")


def _approval(status: str | None) -> str:
    colour = {"approved": "green", "pending": "yellow", "rejected": "red"}.get(status or "")
    return f"[{colour}]{status}[/]" if colour else ""


MODEL_OPTION_HELP = "The model (default: the stack's, or the only one in the registry)."


@models_app.command("approve")
def models_approve(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="The pending version to approve."),
    model: str = typer.Option(None, "--model", help=MODEL_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Approve a version published for manual approval: it may then be promoted (`models promote`)."""
    from operate.models import approve_version

    _report_change(guarded(approve_version, target_of(ctx), version, model), as_json)


@models_app.command("reject")
def models_reject(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="The version to reject."),
    reason: str = typer.Option(..., "--reason", help="Why: kept in the registry's history."),
    model: str = typer.Option(None, "--model", help=MODEL_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Reject a version for good: it can never serve. The serving version cannot be rejected."""
    from operate.models import reject_version

    _report_change(guarded(reject_version, target_of(ctx), version, reason, model), as_json)


@models_app.command("promote")
def models_promote(
    ctx: typer.Context,
    version: str = typer.Argument(..., help="The version to serve from the next run on."),
    reason: str = typer.Option(None, "--reason", help="Why: kept in the registry's history."),
    model: str = typer.Option(None, "--model", help=MODEL_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Serve VERSION: promote it, or roll back to an earlier version. A pending or rejected version is
    refused."""
    from operate.models import promote_version

    _report_change(guarded(promote_version, target_of(ctx), version, reason, model), as_json)


@models_app.command("history")
def models_history(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help=MODEL_OPTION_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Every registry change, oldest first: published, pending, approved, rejected, promoted, rolled back;
    when, and by whom."""
    from operate.models import model_history

    rows = guarded(model_history, target_of(ctx), model)
    if as_json:
        emit_json(rows)
        return
    print_table(console, [Column("at", key=True), Column("model"), Column("event"), Column("version", key=True),
                          Column("by", key=True), Column("reason", wrap=True)],
                [[row["at"], row["model"], row["event"], escape(row["version"]), escape(str(row["by"])),
                  escape(_blank(row.get("reason")))] for row in rows])


def _report_change(change: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(change)
        return
    reason = f": {escape(change['reason'])}" if change.get("reason") else ""
    say(console, f"{change['model']}/{escape(change['version'])} {change['event']} by "
                 f"{escape(str(change['by']))} at {change['at']}{reason}")


@models_app.command("publish")
def models_publish(
    ctx: typer.Context,
    artifact: str = typer.Argument(..., help="A .keras, .h5 or .tflite file, a SavedModel folder, a .tar.gz of "
                                             "one (SageMaker's model.tar.gz too): a local path or an s3:// URI."),
    version: str = typer.Option(None, "--version", help="The version's name (default: v<UTC time>)."),
    labels: Path = typer.Option(None, "--labels", exists=True, dir_okay=False,
                                help="Class names in output order: a JSON list or one a line (default: labels.json "
                                     "or labels.txt beside or inside the artifact)."),
    held_out: str = typer.Option(None, "--held-out",
                                 help="Labelled images to evaluate on, <prefix>/<class>/...: an s3:// prefix under "
                                      "labels/, or a local folder uploaded there (default: the bucket's labels/)."),
    calibration: str = typer.Option(None, "--calibration",
                                    help="Images to calibrate the int8 form on, laid out as --held-out "
                                         "(default: the held-out images)."),
    preprocess: str = typer.Option("none", "--preprocess",
                                   help="The input scaling the model expects, folded into it: none (0-255), 0-1, "
                                        "-1-1, caffe or torch (as keras.applications names them)."),
    promote: bool = typer.Option(False, "--promote", help="Serve it once published."),
    promote_if_better: bool = typer.Option(False, "--promote-if-better",
                                           help="Serve it if it beats the serving version on the held-out images "
                                                "(PromoteIfBetter's rule, with its McNemar test)."),
    approval: str = typer.Option(None, "--approval", help="manual: register it as pending until approved."),
    force: bool = typer.Option(False, "--force", help="Promote even when its held-out accuracy is near chance."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Publish a model of yours as a new version: the workflow's PublishModel step loads it, checks it,
    converts it to fp32 and int8 TF-Lite, evaluates it on held-out images and applies the policy."""
    from lambdas.model_registry import ModelError
    from operate.publishing import start_publish

    if approval not in (None, "manual"):
        fail(f"--approval {approval!r}: the only approval is manual")
    chosen = [name for name, on in (("--promote", promote), ("--promote-if-better", promote_if_better),
                                    ("--approval manual", approval)) if on]
    if len(chosen) > 1:
        fail(f"choose one policy, not {' and '.join(chosen)}")
    policy = "promote" if promote else "promote-if-better" if promote_if_better else "manual" if approval else "none"
    target = target_of(ctx)
    try:
        run_id, version = guarded(start_publish, target, artifact, version, labels, held_out, calibration,
                                  preprocess, policy, force)
    except ModelError as error:
        fail(str(error))
    if not as_json:
        say(console, f"staged {escape(artifact)} as version [bold]{version}[/]; run {run_id} publishes it")
    description = _wait_with_progress(target, run_id, "publish")
    from operate.operations import show_run

    detail = guarded(show_run, target, run_id)
    if as_json:
        emit_json(detail)
    else:
        _print_publish(detail["publish"])
    if description["status"] != "SUCCEEDED":
        if not as_json:
            fail(detail["publish"]["reason"])
        raise typer.Exit(2)


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
        def resolve() -> Any:  # the stack picked by --port or BATCHINFER_PORT, or the only one running
            return local_target(options.port)

        label = "local stack"
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


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) + f" ({sum(counts.values())})"


def _print_run(detail: dict[str, Any]) -> None:
    say(console, f"run [bold]{detail['run_id']}[/] ({detail['mode']}): {_status(detail['status'])}, "
                 f"started {detail['started']}, {_blank(detail['seconds'])} s")
    if detail.get("console_url"):
        say(console, f"console: {detail['console_url']}")
    if detail.get("error"):
        say(console, f"[red]{escape(one_line(str(detail['error'])))}: {escape(one_line(str(detail.get('cause'))))}[/]")
    print_table(console, [Column("state", key=True), Column("type"), Column("entered", key=True),
                          Column("seconds", right=True), Column("status", wrap=True)],
                [[step["state"], step["type"], step["entered"], _blank(step["seconds"]), escape(step["status"])]
                 for step in detail["timeline"]], title="timeline")
    map_runs = detail["map_runs"]
    for map_run in map_runs if len(map_runs) <= 5 else []:
        items = map_run["items"]
        say(console, f"map run {map_run['status']}: {items.get('total')} batches, {items.get('succeeded')} "
                     f"succeeded, {items.get('failed')} failed")
    if len(map_runs) > 1:  # a Map Run a slice: their sum
        total = {k: sum(int(m["items"].get(k) or 0) for m in map_runs) for k in ("total", "succeeded", "failed")}
        say(console, f"{len(map_runs)} map runs, one a slice: {total['total']} batches, {total['succeeded']} "
                     f"succeeded, {total['failed']} failed")
    if detail.get("progress"):
        say(console, f"progress: {detail['progress']}")
    if detail.get("retrain"):
        _print_retrain(detail["retrain"])
    if detail.get("publish"):
        _print_publish(detail["publish"])
    output = detail.get("output") or {}
    if output and detail["mode"] not in ("retrain", "publish"):
        slices = f"   slices: {output['slices']}" if int(output.get("slices") or 1) > 1 else ""
        say(console, f"images scored: {output.get('images_scored')}   failed: {output.get('images_failed')}   "
                     f"already scored: {output.get('already_scored')}{slices}")
        added = detail.get("added") or {}
        days = output.get("daily_counts") or {}
        if days:
            say(console, "added by this run:" + ("" if added else " nothing"))
            for day, counts in added.items():
                say(console, f"  {day}: {_counts(counts)}")
            say(console, "day totals when it ended (every run so far):")
            for day, counts in days.items():
                say(console, f"  {day}: {_counts(counts)}")
        if output.get("throttled"):
            say(console, "throttled AWS requests (retried, nothing lost): "
                         + ", ".join(f"{service} {n}" for service, n in output["throttled"].items()))
        for note in output.get("notes") or []:
            say(console, f"  note: {escape(note)}")
        if output.get("results"):
            say(console, f"result files: {escape(output['results']['predictions'])}  "
                         f"{escape(output['results']['failures'])}")
    if detail["failures"]:
        # One row per reason: a failed batch is many items with one cause. --json lists every item.
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for failure in detail["failures"]:
            groups.setdefault((failure["stage"], failure["reason"]), []).append(failure)
        rows = []
        for (stage, reason), items in sorted(groups.items(), key=lambda g: -len(g[1])):
            keys = [f["object"].split("/", 3)[-1] for f in items]
            shown = ", ".join(keys[:3]) + (f", … {len(keys) - 3} more" if len(keys) > 3 else "")
            rows.append([str(len(items)), stage, escape(reason), escape(shown)])
        print_table(console, [Column("items", right=True), Column("stage"), Column("reason", wrap=True),
                              Column("objects", wrap=True)],
                    rows, title=f"{len(detail['failures'])} failed item(s), by reason")
        if output.get("replay"):
            say(console, f"replay them with: [bold]{output['replay']}[/]")


def _print_publish(publish: dict[str, Any]) -> None:
    if publish["outcome"] == "failed":
        return  # fail() prints the reason as the one error line
    colour = {"promoted": "green", "pending": "yellow"}.get(publish["outcome"], "yellow")
    say(console, f"publish: [{colour}]{publish['outcome']}[/] {publish['model']}/{publish['version']} "
                 f"({publish['source_format']}, preprocess {publish['preprocess']}, serves {publish['serves']}); "
                 f"{escape(one_line(str(publish['reason'])))}")
    if publish.get("near_chance"):
        say(console, f"  [red]held-out accuracy {publish['accuracy']} is near chance[/]: is --preprocess right?")
    say(console, f"  softmax: {publish['softmax']}; serving now: {_blank(publish['current_version'])}")


def _accuracy(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def _print_retrain(retrain: dict[str, Any]) -> None:
    colour = {"promoted": "green", "kept": "yellow", "skipped": "yellow"}.get(retrain["outcome"], "red")
    say(console, f"retraining: [{colour}]{retrain['outcome']}[/]; {retrain['model']} serves "
                 f"{_blank(retrain['serving'])}")
    if retrain.get("reason"):
        say(console, f"  reason: {escape(one_line(str(retrain['reason'])))}")
    if retrain.get("labels") is not None:
        say(console, f"  labels: {len(retrain['labels'])} classes ({', '.join(map(str, retrain['labels']))}); "
                     f"{_blank(retrain['new_labels'])} new labelled image(s); {_blank(retrain['train_count'])} "
                     f"to train on, {_blank(retrain['holdout_count'])} held out")
    if retrain.get("candidate_version"):
        say(console, f"  on the same {_blank(retrain['held_out'])} held-out image(s): candidate "
                     f"{retrain['candidate_version']} {_accuracy(retrain['candidate_accuracy'])}, "
                     f"{_blank(retrain['previous_version']) or 'no current version'} "
                     f"{_accuracy(retrain['current_accuracy'])}")
    if retrain.get("excluded"):
        say(console, f"  {retrain['excluded']} unusable labelled image(s) left out (--json lists them)")


if __name__ == "__main__":
    app()
