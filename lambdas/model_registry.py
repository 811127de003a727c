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
from typing import Any, Protocol
from urllib.parse import urlparse

from contract.resource_spec import COMPILED_FILE, LABELS_FILE, METRICS_FILE, MODEL_FILE, POINTER_FILE, SERVING_FILES
from lambdas.records import utc_now

__all__ = ["LABELS_FILE", "METRICS_FILE", "MODEL_FILE", "POINTER_FILE", "ModelError", "ModelFileMissing",
           "ModelRegistry", "ModelVersion", "RegistryStorage", "S3RegistryStorage", "FolderRegistryStorage",
           "require_serving_model"]


class ModelError(RuntimeError):
    """The registry, the model file or its labels cannot be used; the message says which."""


class ModelFileMissing(ModelError):
    """The registry has no such file (as opposed to a file it cannot read)."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    model_path: Path  # local file (the form that serves, unless asked for another), downloaded from S3
    labels: list[str]
    metrics: dict[str, Any]


class RegistryStorage(Protocol):
    """Where a registry's files live: paths are relative to the registry's root."""

    location: str

    def read(self, relative: str) -> bytes:
        """The file's bytes; ModelFileMissing if there is none, ModelError if it cannot be read."""
        ...

    def write(self, relative: str, data: bytes) -> None: ...

    def folders(self) -> list[str]:
        """The names of the folders right under the root (the versions)."""
        ...

    def local_path(self, relative: str) -> Path | None:
        """The file on this machine when the storage is a local folder, else None (it is downloaded)."""
        ...


class S3RegistryStorage:
    def __init__(self, location: str, s3_client: Any):
        self.location = location.rstrip("/")
        parsed = urlparse(self.location)
        self.bucket, self.prefix = parsed.netloc, parsed.path.lstrip("/")
        self.s3 = s3_client

    def read(self, relative: str) -> bytes:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{relative}")
        except Exception as error:  # botocore raises a family of errors here
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            kind = ModelFileMissing if code in ("NoSuchKey", "404") else ModelError
            raise kind(f"cannot read {self.location}/{relative}: {error}") from None
        return bytes(response["Body"].read())

    def write(self, relative: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{relative}", Body=data)

    def folders(self) -> list[str]:
        found = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/", Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                found.add(common["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(found)

    def local_path(self, relative: str) -> Path | None:
        return None

    def identity(self, relative: str) -> str:
        """Which stored object a file is now (its ETag): the local copy must be of that object.

        Bucket and key alone do not say: local stacks and tests reuse the same bucket names, and a
        cached `v1` from one would otherwise serve in another.
        """
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=f"{self.prefix}/{relative}")
        except Exception as error:  # botocore raises a family of errors here
            code = getattr(error, "response", {}).get("Error", {}).get("Code")
            kind = ModelFileMissing if code in ("NoSuchKey", "404") else ModelError
            raise kind(f"cannot read {self.location}/{relative}: {error}") from None
        return str(head.get("ETag", "")).strip('"') or "unknown"


