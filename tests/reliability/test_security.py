"""Security: nothing public, TLS only, encrypted at rest; links are presigned and expire; each role
may make exactly the calls its function makes; no secrets in the repository; logs carry no image
bytes and failure reasons stay short and printable. (The object size limit is held end to end in
test_bad_inputs.py: an object above BATCHINFER_MAX_IMAGE_BYTES is refused before it is read.)"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.handlers
import pytest
import requests

from contract.resource_spec import FUNCTIONS, TABLES
from engine import lambda_bridge
from lambdas.stores import FAILED, FailureStore, scan_all
from tests.conftest import cli, cli_json, output_of, upload
from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.reliability

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- the synthesized template: nothing public, TLS only, encrypted at rest ---------------------------
def _policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("PolicyDocument", "AssumeRolePolicyDocument"):
            if isinstance(props.get(key), dict):
                yield logical_id, props[key]
        for policy in props.get("Policies", []) or []:
            yield logical_id, policy["PolicyDocument"]


def test_nothing_is_public(synthesized: Synthesized) -> None:
    template = synthesized.template
    for bucket_id, bucket in synthesized.resources("AWS::S3::Bucket").items():
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}, bucket_id
        assert "AccessControl" not in bucket["Properties"], bucket_id
    for logical_id, document in _policy_documents(template):
        for statement in document["Statement"]:
            principal = statement.get("Principal")
            if statement["Effect"] == "Allow" and principal is not None:
                assert principal not in ("*", {"AWS": "*"}), f"{logical_id} allows anyone"
    for kind in ("AWS::Lambda::Url", "AWS::ApiGateway::RestApi", "AWS::ApiGatewayV2::Api"):
        assert not synthesized.resources(kind), f"a public endpoint: {kind}"
    for permission in synthesized.resources("AWS::Lambda::Permission").values():
        assert permission["Properties"]["Principal"] != "*"


def _denies_plain_transport(document: dict[str, Any]) -> bool:
    return any(s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
               for s in document["Statement"])


def test_queues_and_topics_refuse_plain_http_as_the_buckets_do(synthesized: Synthesized) -> None:
    # The buckets are held to it by tests/infra/test_stack_resources.py.
    for policy_type, target_key, target_type in [
        ("AWS::SQS::QueuePolicy", "Queues", "AWS::SQS::Queue"),
        ("AWS::SNS::TopicPolicy", "Topics", "AWS::SNS::Topic"),
    ]:
        covered = set()
        for policy in synthesized.resources(policy_type).values():
            if _denies_plain_transport(policy["Properties"]["PolicyDocument"]):
                covered |= {t["Ref"] for t in policy["Properties"][target_key]}
        assert covered == set(synthesized.resources(target_type)), policy_type


def test_everything_that_stores_data_is_encrypted_at_rest(synthesized: Synthesized) -> None:
    for bucket_id, bucket in synthesized.resources("AWS::S3::Bucket").items():
        [rule] = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), bucket_id
    for queue_id, queue in synthesized.resources("AWS::SQS::Queue").items():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, queue_id
    for topic_id, topic in synthesized.resources("AWS::SNS::Topic").items():
        assert "KmsMasterKeyId" in topic["Properties"], topic_id
    for table_id, table in synthesized.resources("AWS::DynamoDB::Table").items():
        # DynamoDB encrypts every table at rest (an AWS owned key unless a KMS key is named); the
        # template must not ask for anything less.
        assert table["Properties"].get("SSESpecification", {}).get("SSEEnabled", True) is not False, table_id
    for key_id, key in synthesized.resources("AWS::KMS::Key").items():
        assert key["Properties"].get("EnableKeyRotation") is True, key_id


# -- least privilege: the calls each function makes, observed, equal its role's grants ---------------
SCORING_FUNCTIONS = ("ListNewVersions", "ReconcileVersions", "BuildReplayManifest", "ClassifyBatch",
                     "RecordBatchFailure", "ReconcileBatches", "AggregateDailyCounts")
_SQS_ACTIONS = {"ReceiveMessage": "sqs:ReceiveMessage", "DeleteMessageBatch": "sqs:DeleteMessage"}
LOGGING_AND_TRACING = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
                       "xray:PutTelemetryRecords"}
_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}


def iam_actions(service: str, operation: str, params: dict[str, Any], tables: dict[str, str]) -> set[tuple[str, str]]:
    """(IAM action, where) for one API call: where is a table's logical id, "ImagesBucket" or
    "ImagesBucket/<prefix>/" for objects."""
    if service == "s3":
        key = str(params.get("Key", ""))
        place = "ImagesBucket/" + key.split("/", 1)[0] + "/" if key else "ImagesBucket"
        if operation in ("GetObject", "HeadObject"):
            return {("s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject", place)}
        if operation in ("ListObjectVersions",):
            return {("s3:ListBucketVersions", "ImagesBucket")}
        if operation in ("ListObjects", "ListObjectsV2"):
            return {("s3:ListBucket", "ImagesBucket")}
        return {(f"s3:{operation}", place)}
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            return {(f"dynamodb:{_TRANSACT[kind]}", tables[body["TableName"]])
                    for item in params["TransactItems"] for kind, body in item.items()}
        if operation in ("BatchWriteItem", "BatchGetItem"):
            return {(f"dynamodb:{operation}", tables[name]) for name in params["RequestItems"]}
        return {(f"dynamodb:{operation}", tables[params["TableName"]])}
    if service == "sqs":  # the functions' one queue is the ingest queue
        return {(_SQS_ACTIONS.get(operation, f"sqs:{operation}"), "IngestQueue")}
    return {(f"{service}:{operation}", "?")}


def _place(resource: Any) -> str | None:
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return str(resource["Fn::GetAtt"][0])
    if isinstance(resource, dict) and "Fn::Join" in resource:
        parts = resource["Fn::Join"][1]
        if isinstance(parts[0], dict) and "Fn::GetAtt" in parts[0] and isinstance(parts[-1], str):
            path = parts[-1]
            # One object (the registry's pointer) or a pattern inside a prefix (runs/*/results/...): its
            # top prefix, as calls are counted.
            if not path.endswith("*") or "*" in path[:-1]:
                path = "/" + path.lstrip("/").split("/", 1)[0] + "/"
            return str(parts[0]["Fn::GetAtt"][0]) + path.rstrip("*")
    return None


def granted(synthesized: Synthesized, function: str) -> set[tuple[str, str]]:
    [role] = [r["Properties"]["Role"]["Fn::GetAtt"][0]
              for r in synthesized.resources("AWS::Lambda::Function").values()
              if r["Properties"]["FunctionName"] == f"batchinfer-dev-{function}"]
    grants: set[tuple[str, str]] = set()
    for policy in synthesized.resources("AWS::IAM::Policy").values():
        if {"Ref": role} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for action in actions:
                if action in LOGGING_AND_TRACING:
                    continue
                for resource in resources:
                    place = _place(resource)
                    assert place is not None, f"{function}: {action} on an unexpected resource {resource}"
                    grants.add((action, place))
    return grants


@pytest.fixture
def observed_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, set[tuple[str, str]]]]:
    """Every S3 and DynamoDB call each function's code makes, attributed to the function (one
    function runs at a time: the Map's concurrency is 1)."""
    from engine.local_engine import LocalConfig

    tables = {LocalConfig(name="rel-iam").table_name(t.logical_id): t.logical_id for t in TABLES}
    calls: dict[str, set[tuple[str, str]]] = defaultdict(set)
    current: dict[str, str | None] = {"function": None}
    by_path = {path: name for name, path in FUNCTIONS.items()}
    main_thread = threading.get_ident()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        function = current["function"]
        service = model.service_model.service_name
        if function is None or threading.get_ident() == main_thread or service not in ("s3", "dynamodb", "sqs"):
            return
        calls[function] |= iam_actions(service, model.name, params, tables)

    original_load = lambda_bridge._load_handler

    def load(path: str) -> Any:
        handler = original_load(path)

        def attributed(event: Any, context: Any) -> Any:
            current["function"] = by_path[path]
            try:
                return handler(event, context)
            finally:
                current["function"] = None

        return attributed

    monkeypatch.setattr(lambda_bridge, "_load_handler", load)
    entry = ("before-parameter-build", record)
    botocore.handlers.BUILTIN_HANDLERS.append(entry)  # before the functions' clients are made
    try:
        yield calls
    finally:
        botocore.handlers.BUILTIN_HANDLERS.remove(entry)
        current["function"] = None


