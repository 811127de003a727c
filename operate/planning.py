"""The capacity plan of a stack: what `batchinfer plan` reads before contract/capacity.py does the arithmetic.

With a deployed stack: ClassifyBatch's settings and memory (from the function the state machine invokes), the
account's unreserved Lambda concurrency (GetAccountSettings), each table's warm throughput (DescribeTable) and
the served model's seconds per batch (its metrics in the registry). Without one: the default deployment
(cdk.json's defaults) and, when a local stack is running, its served model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from contract import capacity
from contract.capacity import Deployment
from contract.resource_spec import DAILY_COUNTS, PREDICTIONS, RUN_STATE
from contract.settings import Settings, SettingsError, load_settings
from lambdas.model_registry import ModelError
from operate.models import open_registry
from operate.targets import Target, TargetError

CLASSIFY_STATE = "ClassifyBatch"
PLANNED_TABLES = (PREDICTIONS, DAILY_COUNTS, RUN_STATE)


@dataclass(frozen=True)
class StackFacts:
    """What was read, with a note for every figure that fell back to a default."""

    deployment: Deployment
    seconds_per_batch: float
    seconds_source: str
    notes: list[str] = field(default_factory=list)


def seconds_per_batch(target: Target | None, batch_size: int) -> tuple[float, str]:
    """ClassifyBatch's seconds per batch of `batch_size` for the served version: its forward pass timed at
    publish, times what ClassifyBatch spends beyond its forward passes; else the documented default."""
    default = (capacity.DEFAULT_SECONDS_PER_BATCH * batch_size / capacity.BENCH_BATCH_SIZE,
               f"the default: ClassifyBatch on ResNet-50 int8, {capacity.DEFAULT_SECONDS_PER_BATCH} s per "
               f"{capacity.BENCH_BATCH_SIZE} images in make bench")
    if target is None:
        return default
    try:
        registry = open_registry(target)
        version = registry.current_version()
        serving = registry.metrics(version).get("serving") or {}
    except (ModelError, TargetError, ClientError, BotoCoreError, KeyError, ValueError):
        return default[0], default[1] + "; the stack serves no model yet"
    forward, timed = serving.get("forward_seconds_per_batch"), serving.get("timed_batch")
    if not forward or not timed:
        return default[0], default[1] + f"; {registry.name} {version} records no time per batch"
    seconds = float(forward) * capacity.CLASSIFY_OVER_FORWARD * batch_size / int(timed)
    return seconds, (f"{registry.name} {version}: forward pass {forward} s per {timed} images at publish "
                     f"x {capacity.CLASSIFY_OVER_FORWARD} for reads and writes")


def default_deployment() -> Deployment:
    """The deployment cdk.json describes (DeployConfig's defaults)."""
    from infra.config import DeployConfig

    return DeployConfig().deployment()


def _find_task(states: dict[str, Any], name: str, children: str = "") -> tuple[dict[str, Any], str] | None:
    """The Task state `name` anywhere in the definition, with the execution type of the map that runs it."""
    for state_name, state in states.items():
        if state_name == name and state.get("Type") == "Task":
            return state, children
        for inner in [state.get("ItemProcessor") or state.get("Iterator") or {}, *state.get("Branches", [])]:
            if inner.get("States"):
                kind = (inner.get("ProcessorConfig") or {}).get("ExecutionType", children)
                found = _find_task(inner["States"], name, kind)
                if found:
                    return found
    return None


def stack_facts(target: Target) -> StackFacts:
    """A deployed stack's deployment as it runs, from AWS."""
    notes: list[str] = []
    sfn, lambda_, dynamodb = target.client("stepfunctions"), target.client("lambda"), target.client("dynamodb")
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=target.state_machine_arn)["definition"])
    found = _find_task(definition.get("States", {}), CLASSIFY_STATE)
    if found is None:
        raise TargetError(f"the state machine has no {CLASSIFY_STATE} task: is it a batchinfer stack?")
    task, children = found
    function = lambda_.get_function_configuration(FunctionName=task["Parameters"]["FunctionName"])
    try:
        settings: Settings = load_settings(function.get("Environment", {}).get("Variables", {}))
    except SettingsError as error:
        raise TargetError(f"{CLASSIFY_STATE}'s settings cannot be read: {error}") from None
    try:
        account = lambda_.get_account_settings()["AccountLimit"]
        concurrency = int(account.get("UnreservedConcurrentExecutions") or account["ConcurrentExecutions"])
    except (ClientError, BotoCoreError, NotImplementedError, KeyError) as error:
        concurrency = capacity.LAMBDA_ACCOUNT_CONCURRENCY
        notes.append(f"the account's Lambda concurrency cannot be read ({type(error).__name__}): planned at "
                     f"AWS's default {concurrency:,}")
    warm: dict[str, int] = {}
    for spec in PLANNED_TABLES:
        table = dynamodb.describe_table(TableName=target.tables[spec.logical_id])["Table"]
        writes = (table.get("WarmThroughput") or {}).get("WriteUnitsPerSecond")
        if writes:
            warm[spec.logical_id] = int(writes)
        else:
            notes.append(f"{spec.logical_id} reports no warm throughput: planned at a new on-demand table's "
                         f"{capacity.NEW_TABLE_WRITES:,} write units/s")
    deployment = Deployment(max_concurrency=settings.max_concurrency, batch_size=settings.batch_size,
                            classify_memory_mb=int(function.get("MemorySize", 0)) or Deployment.classify_memory_mb,
                            count_shards=settings.count_shards, max_images_per_run=settings.max_images_per_run,
                            children=children or "STANDARD", warm_writes=warm, account_concurrency=concurrency)
    seconds, source = seconds_per_batch(target, settings.batch_size)
    return StackFacts(deployment, seconds, source, notes)


def local_facts(target: Target | None) -> StackFacts:
    """The default deployment, with the local stack's served model when one is running."""
    deployment = default_deployment()
    seconds, source = seconds_per_batch(target, deployment.batch_size)
    notes = [] if target is not None else ["no local stack running: the default deployment and seconds per batch"]
    return StackFacts(deployment, seconds, source, notes)


def make_plan(facts: StackFacts, images: int, *, seconds: float | None = None, max_concurrency: int | None = None,
              batch_size: int | None = None) -> capacity.Plan:
    """The plan of `images` for the facts read, with the caller's overrides."""
    deployment, per_batch, source = facts.deployment, facts.seconds_per_batch, facts.seconds_source
    if batch_size is not None and batch_size != deployment.batch_size:
        if seconds is None:
            per_batch = per_batch * batch_size / deployment.batch_size
            source += f", scaled to batches of {batch_size}"
        deployment = replace(deployment, batch_size=batch_size)
    if max_concurrency is not None:
        deployment = replace(deployment, max_concurrency=max_concurrency)
    if seconds is not None:
        per_batch, source = seconds, "--seconds-per-batch"
    return capacity.plan(deployment, images, per_batch, source)
