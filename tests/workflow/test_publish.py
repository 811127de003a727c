"""`batchinfer models publish` on a served local stack: every TensorFlow format a user brings, published by the
workflow's PublishModel step, serving, scoring real images, and agreeing with the model run in TensorFlow; the
declared preprocessing; and every bad artifact refused in one line with nothing left under the registry."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
from operate.targets import write_local_stack
from tests.conftest import free_port, prediction_rows

pytestmark = pytest.mark.workflow

LABELS = ["dark", "mid", "bright"]
SIZE = 16
# Grey levels of each class, far apart, with pixel noise: a tiny CNN learns them in a few epochs.
LEVELS = {"dark": (20, 70), "mid": (105, 150), "bright": (185, 235)}


def _image(label: str, rng: np.random.Generator, fmt: str) -> bytes:
    level = rng.uniform(*LEVELS[label])
    tint = rng.uniform(-15, 15, size=3)
    pixels = np.clip(level + tint + rng.normal(0, 8, size=(24, 24, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass
class Photo:
    label: str
    name: str
    data: bytes


def photos(count: int, seed: int) -> list[Photo]:
    rng = np.random.default_rng(seed)
    found = []
    for n in range(count):
        label = LABELS[n % 3]
        fmt = "JPEG" if n % 2 else "PNG"
        found.append(Photo(label, f"{label}-{seed}-{n}.{fmt.lower().replace('jpeg', 'jpg')}",
                           _image(label, rng, fmt)))
    return found


def decoded(items: list[Photo]) -> np.ndarray:
    from inference_image.preprocess import decode_image

    return np.stack([decode_image(p.data, (SIZE, SIZE), 3) for p in items])


@dataclass
class Models:
    folder: Path
    keras: Any  # raw 0-255 pixels in, probabilities out (Rescaling inside)
    minus_one: Any  # expects -1..1 input, ends in logits


def _train(folder: Path) -> Models:
    import keras

    keras.utils.set_random_seed(5)
    train = photos(90, seed=1)
    x = decoded(train).astype("float32")
    y = np.array([LABELS.index(p.label) for p in train])

    def net(rescale: bool, softmax: bool) -> Any:
        inputs = keras.Input((SIZE, SIZE, 3))
        h = keras.layers.Rescaling(1 / 255)(inputs) if rescale else inputs
        h = keras.layers.Conv2D(4, 3, activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        out = keras.layers.Dense(3, activation="softmax" if softmax else None)(h)
        return keras.Model(inputs, out)

    model = net(True, True)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    minus_one = net(False, False)
    minus_one.compile(optimizer=keras.optimizers.Adam(0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    minus_one.fit(x / 127.5 - 1, y, epochs=40, batch_size=32, verbose=0)
    for trained, scale in ((model, 1.0), (minus_one, None)):
        inputs = x if scale else x / 127.5 - 1
        assert (trained.predict(inputs, verbose=0).argmax(axis=1) == y).mean() > 0.95
    return Models(folder, model, minus_one)


def _artifacts(models: Models) -> dict[str, Path]:
    """Each format the test publishes, made from the two models (labels beside, inside, or given)."""
    import tensorflow as tf

    folder = models.folder
    (folder / "labels.json").write_text(json.dumps(LABELS))
    made: dict[str, Path] = {}
    models.keras.save(folder / "model.keras")
    made["keras"] = folder / "model.keras"
    models.keras.save(folder / "model.h5")
    made["h5"] = folder / "model.h5"
    saved = folder / "saved" / "moths"
    models.keras.export(str(saved), verbose=False)
    (saved / "labels.txt").write_text("\n".join(LABELS) + "\n")
    made["savedmodel"] = saved
    packed = folder / "packed"
    packed.mkdir()
    with tarfile.open(packed / "moths.tar.gz", "w:gz") as archive:
        archive.add(saved, arcname="moths")
    made["savedmodel.tar.gz"] = packed / "moths.tar.gz"
    sagemaker = folder / "sagemaker"
    sagemaker.mkdir()
    with tarfile.open(sagemaker / "model.tar.gz", "w:gz") as archive:  # SageMaker TF Serving: model/1/...
        for path in sorted(saved.rglob("*")):
            if path.name != "labels.txt":
                archive.add(path, arcname=f"model/1/{path.relative_to(saved)}", recursive=False)
    made["sagemaker"] = sagemaker / "model.tar.gz"
    calibration = decoded(photos(30, seed=3)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_keras_model(models.keras)
    (folder / "model.tflite").write_bytes(converter.convert())
    made["tflite"] = folder / "model.tflite"
    converter = tf.lite.TFLiteConverter.from_keras_model(models.keras)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([calibration[n: n + 1]] for n in range(len(calibration)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    (folder / "int8").mkdir()
    (folder / "int8" / "model.int8.tflite").write_bytes(converter.convert())
    (folder / "int8" / "labels.txt").write_text("\n".join(LABELS))
    made["int8.tflite"] = folder / "int8" / "model.int8.tflite"
    (folder / "minus_one").mkdir()
    models.minus_one.save(folder / "minus_one" / "model.keras")
    (folder / "minus_one" / "labels.json").write_text(json.dumps(LABELS))
    made["minus_one"] = folder / "minus_one" / "model.keras"
    return made


@dataclass
class Stack:
    engine: Any
    artifacts: dict[str, Path]
    models: Models
    held_out: Path
    scratch: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One served local stack for every test here, with no model; the test models and their artifacts."""
    from engine.local_engine import LocalConfig, LocalEngine

    scratch = tmp_path_factory.mktemp("publish")
    models = _train(scratch)
    artifacts = _artifacts(models)
    held_out = scratch / "held-out"
    for photo in photos(24, seed=2):
        (held_out / photo.label).mkdir(parents=True, exist_ok=True)
        (held_out / photo.label / photo.name).write_bytes(photo.data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATCHINFER_CACHE", str(scratch / "cache"))
        with LocalEngine(LocalConfig(name="pub", model_name="moths", batch_size=8), port=free_port()) as engine:
            write_local_stack(engine.target(), os.getpid())
            for path in held_out.rglob("*.*"):  # the default held-out set: labels/<class>/...
                engine.client("s3").upload_file(str(path), engine.config.bucket,
                                                f"labels/{path.relative_to(held_out).as_posix()}")
            yield Stack(engine, artifacts, models, held_out, scratch)


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def publish(stack: Stack, artifact: Path | str, *args: str) -> dict[str, Any]:
    result = run("models", "publish", str(artifact), *args, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def registry_keys(stack: Stack) -> list[str]:
    s3 = stack.engine.client("s3")
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=stack.engine.config.bucket, Prefix="models/")
    return sorted(f"{v['Key']}@{v['VersionId']}" for page in pages
                  for v in page.get("Versions", []) + page.get("DeleteMarkers", []))


def score(stack: Stack, folder: str, items: list[Photo]) -> dict[str, dict[str, Any]]:
    """Upload the photos under incoming/<folder>/, run a score run, and return each one's predicted class."""
    s3 = stack.engine.client("s3")
    for photo in items:
        s3.put_object(Bucket=stack.engine.config.bucket, Key=f"incoming/{folder}/{photo.name}", Body=photo.data)
    result = run("start", "--prefix", f"incoming/{folder}/", "--wait", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"]["images_scored"] == len(items)
    return {row["key"].rsplit("/", 1)[-1]: row for row in prediction_rows(stack.engine)
            if row["key"].startswith(f"incoming/{folder}/")}


def tf_classes(model: Any, items: list[Photo], preprocess: str = "none") -> list[str]:
    x = decoded(items).astype("float32")
    x = x / 127.5 - 1 if preprocess == "-1-1" else x
    return [LABELS[i] for i in model.predict(x, verbose=0).argmax(axis=1)]


FORMATS = ["keras", "h5", "savedmodel", "savedmodel.tar.gz", "sagemaker", "tflite", "int8.tflite"]


@pytest.mark.parametrize("kind", FORMATS)
def test_each_format_is_published_by_the_workflow_serves_and_agrees_with_tensorflow(stack: Stack, kind: str) -> None:
    version = f"v-{kind.replace('.', '-')}"
    extra = ["--labels", str(stack.models.folder / "labels.json")] if kind == "sagemaker" else []
    held = ["--held-out", str(stack.held_out)] if kind == "keras" else []  # a local folder, uploaded to labels/
    policy = ["--approval", "manual"] if kind == "h5" else ["--promote"]
    artifact: Path | str = stack.artifacts[kind]
    if kind == "tflite":  # from S3, its labels beside it
        s3, bucket = stack.engine.client("s3"), stack.engine.config.bucket
        s3.upload_file(str(artifact), bucket, "uploads/model.tflite")
        s3.upload_file(str(stack.models.folder / "labels.json"), bucket, "uploads/labels.json")
        artifact = f"s3://{bucket}/uploads/model.tflite"
    detail = publish(stack, artifact, "--version", version, *policy, *extra, *held)
    outcome = detail["publish"]
    assert detail["status"] == "SUCCEEDED" and detail["mode"] == "publish"
    if kind == "h5":  # pending until approved, then promoted by hand
        assert (outcome["outcome"], outcome["current_version"]) == ("pending", outcome["previous_version"])
        assert run("models", "approve", version).exit_code == 0
        assert run("models", "promote", version).exit_code == 0
    else:
        assert outcome["outcome"] == "promoted"
    assert (outcome["version"], outcome["model"]) == (version, "moths")
    assert outcome["held_out"] == 24 and outcome["accuracy"] > 0.9 and not outcome["near_chance"]
    assert outcome["by"] == "local"
    expected_form = {"int8.tflite": "int8", "tflite": "fp32"}.get(kind)
    if expected_form:
        assert outcome["serves"] == expected_form
    assert [s["state"] for s in detail["timeline"]] == ["RouteByMode", "PublishModel", "PublishSummary"]

    listed = {(r["version"]): r for r in json.loads(run("models", "--json").stdout)}
    assert listed[version]["current"] and listed[version]["preprocess"] == "none"

    items = photos(12, seed=10 + FORMATS.index(kind))
    rows = score(stack, version, items)
    assert {r["model_version"] for r in rows.values()} == {version}
    served = [rows[p.name]["predicted_class"] for p in items]
    reference = tf_classes(stack.models.keras, items)
    agreement = float(np.mean([a == b for a, b in zip(served, reference, strict=True)]))
    runtime = {r["runtime"] for r in rows.values()}
    assert agreement >= (0.99 if runtime == {"litert-int8"} else 1.0), (served, reference, runtime)
    # The confidence is the model's own probability (an int8 form's within its quantization).
    confidence = stack.models.keras.predict(decoded(items).astype("float32"), verbose=0).max(axis=1)
    served_confidence = np.array([float(rows[p.name]["confidence"]) for p in items])
    assert np.abs(served_confidence - confidence).max() < (0.05 if runtime == {"litert-int8"} else 1e-3)
    (row,) = [r for r in json.loads(run("runs", "--json").stdout) if r["run_id"] == detail["run_id"]]
    assert (row["mode"], row["outcome"]) == ("publish", "pending" if kind == "h5" else "promoted")
    history = [(e["event"], e["by"]) for e in json.loads(run("models", "history", "--json").stdout)
               if e["version"] == version]
    assert history[0] == ("published", "local") and history[-1][0] == "promoted"


def test_preprocessing_is_folded_in_and_a_forgotten_flag_is_near_chance_and_not_promoted(stack: Stack) -> None:
    without = publish(stack, stack.artifacts["minus_one"], "--version", "v-minus-one-raw", "--promote")["publish"]
    assert without["outcome"] == "published" and without["near_chance"]
    assert "near chance" in without["reason"] and "--preprocess" in without["reason"]
    assert without["current_version"] != "v-minus-one-raw"
    assert without["softmax"].startswith("folded in")
    forced = publish(stack, stack.artifacts["minus_one"], "--version", "v-minus-one-forced", "--promote",
                     "--force")["publish"]
    assert forced["outcome"] == "promoted" and forced["near_chance"]

    # Folded in, it beats the near-chance version on the same held-out images by more than chance.
    folded = publish(stack, stack.artifacts["minus_one"], "--version", "v-minus-one", "--preprocess", "-1-1",
                     "--promote-if-better")["publish"]
    assert folded["outcome"] == "promoted" and folded["preprocess"] == "-1-1" and not folded["near_chance"]
    assert folded["previous_version"] == "v-minus-one-forced" and folded["current_accuracy"] < 0.5
    assert "McNemar" in folded["reason"]
    listed = {r["version"]: r for r in json.loads(run("models", "--json").stdout)}
    assert listed["v-minus-one"]["preprocess"] == "-1-1"
    assert listed["v-minus-one"]["metrics"]["softmax"].startswith("folded in")
    items = photos(12, seed=30)
    rows = score(stack, "v-minus-one", items)
    served = [rows[p.name]["predicted_class"] for p in items]
    reference = tf_classes(stack.models.minus_one, items, "-1-1")
    minimum = 0.99 if {r["runtime"] for r in rows.values()} == {"litert-int8"} else 1.0
    assert np.mean([a == b for a, b in zip(served, reference, strict=True)]) >= minimum


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return path


def _bad_keras(folder: Path, kind: str) -> Path:
    import keras

    first = keras.Input((SIZE, SIZE, 3))
    if kind == "multi-input":
        second = keras.Input((SIZE, SIZE, 3))
        pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([first, second]))
        model = keras.Model([first, second], keras.layers.Dense(3, activation="softmax")(pooled))
    elif kind == "multi-output":
        pooled = keras.layers.GlobalAveragePooling2D()(first)
        model = keras.Model(first, [keras.layers.Dense(3)(pooled), keras.layers.Dense(2)(pooled)])
    else:  # any input size
        free = keras.Input((None, None, 3))
        model = keras.Model(free, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(free)))
    path = folder / kind / "model.keras"
    path.parent.mkdir()
    model.save(path)
    (path.parent / "labels.json").write_text(json.dumps(LABELS))
    return path


