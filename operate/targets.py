"""Where the CLI works: the local stack that `batchinfer local serve` keeps, or a deployed stack."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from contract.resource_spec import DAILY_COUNTS, FAILURES, PREDICTIONS, RUN_STATE, TABLES

# The AWS services batchinfer calls. boto3's type stubs know each client by its literal name.
AwsService = Literal["s3", "dynamodb", "stepfunctions", "sqs", "events", "cloudformation", "sts", "athena", "lambda"]


class TargetError(RuntimeError):
    """The CLI cannot reach what it was pointed at; the message says what to do."""


@dataclass(frozen=True)
class Target:
    kind: str  # "local" or "aws"
    region: str
    state_machine_arn: str
    bucket: str
    tables: dict[str, str]  # logical id -> table name
    endpoint_url: str | None = None
    profile: str | None = None
    # The registry the stack serves from (s3://<bucket>/models/<name>), when the stack says; else the
    # only model under models/ is taken (operate.models.open_registry).
    model_registry: str | None = None
    # Where Athena queries the runs' result files (a deployed stack's outputs; empty on the local stack).
    athena_workgroup: str = ""
    glue_database: str = ""
    # One client per service, made at first use: watching a run polls it several times a second.
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def client(self, service: AwsService, config: Any = None) -> Any:
        if config is not None:
            return self._new_client(service, config)
        if service not in self._clients:
            self._clients[service] = self._new_client(service, None)
        return self._clients[service]

    def _new_client(self, service: AwsService, config: Any) -> Any:
        if self.kind == "local":  # moto takes any credentials; never use a real account's here
            return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url,
                                aws_access_key_id="local", aws_secret_access_key="local", config=config)
        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        return session.client(service, endpoint_url=self.endpoint_url, config=config)

    @property
    def predictions_table(self) -> str:
        return self.tables[PREDICTIONS.logical_id]

    @property
    def counts_table(self) -> str:
        return self.tables[DAILY_COUNTS.logical_id]

    @property
    def failures_table(self) -> str:
        return self.tables[FAILURES.logical_id]

    @property
    def state_table(self) -> str:
        return self.tables[RUN_STATE.logical_id]

    def execution_arn(self, run_id: str) -> str:
        if run_id.startswith("arn:"):
            return run_id
        return self.state_machine_arn.replace(":stateMachine:", ":execution:") + ":" + run_id

    def console_url(self, run_id: str) -> str | None:
        if self.kind != "aws":
            return None
        return (f"https://{self.region}.console.aws.amazon.com/states/home?region={self.region}"
                f"#/v2/executions/details/{self.execution_arn(run_id)}")


PORT_ENV = "BATCHINFER_PORT"
DEFAULT_PORT = 5000


def local_stacks_dir() -> Path:
    """One file per running local stack, named after its port, so that several can run at once."""
    from contract.settings import cache_dir

    return cache_dir() / "local-stacks"


def local_stack_file(port: int) -> Path:
    return local_stacks_dir() / f"{port}.json"


def default_state_dir(port: int) -> Path:
    """Where a local stack keeps its data unless told otherwise: one folder per port."""
    from contract.settings import cache_dir

    return cache_dir() / "local-state" / str(port)


def _port_of(target: Target) -> int:
    return int(str(target.endpoint_url).rsplit(":", 1)[-1])


def write_local_stack(target: Target, pid: int, state_dir: Path | None = None) -> Path:
    path = local_stack_file(_port_of(target))
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {f.name: getattr(target, f.name) for f in fields(target) if f.init}
    values.update(pid=pid, state_dir=str(state_dir) if state_dir else None)
    scratch = path.with_name(f".{path.name}.{pid}.tmp")
    scratch.write_text(json.dumps(values, indent=2))
    scratch.replace(path)
    return path


def remove_local_stack(port: int, pid: int) -> None:
    """Forget this stack's file, and only if it is still ours: another stack on the port may have replaced it."""
    path = local_stack_file(port)
    try:
        if int(json.loads(path.read_text()).get("pid", 0)) == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def running_local_stacks() -> dict[int, dict[str, Any]]:
    """The local stacks whose process is alive, by port."""
    stacks = {}
    for path in sorted(local_stacks_dir().glob("*.json")):
        try:
            values = json.loads(path.read_text())
            port = int(path.stem)
        except (OSError, ValueError):
            continue
        if _alive(int(values.get("pid", 0))):
            stacks[port] = values
    return stacks


# A local stack's state machine carries tags that describe the stack, so that an explicit port finds it
# whatever cache folder this shell uses (the stack files are per cache).
STACK_TAG = "batchinfer:"
LOCAL_REGION = "us-east-1"


