"""Model registry: versions under <root>/<version>/ and a pointer to the current one.

The root is an S3 URI (s3://bucket/models/<name>) or a local folder. A version holds
`model.keras`, `labels.json` (class names in output order) and `metrics.json`, and, when it was
published with inference_image.publishing.publish_model, its TF-Lite forms: `model.tflite` (fp32)
and `model.int8.tflite` (full-integer int8). metrics.json says under "serving" which form serves
and why; a cold start fetches that one file and not the others.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from contract.resource_spec import COMPILED_FILE, LABELS_FILE, METRICS_FILE, MODEL_FILE, POINTER_FILE, SERVING_FILES
from lambdas.records import utc_now

__all__ = ["LABELS_FILE", "METRICS_FILE", "MODEL_FILE", "POINTER_FILE", "ModelError", "ModelRegistry", "ModelVersion"]


class ModelError(RuntimeError):
    """The registry, the model file or its labels cannot be used; the message says which."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    model_path: Path  # local file (the form that serves, unless asked for another), downloaded from S3
    labels: list[str]
    metrics: dict[str, Any]


class ModelRegistry:
    def __init__(self, location: str, s3_client: Any = None, cache_dir: str | None = None):
        self.location = location.rstrip("/")
        parsed = urlparse(self.location)
        self.is_s3 = parsed.scheme == "s3"
        if self.is_s3:
            self.bucket, self.prefix = parsed.netloc, parsed.path.lstrip("/")
            if s3_client is None:
                import boto3

                s3_client = boto3.client("s3")
            self.s3 = s3_client
        else:
            self.root = Path(parsed.path if parsed.scheme == "file" else self.location)
        self.cache_dir = Path(cache_dir or os.path.join(tempfile.gettempdir(), "batchinfer-models"))

    @property
    def name(self) -> str:
        return self.location.rsplit("/", 1)[-1]

    # -- reading ---------------------------------------------------------------------------
    def _read(self, relative: str) -> bytes:
        if self.is_s3:
            try:
                response = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{relative}")
            except Exception as error:  # botocore raises a family of errors here
                raise ModelError(f"cannot read {self.location}/{relative}: {error}") from None
            return bytes(response["Body"].read())
        path = self.root / relative
        if not path.exists():
            raise ModelError(f"cannot read {path}: no such file")
        return path.read_bytes()

    def _read_json(self, relative: str) -> Any:
        raw = self._read(relative)
        try:
            return json.loads(raw)
        except ValueError as error:
            raise ModelError(f"{self.location}/{relative} is not valid JSON: {error}") from None

    def current_version(self) -> str:
        pointer = self._read_json(POINTER_FILE)
        if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
            raise ModelError(f"{self.location}/{POINTER_FILE} must be an object with a 'version' string")
        return str(pointer["version"])

    def fetch_labels(self, version: str) -> list[str]:
        labels = self._read_json(f"{version}/{LABELS_FILE}")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise ModelError(f"{self.location}/{version}/{LABELS_FILE} must be a non-empty list of class names")
        return labels

    def _exists(self, relative: str) -> bool:
        if not self.is_s3:
            return (self.root / relative).exists()
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=f"{self.prefix}/{relative}")
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return False
            raise ModelError(f"cannot read {self.location}/{relative}: {error}") from None
        return True

    def serving_file(self, version: str, metrics: dict[str, Any]) -> str:
        """The file a version serves from: the form its metrics chose, else (a version published
        before int8) its fp32 TF-Lite form, else its Keras model."""
        serving = metrics.get("serving")
        form = serving.get("form") if isinstance(serving, dict) else None
        if form in SERVING_FILES:
            return SERVING_FILES[str(form)]
        return COMPILED_FILE if self._exists(f"{version}/{COMPILED_FILE}") else MODEL_FILE

    def fetch(self, version: str, file: str | None = None) -> ModelVersion:
        """A version with one of its model files local: `file`, or by default the one that serves."""
        labels = self.fetch_labels(version)
        try:
            metrics = self._read_json(f"{version}/{METRICS_FILE}")
        except ModelError:
            metrics = {}
        if not isinstance(metrics, dict):
            metrics = {}
        name = file or self.serving_file(version, metrics)
        if self.is_s3:
            local = self.cache_dir / self.bucket / self.prefix / version / name
            if not local.exists():
                local.parent.mkdir(parents=True, exist_ok=True)
                partial = local.with_name(local.name + ".partial")
                partial.write_bytes(self._read(f"{version}/{name}"))
                partial.replace(local)
        else:
            local = self.root / version / name
            if not local.exists():
                raise ModelError(f"cannot read {local}: no such file")
        return ModelVersion(version=version, model_path=local, labels=labels, metrics=metrics)

    def versions(self) -> list[str]:
        if self.is_s3:
            paginator = self.s3.get_paginator("list_objects_v2")
            found = set()
            for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/", Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    found.add(common["Prefix"].rstrip("/").rsplit("/", 1)[-1])
            return sorted(found)
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def metrics(self, version: str) -> dict[str, Any]:
        try:
            value = self._read_json(f"{version}/{METRICS_FILE}")
        except ModelError:
            return {}
        return value if isinstance(value, dict) else {}

    # -- writing ---------------------------------------------------------------------------
    def _write(self, relative: str, data: bytes) -> None:
        if self.is_s3:
            self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{relative}", Body=data)
        else:
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def publish(self, version: str, model_file: Path, labels: list[str], metrics: dict[str, Any],
                forms: dict[str, bytes] | None = None) -> None:
        """Store a version (with its TF-Lite forms, by file name); it serves nothing until it is promoted."""
        self._write(f"{version}/{LABELS_FILE}", json.dumps(labels).encode())
        for name, data in (forms or {}).items():
            self._write(f"{version}/{name}", data)
        if self.is_s3:
            self._write(f"{version}/{MODEL_FILE}", model_file.read_bytes())
        else:
            target = self.root / version / MODEL_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_file, target)
        # Last: the metrics name the form that serves, so the files they name are there before them.
        self._write(f"{version}/{METRICS_FILE}", json.dumps(metrics, indent=2).encode())

    def write_metrics(self, version: str, metrics: dict[str, Any]) -> None:
        self._write(f"{version}/{METRICS_FILE}", json.dumps(metrics, indent=2).encode())

    def promote(self, version: str) -> None:
        self._write(POINTER_FILE, json.dumps({"version": version, "promoted_at": utc_now()}).encode())
