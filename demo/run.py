"""`batchinfer demo`: the whole system on the embedded engine, from an empty bucket to daily counts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from contract.resource_spec import IMAGES_PREFIX
from demo import digits
from engine.local_engine import LocalConfig, LocalEngine
from inference_image.publishing import publish_forms
from lambdas.model_registry import ModelRegistry
from lambdas.stores import PredictionStore
from operate import operations
from operate.output import Column, print_table, say

# Objects that are not usable images, uploaded beside the digits to show that they fail alone.
BAD_OBJECTS = {
    "incoming/notes.png": b"this is a text file with an image's name",
    "incoming/empty.jpg": b"",
    "incoming/truncated.png": None,  # filled with the first half of a real PNG
}


@dataclass
class DemoResult:
    status: str
    run_id: str
    seconds: float
    images_uploaded: int
    scored: int
    failed: int
    accuracy: float
    daily_counts: dict[str, dict[str, int]]
    concurrency: int  # batches in flight: the Map's MaxConcurrency
    failures: list[dict[str, Any]] = field(default_factory=list)  # operate.operations.run_failures
    output: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the execution's error and cause, when it did not succeed
    cause: str | None = None
    model_version: str = ""
    retraining: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds else 0.0


def publish_demo_model(engine: LocalEngine, console: Console | None = None, by: str = "demo") -> str:
    """Publish the digits model as v1 and serve it; the registry's history says `by` did."""
    started = time.perf_counter()
    model_file, metrics = digits.trained_demo_model()
    forms = digits.demo_model_forms(model_file)
    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    version = "v1"
    publish_forms(registry, version, model_file, digits.LABELS, metrics, forms)
    registry.record("published", version, by, detail={"source": "the demo's digits model"})
    registry.promote(version, by)
    if console:
        serving = forms.serving
        say(
            console,
            f"model [bold]{registry.name}/{version}[/]: Keras CNN, held-out accuracy {metrics['accuracy']:.3f} "
            f"on {metrics['held_out']} digits ({time.perf_counter() - started:.1f} s to train or load); "
            f"serves [bold]{serving['form']}[/] on LiteRT: {serving['reason']}",
        )
    return version


