"""The embedded engine: moto's AWS with the real Step Functions interpreter, the resources from
the resource spec, the Lambda bridge running our handlers, and the one definition file deployed."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import boto3

from contract.resource_spec import (
    DAILY_COUNTS,
    FAILURES,
    FUNCTION_LIMITS,
    FUNCTIONS,
    LABELS_PREFIX,
    MODELS_PREFIX,
    PIPE_BATCH_SIZE,
    PIPE_WINDOW_SECONDS,
    PREDICTIONS,
    RUN_STATE,
    RUNS_PREFIX,
    SQS_MESSAGE_BYTES,
    STATES_HISTORY_EVENTS,
    TABLES,
    FunctionLimits,
    function_arn_placeholder,
    upload_event_pattern,
)
from contract.settings import Settings, table_settings
from engine import lambda_bridge, moto_patches, throttling
from engine.faults import FaultPlan
from engine.local_pipe import LocalPipe
from operate import operations
from operate.targets import AwsService, Target, stack_tags
from workflow.definition import adapt_for_local_engine, render

MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}
TIME_SCALE_VARIABLE = "BATCHINFER_ENGINE_TIME_SCALE"


def _time_scale_from_environment() -> float:
    raw = os.environ.get(TIME_SCALE_VARIABLE, "1")
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{TIME_SCALE_VARIABLE}={raw!r} is not a number") from None
    if scale <= 0:
        raise ValueError(f"{TIME_SCALE_VARIABLE}={raw!r} must be above 0")
    return scale


@dataclass
class LocalConfig:
    name: str = "batchinfer-local"
    region: str = "us-east-1"
    account: str = "123456789012"
    model_name: str = "digits"
    batch_size: int = 32
    max_concurrency: int = 2
    time_zone: str = "UTC"
    min_new_labels: int = 50
    pipe_batch_size: int = PIPE_BATCH_SIZE
    pipe_window_seconds: float = PIPE_WINDOW_SECONDS
    extra_settings: dict[str, str] = field(default_factory=dict)
    # A fault plan (engine/faults.py): chosen Lambda invocations fail, time out or throttle.
    faults: str = field(default_factory=lambda: os.environ.get("BATCHINFER_FAULTS", ""))
    # Multiplies every limit's duration (function timeouts, the EXPRESS child's 5 minutes) so that
    # tests can reach them in seconds. 1, the deployed values, unless a test asks otherwise.
    time_scale: float = field(default_factory=_time_scale_from_environment)
    # AWS's throughput quotas the engine enforces (engine/throttling.py): "" (none, the default), "aws" (all at
    # AWS's figures), or services and figures, e.g. "dynamodb.partition_writes=50,s3".
    quotas: str = field(default_factory=throttling.quotas_from_environment)
    # Events an execution's history may hold before it fails (moto_patches fix 21): AWS's 25,000 unless a
    # test lowers it to reach it in seconds.
    history_events: int = STATES_HISTORY_EVENTS
    # Memory and timeout per function: the deployed ones (resource spec) unless overridden here.
    function_limits: dict[str, FunctionLimits] = field(default_factory=lambda: dict(FUNCTION_LIMITS))

    @property
    def bucket(self) -> str:
        return f"{self.name}-images"

    def table_name(self, logical_id: str) -> str:
        return f"{self.name}-{logical_id.removesuffix('Table').lower()}"

    @property
    def queue_name(self) -> str:
        return f"{self.name}-uploads"

    @property
    def ingest_queue_name(self) -> str:
        return f"{self.name}-ingest"

    @property
    def ingest_queue_url(self) -> str:
        # moto names a queue by the last part of its URL, whichever endpoint serves it.
        return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.ingest_queue_name}"

    def function_name(self, function: str) -> str:
        return f"{self.name}-{function}"

    def function_arn(self, function: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{self.function_name(function)}"

    @property
    def model_registry(self) -> str:
        return f"s3://{self.bucket}/{MODELS_PREFIX}{self.model_name}"

    def settings(self) -> Settings:
        """The settings of every function, as the CDK stack sets them in AWS for the same config."""
        return Settings(
            bucket=self.bucket,
            model_registry=self.model_registry,
            **table_settings(lambda table: self.table_name(table.logical_id)),
            ingest_queue_url=self.ingest_queue_url,
            time_zone=self.time_zone,
            batch_size=self.batch_size,
            max_concurrency=self.max_concurrency,
            min_new_labels=self.min_new_labels,
            # A version promoted here is served at the next invocation; AWS checks every 30 s.
            model_refresh_seconds=0.0,
        )

    def settings_env(self) -> dict[str, str]:
        """The environment each function gets: its settings, then any `extra_settings`."""
        return {**self.settings().to_env(), **self.extra_settings}


class LocalEngine:
    """Use as a context manager; everything lives in memory and ends with it.

    In-process (the default) it runs under moto's mock. With `port`, it serves moto's HTTP API
    on 127.0.0.1:port (ThreadedMotoServer), so that other processes — the CLI, the AWS CLI
    with --endpoint-url — can use the stack while this process keeps it alive.
    """

    def __init__(self, config: LocalConfig | None = None, port: int | None = None):
        self.config = config or LocalConfig()
        self.port = port
        self.faults = FaultPlan.parse(self.config.faults)  # a bad rule fails here, before anything starts
        self.quotas = throttling.Quotas.parse(self.config.quotas)  # likewise a bad quota
        # Likewise a memory or timeout that Lambda would refuse.
        self.function_specs = [
            lambda_bridge.FunctionSpec(
                self.config.function_name(fn), path,
                memory_mb=self.config.function_limits[fn].memory_mb,
                timeout_seconds=self.config.function_limits[fn].timeout_seconds,
            )
            for fn, path in FUNCTIONS.items()
        ]
        self._mock: Any = None
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self.state_machine_arn = ""
        self.pipe: LocalPipe | None = None

    @property
    def endpoint_url(self) -> str | None:
        return f"http://127.0.0.1:{self.port}" if self.port else None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LocalEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto import mock_aws

        lambda_bridge.install()  # before any client is made, so every client carries it
        self._set_env(
            {
                "AWS_DEFAULT_REGION": self.config.region,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "POWERTOOLS_SERVICE_NAME": "batchinfer",
                "POWERTOOLS_METRICS_NAMESPACE": "batchinfer",
                "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines would flood the terminal
                "POWERTOOLS_TRACE_DISABLED": "true",  # there is no X-Ray daemon to send segments to
                "POWERTOOLS_LOG_LEVEL": os.environ.get("BATCHINFER_LOG_LEVEL", "WARNING"),
                **self.config.settings_env(),
            }
        )
        # moto's interpreter logs every state error at ERROR; the execution history holds them.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        # Every function runs in this one process, so concurrent invocations share a client that in
        # AWS each sandbox has alone; urllib3 then says at WARNING that it closed a spare connection.
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
        if self.port:
            self._start_server()
        else:
            self._mock = mock_aws(config=MOTO_CONFIG)  # type: ignore[call-overload]
            self._mock.start()
        throttling.configure(self.quotas, self.config.time_scale)
        moto_patches.install()
        moto_patches.limits.time_scale = self.config.time_scale
        moto_patches.limits.history_events = self.config.history_events
        _reset_function_caches()
        lambda_bridge.register(
            self.function_specs,
            fault_hook=self.faults or None,
            time_scale=self.config.time_scale,
        )
        self.create_resources()
        self.deploy_definition()
        self.pipe = LocalPipe(
            sqs=self.client("sqs"),
            sfn=self.client("stepfunctions"),
            queue_url=self.queue_url,
            queue_arn=self.queue_arn,
            state_machine_arn=self.state_machine_arn,
            region=self.config.region,
            batch_size=self.config.pipe_batch_size,
            window_seconds=self.config.pipe_window_seconds,
        )

    def _start_server(self) -> None:
        import requests
        from moto.server import ThreadedMotoServer

        assert self.port is not None
        # moto's interpreter calls Lambda (and so the bridge) through this port.
        self._set_env({"MOTO_PORT": str(self.port), "AWS_ENDPOINT_URL": str(self.endpoint_url)})
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # moto's state is per process: start from nothing, as a new stack does.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        requests.post(f"{self.endpoint_url}/moto-api/config", json=MOTO_CONFIG, timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.pipe is not None:
            self.pipe.stop()
        lambda_bridge.unregister()
        throttling.configure(throttling.Quotas())  # the next engine starts unthrottled unless it asks
        moto_patches.limits.history_events = STATES_HISTORY_EVENTS
        _reset_function_caches()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    # -- clients ---------------------------------------------------------------------------
    def client(self, service: AwsService) -> Any:
        return boto3.client(service, region_name=self.config.region, endpoint_url=self.endpoint_url)

    # -- resources -------------------------------------------------------------------------
    def create_resources(self) -> None:
        s3 = self.client("s3")
        s3.create_bucket(Bucket=self.config.bucket)
        s3.put_bucket_versioning(Bucket=self.config.bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_public_access_block(
            Bucket=self.config.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=self.config.bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        # The S3 event path: bucket → EventBridge rule (the same pattern as in AWS) → SQS queue.
        s3.put_bucket_notification_configuration(
            Bucket=self.config.bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        sqs = self.client("sqs")
        self.queue_url = sqs.create_queue(
            QueueName=self.config.queue_name, Attributes={"MaximumMessageSize": str(SQS_MESSAGE_BYTES)}
        )["QueueUrl"]
        self.queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        # Every event also goes to the ingest queue, which the score run moves into the ingest ledger.
        sqs.create_queue(QueueName=self.config.ingest_queue_name)
        self.ingest_queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.config.ingest_queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = self.client("events")
        events.put_rule(Name=f"{self.config.name}-uploads",
                        EventPattern=json.dumps(upload_event_pattern(self.config.bucket)), State="ENABLED")
        events.put_targets(Rule=f"{self.config.name}-uploads", Targets=[{"Id": "queue", "Arn": self.queue_arn},
                                                                     {"Id": "ingest", "Arn": self.ingest_queue_arn}])
        dynamodb = self.client("dynamodb")
        for table in TABLES:
            request: dict[str, Any] = {
                "TableName": self.config.table_name(table.logical_id),
                "KeySchema": table.key_schema(),
                "AttributeDefinitions": table.attribute_definitions(),
                "BillingMode": "PAY_PER_REQUEST",
            }
            if table.indexes:
                request["GlobalSecondaryIndexes"] = table.global_secondary_indexes()
            dynamodb.create_table(**request)

    def substitutions(self) -> dict[str, str]:
        values = {function_arn_placeholder(fn): self.config.function_arn(fn) for fn in FUNCTIONS}
        # The SageMaker hook cannot run here; its values only have to be well formed.
        values.update({
            "EventBusName": "default",
            "SageMakerRoleArn": f"arn:aws:iam::{self.config.account}:role/{self.config.name}-training",
            "TrainingImageUri": f"{self.config.account}.dkr.ecr.{self.config.region}.amazonaws.com/trainer:latest",
            "TrainingInstanceType": "ml.m5.large",
            "LabelsUri": f"s3://{self.config.bucket}/{LABELS_PREFIX}",
            "TrainingOutputUri": f"s3://{self.config.bucket}/{RUNS_PREFIX}training/",
        })
        return values

    def deploy_definition(self) -> None:
        self.state_machine_arn = self.create_state_machine(self.config.name, render(self.substitutions()))

    def create_state_machine(self, name: str, definition: dict[str, Any]) -> str:
        """Deploy a definition as written for AWS: adapted for moto, with its EXPRESS children's limit kept."""
        sfn = self.client("stepfunctions")
        arn = str(sfn.create_state_machine(
            name=name,
            definition=json.dumps(adapt_for_local_engine(definition)),
            roleArn=f"arn:aws:iam::{self.config.account}:role/{self.config.name}-workflow",
            type="STANDARD",
            # The stack's own: the CLI reads a served stack's names from them (operate.targets.probe_local_stack).
            **({"tags": stack_tags(self.target())} if name == self.config.name else {}),
        )["stateMachineArn"])
        moto_patches.set_express_children(arn, maps_with_express_children(definition))
        return arn

    def throttled(self) -> dict[str, int]:
        """Requests the engine's quotas have throttled since it started, by service (dynamodb, s3, lambda)."""
        return throttling.throttled()

    # -- runs ------------------------------------------------------------------------------
    def start_execution(self, run_input: Any, name: str | None = None) -> str:
        response = self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn,
            name=name or operations.new_run_name("run"),
            input=json.dumps(run_input),
        )
        return str(response["executionArn"])

    def wait(self, execution_arn: str, timeout: float = 3600) -> dict[str, Any]:
        # Runs here take seconds: poll more often than the CLI does against AWS.
        return operations.wait(self.target(), execution_arn, timeout=timeout, poll_seconds=0.2)

    def run(self, run_input: Any, name: str | None = None, timeout: float = 3600) -> dict[str, Any]:
        return self.wait(self.start_execution(run_input, name), timeout)

    def target(self) -> Target:
        """What the CLI needs to work on this stack (served, it reaches it over HTTP)."""
        return Target(kind="local", region=self.config.region, state_machine_arn=self.state_machine_arn,
                      bucket=self.config.bucket,
                      tables={t.logical_id: self.config.table_name(t.logical_id) for t in TABLES},
                      endpoint_url=self.endpoint_url, model_registry=self.config.model_registry)

    # -- convenience for the demo, the CLI and tests --------------------------------------------
    def table(self, spec: Any) -> str:
        return self.config.table_name(spec.logical_id)

    @property
    def predictions_table(self) -> str:
        return self.table(PREDICTIONS)

    @property
    def counts_table(self) -> str:
        return self.table(DAILY_COUNTS)

    @property
    def failures_table(self) -> str:
        return self.table(FAILURES)

    @property
    def state_table(self) -> str:
        return self.table(RUN_STATE)


def maps_with_express_children(definition: dict[str, Any]) -> set[str]:
    """Names of the Map states whose children are EXPRESS workflows, nested ones included."""
    names: set[str] = set()

    def visit(states: dict[str, Any]) -> None:
        for name, state in states.items():
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            if processor.get("ProcessorConfig", {}).get("ExecutionType") == "EXPRESS":
                names.add(name)
            visit(processor.get("States", {}))
            for branch in state.get("Branches", []):
                visit(branch.get("States", {}))

    visit(definition.get("States", {}))
    return names


def _reset_function_caches() -> None:
    from lambdas import dependencies

    dependencies.reset()
    try:
        from inference_image import handler
    except ImportError:  # TensorFlow not installed: the classify function cannot run here
        return
    handler.reset()
