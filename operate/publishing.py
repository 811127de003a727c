"""`batchinfer models publish`: the artifact checked here without TensorFlow (format, size, a tar archive's
safety, labels), staged in the bucket, and a publish run started whose PublishModel step makes the version."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from contract.resource_spec import LABELS_PREFIX, STAGING_PREFIX
from lambdas.model_artifacts import (
    LABEL_FILES,
    MAX_ARTIFACT_BYTES,
    SAVED_MODEL,
    artifact_format,
    check_archive,
    check_size,
    find_model,
    labels_among,
    parse_labels,
)
from lambdas.model_registry import ModelError
from lambdas.steps import PUBLISH_POLICIES
from operate.identity import caller_identity
from operate.operations import new_run_name
from operate.targets import Target

PREPROCESSING = ("none", "0-1", "-1-1", "caffe", "torch")  # inference_image.model_formats.PREPROCESSING


@dataclass
class Checked:
    """An artifact ready to stage: one local file (a folder is packed into a .tar.gz), and its labels if found
    outside it (else the step reads them inside)."""

    file: Path
    kind: str
    labels: list[str] | None


def _labels_beside(folder: Path) -> list[str] | None:
    for name in LABEL_FILES:
        if (folder / name).is_file():
            return parse_labels((folder / name).read_bytes(), str(folder / name))
    return None


def _pack(folder: Path, into: Path) -> Path:
    packed = into / f"{folder.name or 'model'}.tar.gz"
    with tarfile.open(packed, "w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_symlink():
                raise ModelError(f"{folder}: refused, {path.relative_to(folder)} is a link")
            archive.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return packed


def check_local(path: Path, labels_file: Path | None, scratch: Path) -> Checked:
    """The checks that need no TensorFlow, at once: a bad artifact is refused before anything is uploaded."""
    if not path.exists():
        raise ModelError(f"{path}: no such file or folder")
    kind = artifact_format(path.name, path.is_dir())
    labels = parse_labels(labels_file.read_bytes(), str(labels_file)) if labels_file else None
    if kind == SAVED_MODEL:
        files = [p for p in path.rglob("*") if p.is_file()]
        names = [p.relative_to(path).as_posix() for p in files]
        check_size(sum(p.stat().st_size for p in files), str(path))
        found, inner = find_model(names, str(path))
        if found != SAVED_MODEL:
            raise ModelError(f"{path} is a folder without saved_model.pb: give the model file itself")
        inside = labels_among(names, inner)
        if labels is None and inside:
            labels = parse_labels((path / inside).read_bytes(), str(path / inside))
        labels = labels if labels is not None else _labels_beside(path.parent)
        if labels is None:
            raise ModelError(f"{path}: no labels: give --labels FILE, or put labels.json or labels.txt beside or "
                             "inside the model")
        return Checked(_pack(path, scratch), "tar.gz", labels)
    check_size(path.stat().st_size, str(path))
    labels = labels if labels is not None else _labels_beside(path.parent)
    if kind == "tar.gz":
        with path.open("rb") as handle:
            members = check_archive(handle, path.name)
        names = [m.name for m in members if m.isfile()]
        _, inner = find_model(names, path.name)
        inside = labels_among(names, inner)
        if labels is None and not inside:
            raise ModelError(f"{path}: no labels: give --labels FILE, or put labels.json or labels.txt beside or "
                             "inside the archive")
    elif labels is None:
        raise ModelError(f"{path}: no labels: give --labels FILE, or put labels.json or labels.txt beside it")
    return Checked(path, kind, labels)


def _download(target: Target, uri: str, scratch: Path) -> Path:
    """A copy of an s3:// artifact (an object, or a SavedModel folder when the URI ends with '/'), with the
    labels file beside it when there is one."""
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    s3 = target.client("s3")
    if key.endswith("/") or not key:
        folder = scratch / (PurePosixPath(key).name or "model")
        total = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for item in page.get("Contents", []):
                total += int(item["Size"])
                check_size(max(total, 1), uri)
                local = folder / item["Key"][len(key):]
                local.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, item["Key"], str(local))
        if total == 0:
            raise ModelError(f"{uri}: nothing there")
        _fetch_labels_beside(s3, bucket, str(PurePosixPath(key).parent), scratch)
        return folder
    artifact_format(key)  # an unknown format is refused before anything is downloaded
    try:
        size = int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except Exception as error:  # botocore raises a family of errors here
        raise ModelError(f"cannot read {uri}: {error}") from None
    if size > MAX_ARTIFACT_BYTES:
        check_size(size, uri)
    local = scratch / PurePosixPath(key).name
    s3.download_file(bucket, key, str(local))
    _fetch_labels_beside(s3, bucket, str(PurePosixPath(key).parent), scratch)
    return local


def _fetch_labels_beside(s3: Any, bucket: str, folder: str, scratch: Path) -> None:
    for name in LABEL_FILES:
        key = f"{folder}/{name}" if folder not in ("", ".") else name
        try:
            (scratch / name).write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            return
        except Exception:  # no such labels file: the next name, or the archive's own
            continue


def _labelled_prefix(target: Target, given: str | None, what: str) -> str | None:
    """An s3:// prefix of labelled images in the stack's bucket under labels/, or a local folder uploaded there."""
    if given is None:
        return None
    parsed = urlparse(given)
    if parsed.scheme == "s3":
        if parsed.netloc != target.bucket or not parsed.path.lstrip("/").startswith(LABELS_PREFIX):
            raise ModelError(f"{what} {given}: labelled images must be under s3://{target.bucket}/{LABELS_PREFIX} "
                             "(where the publish step may read), or a local folder")
        return given if given.endswith("/") else given + "/"
    folder = Path(given)
    if not folder.is_dir():
        raise ModelError(f"{what} {given}: no such folder (a folder of <class>/<image> files, or an s3:// prefix)")
    s3 = target.client("s3")
    uploaded = 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and len(relative.parts) == 2 and not relative.name.startswith("."):
            s3.upload_file(str(path), target.bucket, f"{LABELS_PREFIX}{relative.as_posix()}")
            uploaded += 1
    if not uploaded:
        raise ModelError(f"{what} {given}: no images in class folders (<folder>/<class>/<image>)")
    return f"s3://{target.bucket}/{LABELS_PREFIX}"


