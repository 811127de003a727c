"""Model registry: versions under <root>/<version>/ and a pointer to the current one.

The root is an S3 URI (s3://bucket/models/<name>) or a local folder. A version holds
`model.keras`, `labels.json` (class names in output order) and `metrics.json`, and, when it was
published with inference_image.publishing.publish_model, its TF-Lite forms: `model.tflite` (fp32)
and `model.int8.tflite` (full-integer int8). metrics.json says under "serving" which form serves
and why; a cold start fetches that one file and not the others.

A version published for manual approval holds `approval.json`; only an approved one, or one without
that file (published with a promotion policy), may serve. Every change of the registry (published,
pending, approved, rejected, promoted, rolled back) is one object under `_history/`, with its time and
who made it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from contract.resource_spec import (
    APPROVAL_FILE,
    COMPILED_FILE,
    HISTORY_FOLDER,
    LABELS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    POINTER_FILE,
    SERVING_FILES,
)
from lambdas.records import utc_now

__all__ = ["LABELS_FILE", "METRICS_FILE", "MODEL_FILE", "POINTER_FILE", "APPROVAL_FILE", "EVENTS", "ModelError",
           "ModelFileMissing", "ModelRegistry", "RETRAINING", "ModelVersion", "RegistryStorage", "S3RegistryStorage",
           "FolderRegistryStorage", "require_approved", "require_serving_model"]

# The changes the registry's history records.
EVENTS = ("published", "pending", "approved", "rejected", "promoted", "rolled back")
APPROVAL_STATUSES = ("pending", "approved", "rejected")
# Who the history names for the retraining branch's changes (its candidate published, then promoted).
RETRAINING = "retraining"


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

    def file_names(self, folder: str) -> list[str]:
        """The names of the files right in one folder under the root, sorted; [] if there is none."""
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

    def file_names(self, folder: str) -> list[str]:
        names: list[str] = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{self.prefix}/{folder}/", Delimiter="/"):
            names.extend(item["Key"].rsplit("/", 1)[-1] for item in page.get("Contents", []))
        return sorted(names)

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

    def file_names(self, folder: str) -> list[str]:
        path = self.root / folder
        return sorted(p.name for p in path.iterdir() if p.is_file()) if path.is_dir() else []

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
        # Folders named "_..." are the registry's own (its history), not versions.
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

    # -- approval, promotion and their history -------------------------------------------------------
    def record(self, event: str, version: str, by: str, reason: str | None = None,
               detail: dict[str, Any] | None = None) -> None:
        """Add one change to the history: one new object, named so that names sort by time."""
        if event not in EVENTS:
            raise ValueError(f"unknown registry event {event!r}: one of {', '.join(EVENTS)}")
        now = datetime.now(timezone.utc)
        entry: dict[str, Any] = {"event": event, "version": version, "at": now.isoformat(timespec="microseconds"),
                                 "by": by}
        if reason is not None:
            entry["reason"] = reason
        if detail:
            entry["detail"] = detail
        name = f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{event.replace(' ', '-')}-{_safe(version)}.json"
        self._write(f"{HISTORY_FOLDER}/{name}", json.dumps(entry).encode())

    def history(self) -> list[dict[str, Any]]:
        """Every recorded change, oldest first; an entry that cannot be read is left out."""
        entries = []
        for name in self.storage.file_names(HISTORY_FOLDER):
            try:
                entry = self._read_json(f"{HISTORY_FOLDER}/{name}")
            except ModelError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("event"), str):
                entries.append((str(entry.get("at", "")), name, entry))
        return [entry for _, _, entry in sorted(entries, key=lambda e: (e[0], e[1]))]

    def approval(self, version: str) -> dict[str, Any] | None:
        """The version's approval ({"status", "by", "at", "reason"?}), or None when it needs none."""
        try:
            value = self._read_json(f"{version}/{APPROVAL_FILE}")
        except ModelFileMissing:
            return None
        if not isinstance(value, dict) or value.get("status") not in APPROVAL_STATUSES:
            # Unreadable is not approved: a version must not serve on a file nobody can read.
            return {"status": "pending", "by": None, "at": None,
                    "reason": f"{APPROVAL_FILE} is not an approval status"}
        return value

    def can_serve(self, version: str) -> bool:
        """Whether a version may serve: approved, or one that needs no approval."""
        approval = self.approval(version)
        return approval is None or approval.get("status") == "approved"

    def _require_version(self, version: str) -> None:
        try:
            self._read(f"{version}/{LABELS_FILE}")
        except ModelFileMissing:
            known = ", ".join(self.versions()) or "none"
            raise ModelError(f"{self.name} has no version {version!r} (versions: {known})") from None

    def _set_approval(self, version: str, status: str, by: str, reason: str | None) -> None:
        value: dict[str, Any] = {"status": status, "by": by, "at": utc_now()}
        if reason is not None:
            value["reason"] = reason
        self._write(f"{version}/{APPROVAL_FILE}", json.dumps(value).encode())
        self.record(status, version, by, reason=reason)

    def request_approval(self, version: str, by: str) -> None:
        """Mark a published version pending: it cannot serve until it is approved."""
        self._require_version(version)
        self._set_approval(version, "pending", by, None)

    def approve(self, version: str, by: str) -> None:
        self._require_version(version)
        approval = self.approval(version)
        status = approval.get("status") if approval else None
        if status == "rejected":
            raise ModelError(f"{self.name}/{version} was rejected ({approval.get('reason') if approval else ''}): "
                             "a rejected version is not approved again; publish it anew")
        if status == "approved":
            raise ModelError(f"{self.name}/{version} is already approved (by {approval.get('by') if approval else ''})")
        if status is None:
            raise ModelError(f"{self.name}/{version} needs no approval: it was published with a promotion policy")
        self._set_approval(version, "approved", by, None)

    def reject(self, version: str, by: str, reason: str) -> None:
        """Refuse a version for good: it can no longer be promoted. The serving version is not rejected
        here: promote another one first."""
        self._require_version(version)
        if not reason.strip():
            raise ModelError("a rejection needs a reason")
        approval = self.approval(version)
        if approval is not None and approval.get("status") == "rejected":
            raise ModelError(f"{self.name}/{version} is already rejected ({approval.get('reason')})")
        if self._current_or_none() == version:
            raise ModelError(f"{self.name}/{version} is serving: promote another version first, then reject it")
        self._set_approval(version, "rejected", by, reason.strip())

    def _current_or_none(self) -> str | None:
        try:
            return self.current_version()
        except ModelError:
            return None

    def promote(self, version: str, by: str = "system", reason: str | None = None) -> None:
        """Make a version the one that serves and record it: "rolled back" when the version was published
        before the one serving now, else "promoted". A pending or rejected version is refused."""
        self._require_version(version)
        approval = self.approval(version)
        if approval is not None and approval.get("status") != "approved":
            status = approval.get("status")
            hint = (f"approve it first with `batchinfer models approve {version}`" if status == "pending"
                    else f"it was rejected: {approval.get('reason')}")
            raise ModelError(f"{self.name}/{version} cannot serve: its approval is {status}; {hint}")
        current = self._current_or_none()
        event = "rolled back" if current is not None and self.published_before(version, current) else "promoted"
        self._write(POINTER_FILE, json.dumps({"version": version, "promoted_at": utc_now(), "by": by}).encode())
        self.record(event, version, by, reason=reason, detail={"previous": current} if current else None)

    def published_before(self, version: str, other: str, history: list[dict[str, Any]] | None = None) -> bool:
        """Whether `version` came before `other`: by their "published" records (in `history`, read if not
        given), else by their names in natural order (v2 before v10; timestamps sort as written)."""
        entries = self.history() if history is None else history
        published = {e["version"]: e["at"] for e in entries if e.get("event") == "published"}
        if version in published and other in published:
            return bool(published[version] < published[other])
        return _natural(version) < _natural(other)


