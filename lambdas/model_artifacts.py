"""A model artifact as people bring it: its format, its size, a tar archive's safety, and its labels.

Nothing here needs TensorFlow: the CLI checks an artifact with it before it uploads anything (so a
bad one is refused at once), and the publish step checks it again before it loads the model.
"""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import IO

from lambdas.model_registry import ModelError

# What `batchinfer models publish` takes, by the name the metrics record.
FORMATS = {
    ".keras": "keras",
    ".h5": "h5",
    ".hdf5": "h5",
    ".tflite": "tflite",
    ".tar.gz": "tar.gz",
    ".tgz": "tar.gz",
}
SAVED_MODEL = "savedmodel"
SAVED_MODEL_FILE = "saved_model.pb"
FORMAT_NAMES = ".keras, .h5, a SavedModel directory (saved_model.pb), a .tar.gz of one of those, or .tflite"
# An artifact (the archive as uploaded) and what an archive may unpack to. The publish step unpacks in
# Lambda's /tmp (2,048 MB) and holds the model and its two TF-Lite forms in 3,008 MB of memory.
MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
MAX_UNPACKED_BYTES = 1536 * 1024 * 1024
LABEL_FILES = ("labels.json", "labels.txt")


def artifact_format(name: str, is_dir: bool = False) -> str:
    """The format of an artifact by its name (a folder is a SavedModel); ModelError for any other."""
    if is_dir:
        return SAVED_MODEL
    lowered = name.lower()
    for suffix, kind in FORMATS.items():
        if lowered.endswith(suffix):
            return kind
    raise ModelError(f"{name}: unknown model format; publish takes {FORMAT_NAMES}")


def check_size(size: int, name: str) -> None:
    if size > MAX_ARTIFACT_BYTES:
        raise ModelError(f"{name} is {size / 2**20:,.0f} MiB, over the {MAX_ARTIFACT_BYTES // 2**20:,} MiB a "
                         "published artifact may be")
    if size == 0:
        raise ModelError(f"{name} is empty (0 bytes)")


def _unsafe(member: tarfile.TarInfo) -> str | None:
    """Why a member could write outside the folder it is unpacked into, or be something other than data."""
    path = PurePosixPath(member.name)
    if member.issym() or member.islnk():
        return f"is a link to {member.linkname!r}"
    if not (member.isfile() or member.isdir()):
        return "is not a file or a folder"
    if path.is_absolute() or ".." in path.parts:
        return "leaves the archive's folder"
    return None


def check_archive(fileobj: IO[bytes], name: str) -> list[tarfile.TarInfo]:
    """Every member of a .tar.gz, read to its end: a corrupt or truncated archive, a member whose path
    leaves the archive (absolute, `..`, a link) and an archive that unpacks past the cap are refused."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r:gz") as archive:
            members = []
            for member in archive:
                problem = _unsafe(member)
                if problem:
                    raise ModelError(f"{name}: refused, the archive's member {member.name!r} {problem}")
                members.append(member)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise ModelError(f"{name} is not a readable .tar.gz (corrupt or truncated): {error}") from None
    if not members:
        raise ModelError(f"{name} is an empty archive")
    unpacked = sum(m.size for m in members)
    if unpacked > MAX_UNPACKED_BYTES:
        raise ModelError(f"{name} unpacks to {unpacked / 2**20:,.0f} MiB, over the "
                         f"{MAX_UNPACKED_BYTES // 2**20:,} MiB an archive may hold")
    return members


def extract_archive(path: Path, folder: Path) -> None:
    """Unpack a checked archive into `folder` (tarfile's "data" filter refuses what check_archive refused)."""
    with path.open("rb") as handle:
        check_archive(handle, path.name)
    with tarfile.open(path, mode="r:gz") as archive:
        archive.extractall(folder, filter="data")


def _model_files(names: Iterable[str]) -> list[str]:
    return [n for n in names if not PurePosixPath(n).name.startswith(".")
            and (PurePosixPath(n).name == SAVED_MODEL_FILE
                 or any(n.lower().endswith(s) for s in FORMATS if FORMATS[s] != "tar.gz"))]


def _version_number(path: PurePosixPath) -> int:
    return int(path.name) if path.name.isdigit() else -1


def find_model(names: Iterable[str], label: str) -> tuple[str, str]:
    """(format, path) of the one model among an archive's or a folder's relative paths.

    A SavedModel is the folder of its saved_model.pb, as SageMaker and TF Serving lay it out
    (`1/saved_model.pb`, `model/1/...`, `<name>/1/...`): of several numbered versions side by side,
    the highest serves, as TF Serving picks it."""
    found = _model_files(names)
    saved = [PurePosixPath(n).parent for n in found if PurePosixPath(n).name == SAVED_MODEL_FILE]
    files = [n for n in found if PurePosixPath(n).name != SAVED_MODEL_FILE]
    if saved:
        parents = {p.parent for p in saved}
        if len(saved) > 1 and (len(parents) > 1 or any(_version_number(p) < 0 for p in saved)):
            raise ModelError(f"{label} holds {len(saved)} SavedModels ({', '.join(sorted(map(str, saved)))}): "
                             "publish one at a time")
        chosen = max(saved, key=_version_number)
        return SAVED_MODEL, str(chosen)
    if len(files) == 1:
        return artifact_format(files[0]), files[0]
    if not files:
        raise ModelError(f"{label} holds no model: expected a SavedModel (saved_model.pb), .keras, .h5 or .tflite")
    raise ModelError(f"{label} holds {len(files)} model files ({', '.join(sorted(files))}): publish one at a time")


def parse_labels(data: bytes, name: str) -> list[str]:
    """Class names in the model's output order: a JSON list, or one name a line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ModelError(f"{name} is not UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            labels = json.loads(stripped)
        except ValueError as error:
            raise ModelError(f"{name} is not valid JSON: {error}") from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ModelError(f"{name} must be a JSON list of class names")
        labels = [x.strip() for x in labels]
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or any(not x for x in labels):
        raise ModelError(f"{name} names no classes" if not labels else f"{name} has an empty class name")
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ModelError(f"{name} names {', '.join(map(repr, repeated))} more than once")
    if any("/" in x for x in labels):
        raise ModelError(f"{name}: a class name cannot hold '/' (it names a folder of labelled images)")
    return labels


def labels_among(names: Iterable[str], model_path: str) -> str | None:
    """The labels file of an archive or folder: beside the model, or in a folder above it."""
    candidates = {PurePosixPath(n) for n in names if PurePosixPath(n).name in LABEL_FILES}
    folder = PurePosixPath(model_path)
    for parent in (folder, *folder.parents):
        for label_file in LABEL_FILES:
            if parent / label_file in candidates:
                return str(parent / label_file)
    return None


def tar_names(data: bytes) -> list[str]:
    """The member names of an archive already checked."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return archive.getnames()
