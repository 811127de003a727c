"""The model registry on each storage — S3 on moto, a local folder, and the in-memory fake — keeps
one contract: versions, labels, metrics, a pointer to the current version, files fetched locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdas.model_registry import ModelError, ModelFileMissing, ModelRegistry
from tests.contract.conftest import BUCKET

STORAGES = [pytest.param("fake", marks=pytest.mark.unit), pytest.param("folder", marks=pytest.mark.unit),
            pytest.param("moto", marks=pytest.mark.integration)]


@pytest.fixture(params=STORAGES)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    cache = str(tmp_path / "cache")
    if request.param == "fake":
        from lambdas.fakes import InMemoryRegistryStorage

        return ModelRegistry(storage=InMemoryRegistryStorage("memory://models/digits"), cache_dir=cache)
    if request.param == "folder":
        return ModelRegistry(str(tmp_path / "models" / "digits"), cache_dir=cache)
    aws = request.getfixturevalue("moto_aws")
    return ModelRegistry(f"s3://{BUCKET}/models/digits", s3_client=aws.s3, cache_dir=cache)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "source" / "model.keras"
    path.parent.mkdir()
    path.write_bytes(b"weights")
    return path


def test_a_published_version_serves_nothing_until_promoted(registry: ModelRegistry, model_file: Path) -> None:
    registry.publish("v1", model_file, ["cat", "dog"], {"accuracy": 0.9})
    assert registry.name == "digits" and registry.versions() == ["v1"]
    with pytest.raises(ModelError):
        registry.current_version()
    registry.promote("v1")
    assert registry.current_version() == "v1"


def test_a_fetched_version_has_its_file_labels_and_metrics(registry: ModelRegistry, model_file: Path) -> None:
    registry.publish("v1", model_file, ["cat", "dog"], {"accuracy": 0.9})
    fetched = registry.fetch("v1")
    assert fetched.model_path.read_bytes() == b"weights"
    assert fetched.labels == ["cat", "dog"] and fetched.metrics == {"accuracy": 0.9}


def test_extra_files_and_metrics_are_stored_beside_a_version(registry: ModelRegistry, model_file: Path) -> None:
    registry.publish("v1", model_file, ["cat"], {})
    registry.publish_file("v1", "model.tflite", b"compiled")
    registry.write_metrics("v1", {"accuracy": 0.5})
    assert registry.fetch_file("v1", "model.tflite").read_bytes() == b"compiled"
    assert registry.metrics("v1") == {"accuracy": 0.5}
    with pytest.raises(ModelFileMissing):
        registry.fetch_file("v1", "other.bin")


def test_promotion_moves_the_pointer(registry: ModelRegistry, model_file: Path) -> None:
    for version in ("v1", "v2"):
        registry.publish(version, model_file, ["cat"], {})
    registry.promote("v1")
    registry.promote("v2")
    assert registry.current_version() == "v2" and registry.versions() == ["v1", "v2"]


def test_bad_labels_and_missing_versions_are_clear_errors(registry: ModelRegistry, model_file: Path) -> None:
    registry.publish("v1", model_file, [], {})
    with pytest.raises(ModelError, match="non-empty list of class names"):
        registry.fetch_labels("v1")
    with pytest.raises(ModelError, match="cannot read"):
        registry.fetch("v9")
    assert registry.metrics("v9") == {}


def test_a_pointer_that_is_not_json_is_a_clear_error(registry: ModelRegistry) -> None:
    registry.storage.write("current.json", b"{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        registry.current_version()


def test_history_folder_is_not_a_version_and_lists_changes_oldest_first(registry: ModelRegistry,
                                                                        model_file: Path) -> None:
    registry.publish("v1", model_file, ["cat"], {})
    registry.record("published", "v1", by="alice", detail={"source": "model.keras"})
    registry.promote("v1", by="alice")
    assert registry.versions() == ["v1"]
    assert [(e["event"], e["version"], e["by"]) for e in registry.history()] == [
        ("published", "v1", "alice"), ("promoted", "v1", "alice")]
    first = registry.history()[0]
    assert first["detail"] == {"source": "model.keras"} and first["at"].endswith("+00:00")
    with pytest.raises(ValueError, match="unknown registry event"):
        registry.record("deleted", "v1", by="alice")


def test_a_pending_version_serves_only_once_approved(registry: ModelRegistry, model_file: Path) -> None:
    registry.publish("v1", model_file, ["cat"], {})
    assert registry.approval("v1") is None and registry.can_serve("v1")
    registry.request_approval("v1", by="ci")
    assert (registry.approval("v1") or {})["status"] == "pending" and not registry.can_serve("v1")
    with pytest.raises(ModelError, match="approval is pending; approve it first"):
        registry.promote("v1")
    registry.approve("v1", by="bob")
    assert (registry.approval("v1") or {})["by"] == "bob" and registry.can_serve("v1")
    with pytest.raises(ModelError, match="already approved"):
        registry.approve("v1", by="bob")
    registry.promote("v1", by="bob")
    assert registry.current_version() == "v1"
    assert [e["event"] for e in registry.history()] == ["pending", "approved", "promoted"]


def test_a_rejected_version_never_serves(registry: ModelRegistry, model_file: Path) -> None:
    for version in ("v1", "v2"):
        registry.publish(version, model_file, ["cat"], {})
    registry.promote("v1")
    registry.request_approval("v2", by="ci")
    with pytest.raises(ModelError, match="needs a reason"):
        registry.reject("v2", by="bob", reason=" ")
    registry.reject("v2", by="bob", reason="confuses cats")
    assert (registry.approval("v2") or {})["reason"] == "confuses cats" and not registry.can_serve("v2")
    with pytest.raises(ModelError, match="was rejected"):
        registry.approve("v2", by="bob")
    with pytest.raises(ModelError, match="approval is rejected; it was rejected: confuses cats"):
        registry.promote("v2")
    with pytest.raises(ModelError, match="is serving: promote another version first"):
        registry.reject("v1", by="bob", reason="old")
    with pytest.raises(ModelError, match="has no version 'v9'"):
        registry.approve("v9", by="bob")
    assert registry.history()[-1] == {**registry.history()[-1], "event": "rejected", "reason": "confuses cats"}


def test_promoting_an_earlier_version_is_recorded_as_a_rollback(registry: ModelRegistry, model_file: Path) -> None:
    for version in ("v2", "v10"):  # published in this order; names alone would sort v10 first
        registry.publish(version, model_file, ["cat"], {})
        registry.record("published", version, by="ci")
    registry.promote("v2")
    registry.promote("v10", by="ci")
    registry.promote("v2", by="bob", reason="v10 misreads dogs")
    events = [(e["event"], e["version"]) for e in registry.history() if e["event"] != "published"]
    assert events == [("promoted", "v2"), ("promoted", "v10"), ("rolled back", "v2")]
    last = registry.history()[-1]
    assert last["reason"] == "v10 misreads dogs" and last["detail"] == {"previous": "v10"}
    assert registry.current_version() == "v2"


def test_a_pointer_set_by_hand_to_a_pending_version_does_not_serve(registry: ModelRegistry,
                                                                   model_file: Path) -> None:
    from lambdas.model_registry import require_serving_model

    registry.publish("v1", model_file, ["cat"], {})
    registry.request_approval("v1", by="ci")
    registry.storage.write("current.json", b'{"version": "v1"}')
    with pytest.raises(ModelError, match="approval is pending, so it does not serve and nothing was listed"):
        require_serving_model(registry)
    registry.approve("v1", by="bob")
    assert require_serving_model(registry) == "v1"