BAD = {
    # made here, refused by the CLI before anything is uploaded
    "unknown format": ("model.onnx", "unknown model format"),
    "corrupt archive": ("corrupt.tar.gz", "not a readable .tar.gz (corrupt or truncated)"),
    "truncated archive": ("truncated.tar.gz", "not a readable .tar.gz (corrupt or truncated)"),
    "path traversal": ("traversal.tar.gz", "leaves the archive's folder"),
    "symlink": ("link.tar.gz", "is a link to"),
    "over the size cap": ("huge.keras", "MiB a published artifact may be"),
    "no labels": ("nolabels/model.keras", "no labels"),
    # refused by the workflow's PublishModel step (it needs TensorFlow)
    "label count": ("keras", "outputs 3 scores but the labels name 2 classes"),
    "multi-input": ("multi-input", "a model must have one image input and one output"),
    "multi-output": ("multi-output", "a model must have one image input and one output"),
    "free input size": ("free-size", "a model must fix its input's height and width"),
}


def _make_bad(stack: Stack, case: str) -> list[str]:
    folder = stack.scratch / "bad" / case.replace(" ", "-")
    folder.mkdir(parents=True)
    name, _ = BAD[case]
    keras_file = stack.artifacts["keras"].read_bytes()
    if case == "unknown format":
        (folder / name).write_bytes(b"\x08\x01onnx")
    elif case == "corrupt archive":
        (folder / name).write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(400))
    elif case == "truncated archive":
        whole = _tar(folder / "whole.tar.gz", {"model.keras": keras_file + os.urandom(200_000)}).read_bytes()
        (folder / name).write_bytes(whole[: len(whole) // 2])
    elif case == "path traversal":
        _tar(folder / name, {"../model.keras": keras_file, "labels.json": json.dumps(LABELS).encode()})
    elif case == "symlink":
        _tar(folder / name, {"model.keras": keras_file}, {"labels.json": "/etc/passwd"})
    elif case == "over the size cap":
        with (folder / name).open("wb") as sparse:  # a sparse file: no disk, but its size is over the cap
            sparse.truncate(1024 * 1024 * 1024 + 1)
    elif case == "no labels":
        (folder / "nolabels").mkdir()
        shutil.copy(stack.artifacts["keras"], folder / name)
    elif case == "label count":
        (folder / "two.json").write_text(json.dumps(["dark", "bright"]))
        return [str(stack.artifacts["keras"]), "--labels", str(folder / "two.json")]
    else:
        return [str(_bad_keras(folder, name))]
    return [str(folder / name)]


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_artifact_is_refused_in_one_line_with_exit_2_and_nothing_registered(stack: Stack, case: str) -> None:
    args = _make_bad(stack, case)
    before = registry_keys(stack)
    result = run("models", "publish", *args, "--version", f"bad-{case.replace(' ', '-')}", "--promote")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:") and BAD[case][1] in errors[0], result.output
    assert registry_keys(stack) == before


def test_a_stack_publish_imports_no_tensorflow_in_the_cli(stack: Stack) -> None:
    """`--stack` against the served engine (a CloudFormation stack there names its resources): the CLI process
    stages the artifact and waits for the run; only the engine's PublishModel step loads TensorFlow."""
    engine = stack.engine
    target = engine.target()
    outputs = {"StateMachineArn": target.state_machine_arn, "BucketName": target.bucket,
               **{f"{logical}Name": name for logical, name in target.tables.items()}}
    template = {"Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    engine.client("cloudformation").create_stack(StackName="deployed", TemplateBody=json.dumps(template))
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cli.app import app\n"
        "result = CliRunner().invoke(app, sys.argv[1:])\n"
        "print(result.output)\n"
        "print('TENSORFLOW', 'tensorflow' in sys.modules, 'keras' in sys.modules, result.exit_code)\n"
    )
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
    done = subprocess.run(
        [sys.executable, "-c", script, "--stack", "deployed", "--region", engine.config.region, "--endpoint-url",
         str(engine.endpoint_url), "models", "publish", str(stack.artifacts["tflite"]), "--version", "v-stack"],
        capture_output=True, text=True, timeout=600, env=environment, cwd=Path(__file__).resolve().parents[2])
    assert "TENSORFLOW False False 0" in done.stdout, done.stdout + done.stderr
    assert "publish: published moths/v-stack" in done.stdout