def stack_tags(target: Target) -> list[dict[str, str]]:
    """The tags a local stack's state machine carries: its bucket, tables and model registry."""
    values = {"bucket": target.bucket, "region": target.region, "model-registry": target.model_registry or "",
              **{f"table:{logical_id}": name for logical_id, name in target.tables.items()}}
    return [{"key": f"{STACK_TAG}{key}", "value": value} for key, value in values.items() if value]


def probe_local_stack(port: int) -> Target:
    """The local stack serving on `port`, read from its own state machine's tags."""
    endpoint = f"http://127.0.0.1:{port}"
    sfn = boto3.client("stepfunctions", region_name=LOCAL_REGION, endpoint_url=endpoint,
                       aws_access_key_id="local", aws_secret_access_key="local",
                       config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))
    not_running = TargetError(f"no local stack is running on port {port}: "
                              f"start it with `batchinfer local serve --port {port}`")
    try:
        machines = sfn.list_state_machines()["stateMachines"]
        for machine in machines:
            tags = {t["key"].removeprefix(STACK_TAG): t["value"]
                    for t in sfn.list_tags_for_resource(resourceArn=machine["stateMachineArn"])["tags"]
                    if t["key"].startswith(STACK_TAG)}
            if "bucket" in tags:
                return Target(kind="local", region=tags.get("region", LOCAL_REGION),
                              state_machine_arn=machine["stateMachineArn"], bucket=tags["bucket"],
                              tables={k.removeprefix("table:"): v for k, v in tags.items() if k.startswith("table:")},
                              endpoint_url=endpoint, model_registry=tags.get("model-registry") or None)
    except (BotoCoreError, ClientError):
        raise not_running from None
    raise not_running


def local_target(port: int | None = None) -> Target:
    """The local stack on `port`; without one, the only local stack running (by this cache's stack files)."""
    stacks = running_local_stacks()
    if port is None:
        if len(stacks) > 1:
            raise TargetError(f"{len(stacks)} local stacks are running (ports {', '.join(map(str, stacks))}): "
                              f"pick one with --port or {PORT_ENV}")
        if not stacks:
            raise TargetError("the local stack is not running: start it with `batchinfer local serve`")
        port = next(iter(stacks))
    if port not in stacks:  # started from a shell with another cache folder: ask the port itself
        return probe_local_stack(port)
    values = dict(stacks[port])
    values.pop("pid", None)
    values.pop("state_dir", None)
    target = Target(**values)
    try:
        import requests

        requests.get(f"{target.endpoint_url}/moto-api/", timeout=2)
    except Exception:
        raise TargetError(f"the local stack is not answering at {target.endpoint_url}: "
                          "start it with `batchinfer local serve`") from None
    return target


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (with SO_REUSEADDR, as moto's server binds)."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def aws_target(stack: str, region: str | None = None, profile: str | None = None,
               endpoint_url: str | None = None) -> Target:
    """A deployed stack, found by name from its CloudFormation outputs."""
    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
        cloudformation = session.client("cloudformation", endpoint_url=endpoint_url)
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except NoCredentialsError:
        raise TargetError("no AWS credentials: set a profile with --profile or AWS_PROFILE, "
                          "or run `aws configure`") from None
    except NoRegionError:
        raise TargetError("no AWS region: pass --region or set AWS_REGION") from None
    except ClientError as error:
        message = error.response["Error"].get("Message", "")
        if "does not exist" in message:
            raise TargetError(f"stack {stack!r} not found in {session.region_name}: "
                              "deploy it with `cdk deploy` or pass --stack") from None
        raise TargetError(f"cannot read stack {stack!r}: {message}") from None
    except BotoCoreError as error:
        raise TargetError(f"cannot reach AWS: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}

    def output(name: str) -> str:
        # CDK suffixes output keys made inside constructs with a hash: match on the prefix.
        for key, value in outputs.items():
            if key == name or key.startswith(name):
                return value
        raise TargetError(f"stack {stack!r} has no output {name}: is it a batchinfer stack?")

    return Target(
        kind="aws",
        region=str(session.region_name),
        state_machine_arn=output("StateMachineArn"),
        bucket=output("BucketName"),
        tables={t.logical_id: output(t.logical_id) for t in TABLES},
        endpoint_url=endpoint_url,
        profile=profile,
        # Stacks deployed before this output existed: the only model under models/ is taken.
        model_registry=next((v for k, v in outputs.items() if k.startswith("ModelRegistry")), None),
        # A stack deployed before the results tables existed has neither: `query` says so.
        athena_workgroup=next((v for k, v in outputs.items() if k.startswith("AthenaWorkGroup")), ""),
        glue_database=next((v for k, v in outputs.items() if k.startswith("GlueDatabase")), ""),
    )