class FolderRegistryStorage:
    def __init__(self, location: str):
        self.location = location.rstrip("/")
        parsed = urlparse(self.location)
        self.root = Path(parsed.path if parsed.scheme == "file" else self.location)

    def read(self, relative: str) -> bytes:
        path = self.root / relative
        if not path.exists():
            raise ModelFileMissing(f"cannot read {path}: no such file")
        return path.read_bytes()

    def write(self, relative: str, data: bytes) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def folders(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def local_path(self, relative: str) -> Path | None:
        return self.root / relative


def open_storage(location: str, s3_client: Any = None) -> RegistryStorage:
    """The storage a registry location names: an s3:// URI or a local folder."""
    if urlparse(location).scheme == "s3":
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        return S3RegistryStorage(location, s3_client)
    return FolderRegistryStorage(location)


class ModelRegistry:
    def __init__(self, location: str | None = None, s3_client: Any = None, cache_dir: str | None = None,
                 storage: RegistryStorage | None = None):
        if storage is None:
            if location is None:
                raise ValueError("a model registry needs a location or a storage")
            storage = open_storage(location, s3_client)
        self.storage = storage
        self.location = storage.location
        self.cache_dir = Path(cache_dir or os.path.join(tempfile.gettempdir(), "batchinfer-models"))

    @property
    def name(self) -> str:
        return self.location.rsplit("/", 1)[-1]

    # -- reading ---------------------------------------------------------------------------
    def _read(self, relative: str) -> bytes:
        return self.storage.read(relative)

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

    def _cached_path(self, relative: str) -> Path:
        # Keyed by the location without its scheme: s3://bucket/models/x -> <cache>/bucket/models/x/...
        return self.cache_dir / self.location.split("://", 1)[-1].lstrip("/") / relative

    def fetch_file(self, version: str, filename: str) -> Path:
        """A local copy of one file of a version (downloaded once); ModelFileMissing if it has none."""
        relative = f"{version}/{filename}"
        local = self.storage.local_path(relative)
        if local is not None:
            if not local.exists():
                raise ModelFileMissing(f"cannot read {local}: no such file")
            return local
        # A version's files sit side by side (the TF-Lite form beside model.keras), in a folder named after
        # the stored model.keras, so that a different model published under the same name is fetched anew.
        identity = getattr(self.storage, "identity", None)
        cached = self._cached_path(f"{version}@{self._identity(identity, version, filename)}/{filename}"
                                   if identity else relative)
        if not cached.exists():
            data = self._read(relative)
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".partial")
            partial.write_bytes(data)
            partial.replace(cached)
        return cached

    @staticmethod
    def _identity(identity: Any, version: str, filename: str) -> str:
        # A version published without a Keras model (from a SavedModel or a .tflite) is named by the file itself.
        try:
            return str(identity(f"{version}/{MODEL_FILE}"))
        except ModelFileMissing:
            return str(identity(f"{version}/{filename}"))

    def serving_file(self, metrics: dict[str, Any]) -> str | None:
        """The file a version serves from, as its metrics chose it (None for a version published
        before the int8 form existed)."""
        serving = metrics.get("serving")
        form = serving.get("form") if isinstance(serving, dict) else None
        return SERVING_FILES[str(form)] if form in SERVING_FILES else None

    def fetch(self, version: str, file: str | None = None) -> ModelVersion:
        """A version with one of its model files local: `file`, or by default only the one that serves."""
        labels = self.fetch_labels(version)
        try:
            metrics = self._read_json(f"{version}/{METRICS_FILE}")
        except ModelError:
            metrics = {}
        if not isinstance(metrics, dict):
            metrics = {}
        name = file or self.serving_file(metrics)
        if name is not None:
            local = self.fetch_file(version, name)
        else:  # published before int8: its fp32 TF-Lite form if it has one, else its Keras model
            try:
                local = self.fetch_file(version, COMPILED_FILE)
            except ModelFileMissing:
                local = self.fetch_file(version, MODEL_FILE)
        return ModelVersion(version=version, model_path=local, labels=labels, metrics=metrics)

    def versions(self) -> list[str]:
        # Folders named with "_" are the registry's own (its history), not versions.
        return [name for name in self.storage.folders() if not name.startswith("_")]

    def metrics(self, version: str) -> dict[str, Any]:
        try:
            value = self._read_json(f"{version}/{METRICS_FILE}")
        except ModelError:
            return {}
        return value if isinstance(value, dict) else {}

    # -- writing ---------------------------------------------------------------------------
    def _write(self, relative: str, data: bytes) -> None:
        self.storage.write(relative, data)

    def publish_file(self, version: str, filename: str, data: bytes) -> None:
        """Store one more file of a version (e.g. its compiled form)."""
        self._write(f"{version}/{filename}", data)

    def publish(self, version: str, model_file: Path | None, labels: list[str], metrics: dict[str, Any],
                forms: dict[str, bytes] | None = None) -> None:
        """Store a version (with its TF-Lite forms, by file name); it serves nothing until it is promoted.

        Without `model_file` (a version published from a SavedModel or a .tflite file) it has no
        model.keras: it serves from its TF-Lite forms, and retraining cannot fine-tune it."""
        self._write(f"{version}/{LABELS_FILE}", json.dumps(labels).encode())
        for name, data in (forms or {}).items():
            self._write(f"{version}/{name}", data)
        target = self.storage.local_path(f"{version}/{MODEL_FILE}")
        if model_file is None:
            pass
        elif target is None:
            self._write(f"{version}/{MODEL_FILE}", model_file.read_bytes())
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_file, target)
        # Last: the metrics name the form that serves, so the files they name are there before them.
        self._write(f"{version}/{METRICS_FILE}", json.dumps(metrics, indent=2).encode())

    def write_metrics(self, version: str, metrics: dict[str, Any]) -> None:
        self._write(f"{version}/{METRICS_FILE}", json.dumps(metrics, indent=2).encode())

    def promote(self, version: str) -> None:
        self._write(POINTER_FILE, json.dumps({"version": version, "promoted_at": utc_now()}).encode())


def require_serving_model(registry: ModelRegistry) -> str:
    """The version that serves; else a ModelError that says what to do.

    A score or replay run checks this before it lists anything: without a model every image would be
    marked failed and later runs would leave it out. Failing at once marks nothing, so the uploads are
    scored by the first run after a model is promoted, with no replay by hand.
    """
    try:
        return registry.current_version()
    except ModelError as error:
        raise ModelError(
            f"no model is serving, so nothing was listed or marked: {error}. Publish a model version to "
            f"{registry.location}/<version>/ and promote it ({POINTER_FILE}), then start the run again; "
            "the images waiting will be scored then"
        ) from None
