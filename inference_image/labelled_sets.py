"""Labelled images from a training manifest, decoded as the classifier decodes them; corrupt ones
are reported and left out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np

from inference_image.preprocess import BadImage, decode_image
from lambdas.records import BadRecord
from lambdas.stores import ImageSource, ImageTooLarge, ObjectUnreadable


@dataclass
class LabelledSet:
    images: np.ndarray
    targets: np.ndarray
    excluded: list[dict[str, str]] = field(default_factory=list)


def read_manifest(source: ImageSource, uri: str) -> list[dict[str, str]]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        raise BadRecord(f"a training manifest must be an s3:// URI, got {uri!r}")
    items = source.read_json(parsed.netloc, parsed.path.lstrip("/"))
    if not isinstance(items, list):
        raise BadRecord(f"{uri} must hold a list of {{bucket, key, label}} objects")
    return items


def load_labelled_set(source: ImageSource, uri: str, labels: list[str], size: tuple[int, int], channels: int,
                      max_bytes: int, max_pixels: int, threads: int = 8) -> LabelledSet:
    return load_labelled_items(source, read_manifest(source, uri), labels, size, channels, max_bytes, max_pixels,
                               threads)


def labelled_under(source: ImageSource, uri: str, labels: list[str]) -> list[dict[str, str]]:
    """{bucket, key, label} of the images under an s3:// prefix laid out <prefix>/<class>/..., for the
    given classes (folders of other names are not of this model)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise BadRecord(f"a labelled set must be an s3:// prefix, got {uri!r}")
    prefix = parsed.path.lstrip("/")
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    items = []
    for key, _ in source.list_objects(parsed.netloc, prefix):
        parts = key[len(prefix):].split("/")
        if len(parts) >= 2 and parts[0] in labels and parts[-1]:
            items.append({"bucket": parsed.netloc, "key": key, "label": parts[0]})
    return items


def load_labelled_items(source: ImageSource, items: list[dict[str, str]], labels: list[str], size: tuple[int, int],
                        channels: int, max_bytes: int, max_pixels: int, threads: int = 8) -> LabelledSet:
    def load(item: dict[str, str]) -> np.ndarray | str:
        try:
            data = source.read_object(item["bucket"], item["key"], max_bytes)
            return decode_image(data, size, channels, max_pixels)
        except ImageTooLarge:
            return f"object is above the limit of {max_bytes} bytes"
        except BadImage as error:
            return str(error)
        except ObjectUnreadable as error:
            return f"cannot read: {error.code}"

    with ThreadPoolExecutor(max_workers=threads) as pool:
        loaded = list(pool.map(load, items))
    kept = [(a, labels.index(i["label"])) for i, a in zip(items, loaded, strict=True) if isinstance(a, np.ndarray)]
    excluded = [{"object": f"s3://{i['bucket']}/{i['key']}", "reason": a}
                for i, a in zip(items, loaded, strict=True) if isinstance(a, str)]
    shape = (0, *size, channels)
    images = np.stack([a for a, _ in kept]) if kept else np.zeros(shape, dtype=np.uint8)
    return LabelledSet(images=images, targets=np.array([t for _, t in kept], dtype=np.int64), excluded=excluded)