def test_each_role_grants_exactly_the_calls_its_function_makes(
    observed_calls: dict[str, set[tuple[str, str]]], synthesized: Synthesized, demo_model: Any,
    held_out_digits: list[Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from demo import digits
    from engine.local_engine import LocalConfig, LocalEngine
    from lambdas.model_registry import ModelRegistry
    from lambdas.stores import PredictionStore

    original_write = PredictionStore.write
    crashed: list[str] = []

    def crash_once(self: PredictionStore, predictions: Any) -> Any:
        batch = predictions[0].batch_id if predictions else ""
        if (batch.endswith(("-00000", "-00002")) or batch.startswith("pipe-")) and batch not in crashed:
            original_write(self, list(predictions)[:1 if batch.startswith("pipe-") else 2])
            crashed.append(batch)
            raise RuntimeError("killed mid-batch")  # the retry then finds its own earlier writes
        if batch.startswith("pipe-"):  # the event run's retries never write its last image
            return original_write(self, list(predictions)[:2])
        return original_write(self, predictions)

    original_fold = PredictionStore.fold
    fold_deaths: list[str] = []

    def die_before_the_fold(self: PredictionStore, items: Any) -> Any:
        # A crashed batch's two retries land their items and die before folding them: RecordBatchFailure (the
        # score run's third batch) or ReconcileBatches (the event run's, whose RecordBatchFailure fails too)
        # folds what they left, after the first attempt's marker (so it reads its owner's markers first).
        batch = items[0].batch_id if items else ""
        if (batch.endswith("-00002") or batch.startswith("pipe-")) and batch in crashed \
                and fold_deaths.count(batch) < 2:
            fold_deaths.append(batch)
            raise RuntimeError("killed before the fold")
        return original_fold(self, items)

    monkeypatch.setattr(PredictionStore, "write", crash_once)
    monkeypatch.setattr(PredictionStore, "fold", die_before_the_fold)
    # Slices of 8 images: the first score run lists twice, so the ledger's item count is read (DescribeTable).
    config = LocalConfig(name="rel-iam", batch_size=4, max_concurrency=1, faults="ClassifyBatch:error:batch-00001",
                         extra_settings={"BATCHINFER_MAX_IMAGES_PER_RUN": "8"})
    with LocalEngine(config) as engine:
        registry = ModelRegistry(config.model_registry, s3_client=engine.client("s3"))
        registry.publish("v1", demo_model[0], digits.LABELS, demo_model[1])
        registry.promote("v1")
        for digit in held_out_digits[:12]:
            upload(engine, f"incoming/{digit.index:04d}.png", digit.png)
        upload(engine, "incoming/zz-broken.png", b"not an image")
        for message in engine.client("sqs").receive_message(QueueUrl=engine.queue_url,
                                                            MaxNumberOfMessages=10).get("Messages", []):
            engine.client("sqs").delete_message(QueueUrl=engine.queue_url, ReceiptHandle=message["ReceiptHandle"])
        first = engine.run({"mode": "score"}, timeout=300)
        assert first["status"] == "SUCCEEDED" and len(crashed) == 2 and len(fold_deaths) == 2
        engine.faults.rules.clear()
        assert engine.run({"mode": "replay", "run": output_of(first)["run_id"]})["status"] == "SUCCEEDED"
        # The event-started run's one child fails outright (its batch dies on every attempt, and its
        # RecordBatchFailure too): ReconcileBatches folds what it left and records the image it never wrote,
        # and the run fails past the tolerated 10%.
        from engine.faults import FaultPlan

        engine.faults.rules.extend(FaultPlan.parse("RecordBatchFailure:error:batch-00000:1").rules)
        upload(engine, "incoming/from-an-event.png", held_out_digits[20].png)
        upload(engine, "incoming/from-an-event-2.png", held_out_digits[22].png)
        upload(engine, "incoming/from-an-event-3.png", held_out_digits[23].png)
        assert engine.pipe is not None
        for arn in engine.pipe.drain():
            description = engine.wait(arn)
            assert (description["status"], description.get("error")) == ("FAILED", "ClassifyFailed")
        assert [b for b in crashed if b.startswith("pipe-")] and len(fold_deaths) == 4
        engine.faults.rules.clear()
        upload(engine, "incoming/no-event.png", held_out_digits[21].png)
        engine.client("sqs").purge_queue(QueueUrl=config.ingest_queue_url)  # its event lost: the sweep finds it
        engine.client("sqs").purge_queue(QueueUrl=engine.queue_url)
        assert engine.run({"mode": "reconcile"}, timeout=300)["status"] == "SUCCEEDED"

    # A function that reads objects that may be gone is also granted s3:ListBucket, so that S3
    # answers 404 (handled) rather than 403 (see infra/constructs/functions.py).
    for function in SCORING_FUNCTIONS:
        expected = set(observed_calls[function])
        if any(a in ("s3:GetObject", "s3:GetObjectVersion") for a, _ in expected):
            expected.add(("s3:ListBucket", "ImagesBucket"))
        assert granted(synthesized, function) == expected, function


# -- presigned links that expire ----------------------------------------------------------------------
def test_prediction_links_are_presigned_name_the_version_and_expire(
    served: Any, held_out_digits: list[Any]
) -> None:
    bodies = {}
    for digit in held_out_digits[:3]:
        version = upload(served, f"incoming/link {digit.index}.png", digit.png)
        bodies[version] = digit.png
    run = cli_json("start", "--wait")
    assert run["output"]["images_scored"] == 3

    rows = cli_json("predictions", "--links", "--expires", "600")
    assert len(rows) == 3
    for row in rows:
        version = row["image"].rsplit("versionId=", 1)[1]
        link = row["link"]
        assert link.startswith(served.endpoint_url) and "X-Amz-Signature=" in link
        assert "X-Amz-Expires=600" in link and f"versionId={version}" in link
        assert row["link_expires_in"] == 600
        response = requests.get(link, timeout=10)
        assert response.status_code == 200 and response.content == bodies[version]
    assert all("X-Amz-Expires=3600" in r["link"] for r in cli_json("predictions", "--links"))  # the default
    assert all("link" not in r for r in cli_json("predictions"))

    today = rows[0]["date"]
    assert len(cli_json("predictions", "--date", today)) == 3
    assert cli_json("predictions", "--date", "1999-01-01") == []
    for args, message in [(["--date", "yesterday"], "--date must be a day as YYYY-MM-DD"),
                          (["--links", "--expires", "0"], "--expires must be between 1 and 604800")]:
        result = cli("predictions", *args)
        assert result.exit_code == 2 and message in result.output


# -- no secrets in the repository ---------------------------------------------------------------------
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b"),
    "private key": re.compile("-----BEGIN ([A-Z]+ )?" + "PRIVATE KEY-----"),
    "AWS secret access key": re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b", re.I),
}


def test_no_secrets_in_the_repository() -> None:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                                capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git work tree")
    found = []
    for name in filter(None, listed):
        path = REPO_ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        found += [f"{name}: {kind}" for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert found == []


# -- logs carry no image bytes; reasons are short and printable ---------------------------------------
@pytest.fixture
def function_logs() -> Iterator[io.StringIO]:
    """The functions' Powertools JSON log lines, at INFO and above."""
    from lambdas.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    level = logger.log_level
    logger._logger.addHandler(handler)
    logger.setLevel("INFO")
    try:
        yield buffer
    finally:
        logger._logger.removeHandler(handler)
        logger.setLevel(level)


def test_logs_carry_no_image_bytes_and_reasons_are_sanitised(
    function_logs: io.StringIO, scoring_engine: Any, held_out_digits: list[Any]
) -> None:
    engine = scoring_engine
    bodies = {
        "incoming/good.png": held_out_digits[0].png,
        "incoming/corrupt.png": held_out_digits[1].png[:300] + bytes(range(256)) * 4,
        "incoming/binary-junk.png": bytes(range(256)) * 8,
    }
    # The digits first: the manifest is in capture-time order (to the second, as HeadObject gives it),
    # so the odd objects land in the last batch, not in the first one, which is made to crash.
    for digit in held_out_digits[2:20]:
        upload(engine, f"incoming/{digit.index:04d}.png", digit.png)
    time.sleep(1.1)
    for key, body in bodies.items():
        upload(engine, key, body)
    secret_looking = base64.b64encode(held_out_digits[0].png).decode()

    def crash_with_a_huge_message(function: str, event: Any) -> None:
        # The batch without the bad objects crashes, so the other one logs their failures. (Which batch
        # holds them depends on the upload times, as listing orders by LastModified.)
        keys = {item["key"] for item in event.get("batch", {}).get("items", [])}
        if function.endswith("ClassifyBatch") and not keys & bodies.keys():
            raise RuntimeError("decoder state:\x00\x01\x1b[31m " + "\n".join(["x" * 200] * 100) + secret_looking)

    lambda_bridge.set_fault_hook(crash_with_a_huge_message)
    try:
        description = engine.run({"mode": "score"})
    finally:
        lambda_bridge.set_fault_hook(None)
    assert description["status"] == "SUCCEEDED"
    run_id = output_of(description)["run_id"]

    lines = function_logs.getvalue().splitlines()
    assert lines and all(json.loads(line)["service"] == "batchinfer" for line in lines)
    assert any(json.loads(line).get("message") == "image failed" for line in lines)
    logs = function_logs.getvalue()
    for body in [*bodies.values(), *(d.png for d in held_out_digits[:20])]:
        for start in range(0, max(1, len(body) - 48), 97):
            window = body[start:start + 48]
            assert base64.b64encode(window).decode()[8:56] not in logs
            assert window.hex() not in logs
            assert window.decode("latin-1") not in logs
    assert secret_looking[:64] not in logs
    assert max(len(line) for line in lines) < 4000

    failures = FailureStore(engine.client("dynamodb"), engine.failures_table).for_run(run_id)
    marks = [r for r in scan_all(engine.client("dynamodb"), TableName=engine.predictions_table) if r["sk"] == FAILED]
    assert failures and len(marks) == len(failures)
    for reason in [f["reason"] for f in failures] + [m["reason"] for m in marks]:
        assert len(reason) <= 500 and reason.isprintable() and secret_looking[:64] not in reason
    crashed = [f["reason"] for f in failures if f["stage"] == "batch"]
    assert crashed and all(r.startswith("the classify batch failed after its retries: RuntimeError: decoder state:")
                           for r in crashed)