def _natural(name: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def _safe(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", version)


def require_serving_model(registry: ModelRegistry) -> str:
    """The version that serves; else a ModelError that says what to do.

    A score or replay run checks this before it lists anything: without a model every image would be
    marked failed and later runs would leave it out. Failing at once marks nothing, so the uploads are
    scored by the first run after a model is promoted, with no replay by hand.
    """
    try:
        version = registry.current_version()
    except ModelError as error:
        raise ModelError(
            f"no model is serving, so nothing was listed or marked: {error}. Publish a model version to "
            f"{registry.location}/<version>/ and promote it ({POINTER_FILE}), then start the run again; "
            "the images waiting will be scored then"
        ) from None
    require_approved(registry, version)
    return version


def require_approved(registry: ModelRegistry, version: str) -> None:
    """Refuse to serve a version whose approval is pending or rejected, even if the pointer names it
    (set by hand): one read of its approval.json, when a run starts or a classifier loads it."""
    approval = registry.approval(version)
    if approval is not None and approval.get("status") != "approved":
        raise ModelError(
            f"{registry.name}/{version} is named in {POINTER_FILE} but its approval is {approval.get('status')}, "
            f"so it does not serve and nothing was listed or marked: approve it with `batchinfer models approve "
            f"{version}` or promote an approved version with `batchinfer models promote VERSION`"
        )
