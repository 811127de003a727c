"""Bad input at the entrance: every bad object gets one clear failure record, every good one —
however odd its mode, name or extension — is scored, and the counts stay exact. A broken model
or labels file fails its batches with a ModelError per item, not retried, and the run goes on."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine import lambda_bridge
from lambdas.stores import FailureStore
from tests.conftest import counted_rows, output_of, prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.reliability

MAX_IMAGE_BYTES = 60_000


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height: a decompression bomb as its header shows it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(
        b"IEND", b"")


def corrupt_png(png: bytes) -> bytes:
    """A whole-length PNG whose compressed pixel data is garbage (CRCs and all intact but IDAT)."""
    start = png.index(b"IDAT") + 4
    return png[:start] + bytes(b ^ 0x5A for b in png[start:start + 200]) + png[start + 200:]


def bad_and_good(digits: list[Any]) -> tuple[dict[str, tuple[bytes, str]], dict[str, bytes]]:
    """(bad objects: key -> (body, expected reason start), good objects: key -> body)."""
    picture = Image.open(io.BytesIO(digits[0].png)).convert("RGB")
    grey16 = np.asarray(picture.convert("L"), dtype=np.uint16) * 257
    palette = picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [Image.open(io.BytesIO(d.png)).convert("RGB") for d in digits[1:3]]
    noise = Image.fromarray(np.random.default_rng(3).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    bad = {
        "incoming/notes.png": (b"a text file with an image's name\n" * 3, "not an image: the bytes are in no format"),
        "incoming/empty.jpg": (b"", "the object is empty (0 bytes)"),
        "incoming/truncated.png": (digits[3].png[: len(digits[3].png) // 2], "the image data is truncated or corrupt"),
        "incoming/corrupt.png": (corrupt_png(digits[4].png), "the image data is truncated or corrupt"),
        # Above our limit (40 M pixels): refused from the header, before any pixel is decoded.
        "incoming/bomb.png": (png_header_only(8_000, 8_000),
                              "the image is 8000x8000 = 64,000,000 pixels, above the limit of 40,000,000"),
        # Above Pillow's own guard (400 M): refused by Pillow as it opens the file.
        "incoming/giant-bomb.png": (png_header_only(50_000, 50_000),
                                    "refused as a decompression bomb: Image size (2500000000 pixels)"),
        "incoming/huge-file.png": (encode(noise, "PNG"), "object is "),
        "incoming/deleted-before-scoring.png": (digits[5].png, "the object version was deleted before it was scored"),
    }
    good = {
        "incoming/cmyk.jpg": encode(picture.convert("CMYK"), "JPEG", quality=95),
        "incoming/sixteen-bit.png": encode(Image.fromarray(grey16), "PNG"),
        "incoming/palette-transparent.png": encode(palette, "PNG", transparency=0),
        "incoming/animated.gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100),
        "incoming/really-a-png.jpg": digits[6].png,
        "incoming/a key with spaces (1).png": digits[7].png,
        "incoming/chiffre-été-ü-数字.png": digits[8].png,
        "incoming/greyscale.png": encode(picture.convert("L"), "PNG"),
        "incoming/rgba.png": encode(picture.convert("RGBA"), "PNG"),
        "incoming/exif-rotated.jpg": encode(picture, "JPEG", exif=_rotated_exif()),
    }
    for n, digit in enumerate(digits[10:30]):
        good[f"incoming/digit-{n:02d}.png"] = digit.png
    return bad, good


def _rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


@pytest.fixture
def bag_engine(demo_model: Any) -> Iterator[Any]:
    from demo import digits
    from engine.local_engine import LocalConfig, LocalEngine
    from lambdas.model_registry import ModelRegistry

    config = LocalConfig(name="rel-inputs", batch_size=8, max_concurrency=2,
                         extra_settings={"BATCHINFER_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES)})
    with LocalEngine(config) as engine:
        registry = ModelRegistry(config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
        registry.promote("v1")
        yield engine


def test_a_mixed_bag_of_bad_and_odd_objects(bag_engine: Any, held_out_digits: list[Any]) -> None:
    engine = bag_engine
    bad, good = bad_and_good(held_out_digits)
    assert len(bad["incoming/huge-file.png"][0]) > MAX_IMAGE_BYTES
    versions = {key: upload(engine, key, body) for key, (body, _) in bad.items()}
    for key, body in good.items():
        versions[key] = upload(engine, key, body)

    # The version is listed, then deleted before its batch reads it.
    doomed = "incoming/deleted-before-scoring.png"

    def delete_before_classify(function: str, event: Any) -> None:
        if function.endswith("ClassifyBatch") and any(i["key"] == doomed for i in event["batch"]["items"]):
            engine.client("s3").delete_object(Bucket=engine.config.bucket, Key=doomed, VersionId=versions[doomed])

    lambda_bridge.set_fault_hook(delete_before_classify)
    try:
        description = engine.run({"mode": "score"}, timeout=600)
    finally:
        lambda_bridge.set_fault_hook(None)
    assert description["status"] == "SUCCEEDED", description
    summary = output_of(description)
    assert summary["images_scored"] == len(good) and summary["images_failed"] == len(bad)

    failures = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run(summary["run_id"])
    reasons = {f["image"]["key"]: f["reason"] for f in failures}
    assert set(reasons) == set(bad)
    for key, (_, reason) in bad.items():
        assert reasons[key].startswith(reason), (key, reasons[key])
    size = len(bad["incoming/huge-file.png"][0])
    assert reasons["incoming/huge-file.png"] == f"object is {size} bytes, above the limit of {MAX_IMAGE_BYTES} bytes"
    stages = {f["image"]["key"]: (f["stage"], f["error_type"]) for f in failures}
    assert stages["incoming/bomb.png"] == ("decode", "BadImage")
    assert stages["incoming/huge-file.png"] == ("read", "ImageTooLarge")
    assert stages[doomed][0] == "read" and stages[doomed][1] in ("NoSuchVersion", "NoSuchKey")

    rows = {r["key"]: r for r in prediction_rows(engine)}
    assert set(rows) == set(good)  # every odd-but-good object scored, under its own key
    for key, row in rows.items():
        assert row["version_id"] == versions[key]
        assert abs(sum(row["probabilities"].values()) - 1.0) < 1e-3
    # The odd encodings of digit 0 are still read as the digit it is.
    same_digit = ["incoming/sixteen-bit.png", "incoming/greyscale.png", "incoming/rgba.png", "incoming/cmyk.jpg"]
    assert sum(rows[k]["predicted_class"] == held_out_digits[0].label for k in same_digit) >= 3
    assert rows["incoming/chiffre-été-ü-数字.png"]["predicted_class"] == held_out_digits[8].label
    assert rows["incoming/a key with spaces (1).png"]["predicted_class"] == held_out_digits[7].label
    assert rows["incoming/really-a-png.jpg"]["predicted_class"] == held_out_digits[6].label

    assert len(counted_rows(engine)) == len(good)
    assert stored_counts(engine) == recount(engine) == summary["daily_counts"]
    assert sum(sum(day.values()) for day in stored_counts(engine).values()) == len(good)


def publish_broken(engine: Any, demo_model: Any, version: str, model_bytes: bytes | None, labels: list[str]) -> None:
    from lambdas.model_registry import ModelRegistry

    registry = ModelRegistry(engine.config.model_registry, s3_client=engine.client("s3"))
    registry.publish(version, demo_model[0], labels, {"accuracy": 0.0})
    if model_bytes is not None:
        registry.publish_file(version, "model.keras", model_bytes)
    registry.promote(version)


@pytest.mark.parametrize(
    ("version", "model_bytes", "labels", "reason"),
    [
        ("garbage-model", b"PK\x03\x04 not a keras archive at all", [str(d) for d in range(10)],
         "ModelError: cannot load model version garbage-model from model.keras"),
        ("three-labels", None, ["a", "b", "c"],
         "ModelError: labels.json of model version three-labels names 3 classes but the model outputs 10"),
    ],
    ids=["broken-model-file", "wrong-number-of-labels"],
)
def test_a_broken_model_fails_its_batches_once_each_and_the_run_goes_on(
    bag_engine: Any, demo_model: Any, held_out_digits: list[Any], version: str, model_bytes: bytes | None,
    labels: list[str], reason: str,
) -> None:
    engine = bag_engine
    publish_broken(engine, demo_model, version, model_bytes, labels)
    for digit in held_out_digits[:12]:  # two batches of 8 and 4
        upload(engine, f"incoming/{digit.index:04d}.png", digit.png)

    description = engine.run({"mode": "score"})
    assert description["status"] == "SUCCEEDED", description
    summary = output_of(description)
    assert summary["images_scored"] == 0 and summary["images_failed"] == 12
    classify_calls = [name for name, _, _ in lambda_bridge.invocations() if name.endswith("ClassifyBatch")]
    assert len(classify_calls) == 2  # one attempt per batch: a ModelError is not retried
    failures = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run(summary["run_id"])
    assert len(failures) == 12
    for failure in failures:
        assert failure["stage"] == "batch" and failure["error_type"] == "ModelError"
        assert reason in failure["reason"], failure["reason"]
    assert prediction_rows(engine) == [] and stored_counts(engine) == {}
