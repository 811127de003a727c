"""moto's request routing with the engine's fix 16: a request finds its handler without rebuilding the
service's URL map or reloading moto's S3 URL module, and a change of MOTO_S3_CUSTOM_ENDPOINTS is
still honoured."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def aws(patched_moto: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOTO_S3_CUSTOM_ENDPOINTS", raising=False)


def test_requests_reuse_the_url_map_and_the_s3_module(aws: None) -> None:
    import boto3
    import moto.s3.urls
    from moto.backends import get_backend
    from moto.core import DEFAULT_ACCOUNT_ID

    s3, dynamodb = boto3.client("s3", region_name="us-east-1"), boto3.client("dynamodb", region_name="us-east-1")
    s3.create_bucket(Bucket="routing")
    s3.put_object(Bucket="routing", Key="photo.jpg", Body=b"x" * 1000)
    dynamodb.list_tables()
    # moto reloaded moto.s3.urls (a new module body, so new objects in it) twice for every S3
    # request, and built each service's URL map anew; with the fix both are kept.
    paths = moto.s3.urls.url_paths
    regions = [get_backend(service)[DEFAULT_ACCOUNT_ID] for service in ("s3", "dynamodb")]
    backends = [region["us-east-1"] if "us-east-1" in region else region["aws"] for region in regions]
    maps = [backend.urls for backend in backends]
    for _ in range(20):
        assert s3.get_object(Bucket="routing", Key="photo.jpg")["Body"].read() == b"x" * 1000
        s3.head_object(Bucket="routing", Key="photo.jpg")
        dynamodb.list_tables()
    assert moto.s3.urls.url_paths is paths
    assert all(backend.urls is built for backend, built in zip(backends, maps, strict=True))


def test_a_custom_s3_endpoint_set_later_is_still_routed(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="routing")  # the module is loaded
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", "http://storage.example.internal")
    custom = boto3.client("s3", region_name="us-east-1", endpoint_url="http://storage.example.internal")
    custom.put_object(Bucket="routing", Key="a.txt", Body=b"kept")
    assert custom.get_object(Bucket="routing", Key="a.txt")["Body"].read() == b"kept"
    assert [o["Key"] for o in boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket="routing")["Contents"]] == ["a.txt"]