def upload_digits(engine: LocalEngine, count: int, with_bad_objects: bool = True) -> dict[str, str]:
    """Upload held-out digits as PNGs, their true label in object metadata; returns key -> label."""
    _, held_out = digits.split()
    s3 = engine.client("s3")
    truth = {}
    for n in range(count):
        digit = held_out[n % len(held_out)]
        key = f"{IMAGES_PREFIX}digit-{n:05d}.png"
        s3.put_object(Bucket=engine.config.bucket, Key=key, Body=digit.png, ContentType="image/png",
                      Metadata={"true-label": digit.label})
        truth[key] = digit.label
    if with_bad_objects:
        for key, body in BAD_OBJECTS.items():
            data = body if body is not None else held_out[0].png[: len(held_out[0].png) // 2]
            s3.put_object(Bucket=engine.config.bucket, Key=key, Body=data)
    return truth


def accuracy(engine: LocalEngine, truth: dict[str, str]) -> tuple[float, int]:
    store = PredictionStore.deployed(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)
    rows = [r for r in store.model_predictions() if r["key"] in truth]
    right = sum(1 for r in rows if r["predicted_class"] == truth[r["key"]])
    return (right / len(rows) if rows else 0.0), len(rows)


def retrain_round(engine: LocalEngine, labelled: int = 200) -> dict[str, Any]:
    """Label some digits (as people would, under labels/<class>/), run the retraining branch."""
    import json

    train_set, _ = digits.split()
    s3 = engine.client("s3")
    for digit in train_set[:labelled]:
        s3.put_object(Bucket=engine.config.bucket, Key=f"labels/{digit.label}/d{digit.index:04d}.png", Body=digit.png)
    description = engine.run({"mode": "retrain"}, timeout=1800)
    if description["status"] != "SUCCEEDED":
        return {"outcome": description["status"], "reason": str(description.get("cause")), "labelled": labelled}
    return {**json.loads(description["output"])["outcome"], "labelled": labelled}


def run_demo(images: int = 300, batch_size: int = 32, concurrency: int = 2, time_zone: str = "UTC",
             console: Console | None = None, faults: str | None = None, retrain: bool = False) -> DemoResult:
    console = console or Console()
    config = LocalConfig(batch_size=batch_size, max_concurrency=concurrency, time_zone=time_zone)
    if faults is not None:  # a fault plan to rehearse failures (engine/faults.py)
        config.faults = faults
    with LocalEngine(config) as engine:
        say(console, f"embedded engine up: bucket [bold]{config.bucket}[/], state machine [bold]{config.name}[/]")
        model_version = publish_demo_model(engine, console)
        truth = upload_digits(engine, images)
        say(console, f"uploaded {images} digit images and {len(BAD_OBJECTS)} bad objects to "
                      f"s3://{config.bucket}/{IMAGES_PREFIX}")
        target = engine.target()
        started = time.perf_counter()
        arn = engine.start_execution({"mode": "score"})
        run_id = arn.rsplit(":", 1)[-1]
        say(console, f"started execution [bold]{run_id}[/] with {{\"mode\": \"score\"}}, as the nightly schedule does")
        expected = images + len(BAD_OBJECTS)
        run_progress = operations.RunProgress(target, run_id)  # the current Map Run's counts: O(1) a poll
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[batches]}"),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            # Until the listing has planned the batches there is nothing to count: say what runs instead.
            task = bar.add_task("listing the new versions", total=None, batches="")

            def poll(_: dict[str, Any]) -> None:
                now = run_progress()
                if now.planned is not None:
                    bar.update(task, description="classifying", completed=now.done, total=max(now.planned, 1),
                               batches=now.describe())

            description = operations.wait(target, run_id, on_poll=poll, timeout=3600, poll_seconds=0.2)
        seconds = time.perf_counter() - started
        output = operations.run_output(description)
        failures = operations.run_failures(target, run_id)
        acc, _ = accuracy(engine, truth)
        retraining = retrain_round(engine) if retrain else {}
        return DemoResult(
            status=description["status"],
            run_id=run_id,
            seconds=seconds,
            images_uploaded=expected,
            scored=int(output.get("images_scored", 0)),
            failed=int(output.get("images_failed", 0)),
            accuracy=acc,
            daily_counts=output.get("daily_counts", {}),
            concurrency=concurrency,
            failures=failures,
            output=output,
            error=description.get("error"),
            cause=description.get("cause"),
            model_version=model_version,
            retraining=retraining,
        )


def _key(s3_uri: str) -> str:
    """The object key of s3://<bucket>/<key>."""
    return s3_uri.split("/", 3)[3]


def print_result(result: DemoResult, console: Console) -> None:
    colour = "green" if result.status == "SUCCEEDED" else "red"
    say(console, f"\nexecution [bold]{result.run_id}[/]: [{colour}]{result.status}[/] in {result.seconds:.1f} s")
    if result.status != "SUCCEEDED":
        say(console, f"[red]{escape(str(result.error))}: {escape(str(result.cause))}[/]")
    say(console, f"images scored: {result.scored}   failed: {result.failed}   "
                 f"throughput: {result.images_per_second:.1f} images/s (whole workflow, {result.concurrency} batches "
                 "in flight)")
    for day, counts in result.daily_counts.items():
        rows = [[label, str(counts[label])] for label in sorted(counts, key=lambda c: (len(c), c))]
        rows.append(["[bold]total[/]", f"[bold]{sum(counts.values())}[/]"])
        print_table(console, [Column("class"), Column("images", right=True)], rows,
                    title=f"{day}, model {result.model_version}")
    if result.failures:
        print_table(console, [Column("object", key=True), Column("stage"), Column("reason", wrap=True)],
                    [[escape(_key(f["object"])), f["stage"], escape(f["reason"])] for f in result.failures],
                    title="failures, kept with the run for replay")
    say(console, f"accuracy against the true labels: [bold]{result.accuracy:.3f}[/]")
    if result.retraining:
        say(console, f"\nretraining round ({{\"mode\": \"retrain\"}}, as the weekly schedule does) on "
                      f"{result.retraining['labelled']} digits labelled under labels/<class>/: "
                      f"[bold]{result.retraining['outcome']}[/]\n  {result.retraining.get('reason', '')}")
