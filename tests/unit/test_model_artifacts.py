"""A model artifact checked without TensorFlow: its format, where the model sits in an archive (SageMaker's and
TF Serving's layouts), its labels, and the archive's safety; the publish step's typed request."""

from __future__ import annotations

import io
import tarfile

import pytest

from lambdas.model_artifacts import check_archive, find_model, labels_among, parse_labels
from lambdas.model_registry import ModelError
from lambdas.records import BadRecord
from lambdas.steps import PublishModelRequest

pytestmark = pytest.mark.unit

SAVED = ["saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (SAVED, ("savedmodel", ".")),
        ([f"1/{n}" for n in SAVED], ("savedmodel", "1")),
        ([f"model/1/{n}" for n in SAVED], ("savedmodel", "model/1")),
        ([f"moths/1/{n}" for n in SAVED] + [f"moths/2/{n}" for n in SAVED], ("savedmodel", "moths/2")),
        (["export/model.keras", "export/labels.json"], ("keras", "export/model.keras")),
        (["model.int8.tflite", "labels.txt"], ("tflite", "model.int8.tflite")),
    ],
)
def test_the_model_inside_an_archive_is_found_as_tf_serving_lays_it_out(
    names: list[str], expected: tuple[str, str]
) -> None:
    assert find_model(names, "model.tar.gz") == expected


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["README.md"], "holds no model"),
        (["a/model.keras", "b/model.h5"], "holds 2 model files"),
        ([f"a/{n}" for n in SAVED] + [f"b/{n}" for n in SAVED], "holds 2 SavedModels"),
    ],
)
def test_an_archive_with_no_model_or_several_is_refused(names: list[str], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        find_model(names, "model.tar.gz")


def test_labels_are_found_beside_the_model_or_above_it() -> None:
    names = [f"model/1/{n}" for n in SAVED] + ["model/labels.txt", "labels.json"]
    assert labels_among(names, "model/1") == "model/labels.txt"
    assert labels_among([f"1/{n}" for n in SAVED], "1") is None


@pytest.mark.parametrize(
    ("text", "labels"),
    [(b'["AAW", "ECLW", "FAW"]', ["AAW", "ECLW", "FAW"]),
     (b"\xef\xbb\xbfAAW\r\nECLW\n\nFAW\n", ["AAW", "ECLW", "FAW"])],
)
def test_labels_are_a_json_list_or_one_name_a_line(text: bytes, labels: list[str]) -> None:
    assert parse_labels(text, "labels") == labels


@pytest.mark.parametrize(
    ("text", "message"),
    [(b"", "names no classes"), (b"a\nb\na\n", "'a' more than once"), (b'["a", 3]', "JSON list of class names"),
     (b'["a",', "not valid JSON"), (b"cats/big\n", "cannot hold '/'")],
)
def test_bad_labels_are_refused_with_what_is_wrong(text: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        parse_labels(text, "labels.txt")


def _archive(member: tarfile.TarInfo, data: bytes = b"") -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        member.size = len(data) if member.isfile() else 0
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize(
    ("name", "kind", "link", "message"),
    [("/etc/model.keras", tarfile.REGTYPE, "", "leaves the archive's folder"),
     ("a/../../model.keras", tarfile.REGTYPE, "", "leaves the archive's folder"),
     ("model.keras", tarfile.LNKTYPE, "../../secret", "is a link"),
     ("dev", tarfile.CHRTYPE, "", "is not a file or a folder")],
)
def test_an_archive_member_that_could_leave_the_folder_is_refused(name: str, kind: bytes, link: str,
                                                                  message: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = link
    with pytest.raises(ModelError, match=message):
        check_archive(_archive(member, b"x"), "model.tar.gz")


def test_the_publish_request_names_what_it_lacks() -> None:
    with pytest.raises(BadRecord, match="'artifact', 'version' and 'held_out'"):
        PublishModelRequest.from_event({"run_id": "r", "input": {"mode": "publish"}})
    with pytest.raises(BadRecord, match="'policy' must be one of"):
        PublishModelRequest.from_event({"run_id": "r", "input": {"artifact": "s3://b/k", "version": "v1",
                                                                 "held_out": "s3://b/labels/", "policy": "maybe"}})
    request = PublishModelRequest.from_event({"run_id": "r", "input": {
        "artifact": "s3://b/models/_staging/v1/m.keras", "version": "v1", "held_out": "s3://b/labels/",
        "labels": ["a", "b"], "by": "local"}})
    assert (request.policy, request.preprocess, request.labels, request.force) == ("none", "none", ("a", "b"), False)
