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