@contextmanager
def _scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="batchinfer-publish-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def default_version() -> str:
    return "v" + time.strftime("%Y%m%d%H%M%S", time.gmtime())


def start_publish(target: Target, artifact: str, version: str | None = None, labels_file: Path | None = None,
                  held_out: str | None = None, calibration: str | None = None, preprocess: str = "none",
                  policy: str = "none", force: bool = False) -> tuple[str, str]:
    """(run id, version): the artifact checked and staged, and the publish run started."""
    from lambdas.model_registry import ModelRegistry

    if preprocess not in PREPROCESSING:
        raise ModelError(f"unknown --preprocess {preprocess!r}: choose one of {', '.join(PREPROCESSING)}")
    if policy not in PUBLISH_POLICIES:
        raise ModelError(f"unknown policy {policy!r}: choose one of {', '.join(PUBLISH_POLICIES)}")
    version = version or default_version()
    if "/" in version or version.startswith(("_", ".")) or len(version) > 128:
        raise ModelError(f"--version {version!r}: a version is a folder name, without '/' and not starting with "
                         "'_' or '.'")
    with _scratch() as scratch:
        if urlparse(artifact).scheme == "s3":
            local = _download(target, artifact, scratch)
            labels_file = labels_file or next((scratch / n for n in LABEL_FILES if (scratch / n).is_file()), None)
        elif urlparse(artifact).scheme:
            raise ModelError(f"{artifact}: an artifact is a local path or an s3:// URI")
        else:
            local = Path(artifact).expanduser()
        checked = check_local(local, labels_file, scratch)
        s3 = target.client("s3")
        registries = [f"s3://{target.bucket}/models/{name}" for name in _models(target)]
        for location in registries:
            if version in ModelRegistry(location, s3_client=s3).versions():
                raise ModelError(f"version {version} already exists in {location}: choose another --version")
        held = _labelled_prefix(target, held_out, "--held-out") or f"s3://{target.bucket}/{LABELS_PREFIX}"
        calibrate = _labelled_prefix(target, calibration, "--calibration")
        key = f"{STAGING_PREFIX}{version}/{checked.file.name}"
        s3.upload_file(str(checked.file), target.bucket, key)
    run_input: dict[str, Any] = {"mode": "publish", "artifact": f"s3://{target.bucket}/{key}", "version": version,
                                 "labels": checked.labels, "held_out": held, "calibration": calibrate,
                                 "preprocess": preprocess, "policy": policy, "force": force,
                                 "by": caller_identity(target)}
    response = target.client("stepfunctions").start_execution(
        stateMachineArn=target.state_machine_arn, name=new_run_name("publish"), input=json.dumps(run_input))
    return str(response["executionArn"]).rsplit(":", 1)[-1], version


def _models(target: Target) -> list[str]:
    from lambdas.stores import ImageSource

    return [n for n in ImageSource(target.client("s3")).list_folders(target.bucket, "models/") if not n.startswith("_")]
