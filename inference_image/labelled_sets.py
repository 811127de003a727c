"""Labelled images from a training manifest, decoded as the classifier decodes them; corrupt ones
are reported and left out."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
from botocore.exceptions import ClientError

from inference_image.preprocess import BadImage, decode_image
from lambdas.records import BadRecord


@dataclass
class LabelledSet:
    images: np.ndarray
    targets: np.ndarray
    excluded: list[dict[str, str]] = field(default_factory=list)


def read_manifest(s3: Any, uri: str) -> list[dict[str, str]]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3":
        raise BadRecord(f"a training manifest must be an s3:// URI, got {uri!r}")
    items = json.loads(s3.get_object(Bucket=parsed.netloc, Key=parsed.path.lstrip("/"))["Body"].read())
    if not isinstance(items, list):
        raise BadRecord(f"{uri} must hold a list of {{bucket, key, label}} objects")
    return items


def load_labelled_set(s3: Any, uri: str, labels: list[str], size: tuple[int, int], channels: int,
                      max_bytes: int, max_pixels: int, threads: int = 8) -> LabelledSet:
    items = read_manifest(s3, uri)

    def load(item: dict[str, str]) -> np.ndarray | str:
        try:
            response = s3.get_object(Bucket=item["bucket"], Key=item["key"])
            if int(response.get("ContentLength") or 0) > max_bytes:
                return f"object is above the limit of {max_bytes} bytes"
            return decode_image(response["Body"].read(), size, channels, max_pixels)
        except BadImage as error:
            return str(error)
        except ClientError as error:
            return f"cannot read: {error.response['Error']['Code']}"

    with ThreadPoolExecutor(max_workers=threads) as pool:
        loaded = list(pool.map(load, items))
    kept = [(a, labels.index(i["label"])) for i, a in zip(items, loaded, strict=True) if isinstance(a, np.ndarray)]
    excluded = [{"object": f"s3://{i['bucket']}/{i['key']}", "reason": a}
                for i, a in zip(items, loaded, strict=True) if isinstance(a, str)]
    shape = (0, *size, channels)
    images = np.stack([a for a, _ in kept]) if kept else np.zeros(shape, dtype=np.uint8)
    return LabelledSet(images=images, targets=np.array([t for _, t in kept], dtype=np.int64), excluded=excluded)
