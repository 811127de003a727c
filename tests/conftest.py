"""Shared fixtures: the embedded engine, the trained demo model, images to upload."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from operate.targets import write_local_stack

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Unit tests run on the in-memory fakes: a run of only unit tests must load neither of these.
HEAVY_FOR_UNIT = ("moto", "tensorflow")
_UNIT_ONLY = pytest.StashKey[bool]()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[_UNIT_ONLY] = bool(session.items) and all(
        item.get_closest_marker("unit") for item in session.items)


@pytest.fixture(autouse=True)
def _unit_runs_stay_light(request: pytest.FixtureRequest) -> Iterator[None]:
    """In a run of unit tests only (`-m unit`), fail the test after which moto or TensorFlow is loaded.

    In a mixed run the other tests load them on purpose, so the check is off."""
    yield
    if request.config.stash.get(_UNIT_ONLY, False):
        loaded = [name for name in HEAVY_FOR_UNIT if name in sys.modules]
        assert not loaded, f"a unit test loaded {', '.join(loaded)}: unit tests run on the fakes"


@pytest.fixture
def patched_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's mock of every service, with the engine's patches, and test credentials in us-east-1."""
    from moto import mock_aws

    from engine import moto_patches

    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    with mock_aws():
        moto_patches.install()
        yield


@pytest.fixture(scope="session")
def demo_model() -> tuple[Path, dict[str, Any]]:
    """The digits CNN, trained once (cached across sessions by its recipe)."""
    from demo import digits

    return digits.trained_demo_model()


@pytest.fixture(scope="session")
def demo_model_forms(demo_model: tuple[Path, dict[str, Any]]) -> Any:
    """The demo model's fp32 and int8 TF-Lite forms and the serving decision, as publish_model makes them."""
    from demo import digits

    return digits.demo_model_forms(demo_model[0])


@pytest.fixture(scope="session")
def held_out_digits() -> list[Any]:
    from demo import digits

    return digits.split()[1]


@pytest.fixture
def engine() -> Iterator[Any]:
    """An empty embedded stack: resources created, definition deployed, no model."""
    from engine.local_engine import LocalConfig, LocalEngine

    with LocalEngine(LocalConfig(batch_size=16, max_concurrency=2)) as running:
        yield running


@pytest.fixture
def scoring_engine(engine: Any, demo_model: tuple[Path, dict[str, Any]], demo_model_forms: Any) -> Any:
    """The embedded stack with the demo model published (Keras and both TF-Lite forms) and promoted as v1."""
    from demo import digits
    from inference_image.publishing import publish_forms
    from lambdas.model_registry import ModelRegistry

    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    publish_forms(registry, "v1", demo_model[0], digits.LABELS, demo_model[1], demo_model_forms)
    registry.promote("v1")
    return engine


def png_bytes(mode: str = "RGB", size: tuple[int, int] = (40, 30), colour: Any = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(engine: Any, key: str, body: bytes, label: str | None = None) -> str:
    extra = {"Metadata": {"true-label": label}} if label is not None else {}
    response = engine.client("s3").put_object(Bucket=engine.config.bucket, Key=key, Body=body, **extra)
    return str(response["VersionId"])


def prediction_rows(engine: Any) -> list[dict[str, Any]]:
    """Every prediction row, as the store's readers see them (a counted one is stored in its COUNTED item)."""
    from lambdas.stores import PredictionStore

    return PredictionStore.deployed(engine.client("dynamodb"), engine.predictions_table, engine.counts_table,
                                    8).model_predictions()


def counted_rows(engine: Any) -> list[dict[str, Any]]:
    from lambdas.stores import COUNTED, scan_all

    return [r for r in scan_all(engine.client("dynamodb"), TableName=engine.predictions_table)
            if r["sk"] == COUNTED]


def recount(engine: Any) -> dict[str, dict[str, int]]:
    """Per (date, class) counts recomputed from the prediction rows themselves."""
    counts: dict[str, Counter[str]] = {}
    seen: set[str] = set()
    for row in sorted(prediction_rows(engine), key=lambda r: r["created_at"]):
        if row["image_id"] in seen:
            continue  # a later model's prediction of the same version does not count again
        seen.add(row["image_id"])
        counts.setdefault(row["date"], Counter())[row["predicted_class"]] += 1
    return {day: dict(c) for day, c in sorted(counts.items())}


def stored_counts(engine: Any) -> dict[str, dict[str, int]]:
    from lambdas.stores import PredictionStore

    store = PredictionStore(engine.client("dynamodb"), engine.predictions_table, engine.counts_table, 8)
    return {day: {k: v for k, v in c.items() if v} for day, c in store.rollups().items()}


def output_of(description: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(description["output"]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, demo_model: Any) -> Iterator[Any]:
    """`batchinfer local serve`, in this process: moto's HTTP API, the bridge, the demo model."""
    from engine.local_engine import LocalConfig

    with serve(tmp_path, monkeypatch, demo_model, LocalConfig(name="ops", batch_size=8)) as engine:
        yield engine


@contextlib.contextmanager
def serve(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, demo_model: Any, config: Any) -> Iterator[Any]:
    """A stack served on a free port with `config`, the demo model promoted, for the CLI to find."""
    from demo import digits
    from engine.local_engine import LocalEngine
    from lambdas.model_registry import ModelRegistry

    monkeypatch.setenv("BATCHINFER_CACHE", str(tmp_path))
    with LocalEngine(config, port=free_port()) as engine:
        registry = ModelRegistry(config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
        registry.promote("v1")
        write_local_stack(engine.target(), os.getpid())
        yield engine


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def cli_json(*args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
