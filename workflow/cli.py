"""The `batchinfer` command line."""

from __future__ import annotations

import os

import typer
from rich.console import Console

app = typer.Typer(help="Batch image classification on AWS Step Functions, in AWS or on one machine.",
                  no_args_is_help=True, add_completion=False)
console = Console()


@app.callback()
def main() -> None:
    """Batch image classification on AWS Step Functions, in AWS or on one machine."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Function logs are JSON for CloudWatch; on a terminal the CLI reports what matters itself.
    os.environ.setdefault("BATCHINFER_LOG_LEVEL", "ERROR")


@app.command()
def demo(
    images: int = typer.Option(300, min=1, max=20000, help="How many digit images to upload and score."),
    batch_size: int = typer.Option(32, min=1, max=256, help="Images per ClassifyBatch invocation."),
    concurrency: int = typer.Option(2, min=1, max=64, help="Batches in flight (the Map's MaxConcurrency)."),
    time_zone: str = typer.Option("UTC", help="IANA time zone that dates the predictions."),
) -> None:
    """Run the whole system on the embedded engine: train or reuse the demo model, upload digits,
    score them with the real state machine, and report counts and accuracy."""
    from workflow.demo import print_result, run_demo

    result = run_demo(images=images, batch_size=batch_size, concurrency=concurrency,
                      time_zone=time_zone, console=console)
    print_result(result, console)
    if result.status != "SUCCEEDED":
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
