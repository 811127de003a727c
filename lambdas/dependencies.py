"""Builds the AWS-backed stores and the model registry from settings, once per container (reset by the
local engine). Handlers get every dependency from here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

from contract.settings import Settings, cached_settings
from lambdas.ingest_stores import IngestLedger, ReconciliationState, UploadEventQueue
from lambdas.model_registry import ModelRegistry
from lambdas.stores import FailureStore, ImageSource, PredictionStore, RunStateStore
from lambdas.throttles import watch

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=32)


@dataclass(frozen=True)
class Stores:
    settings: Settings
    source: ImageSource
    predictions: PredictionStore
    failures: FailureStore
    state: RunStateStore
    ledger: IngestLedger
    uploads: UploadEventQueue
    sweeps: ReconciliationState
    # A registry at a given location, on the same clients; the retraining hook is told its location.
    open_registry: Callable[[str], ModelRegistry]

    @property
    def registry(self) -> ModelRegistry:
        """The registry the deployment serves from (settings.model_registry)."""
        return self.open_registry(self.settings.model_registry)


def make_stores(settings: Settings, session: Any = None) -> Stores:
    session = session or boto3.session.Session()
    # Each client counts its throttled responses into the running invocation's tally (lambdas/throttles.py).
    dynamodb = watch(session.client("dynamodb", config=_CLIENT_CONFIG))
    s3 = watch(session.client("s3", config=_CLIENT_CONFIG))
    return Stores(
        settings=settings,
        source=ImageSource(s3),
        predictions=PredictionStore(
            dynamodb, settings.predictions_table, settings.counts_table, settings.count_shards
        ),
        failures=FailureStore(dynamodb, settings.failures_table),
        state=RunStateStore(dynamodb, settings.state_table),
        ledger=IngestLedger(dynamodb, settings.ledger_table),
        uploads=UploadEventQueue(watch(session.client("sqs", config=_CLIENT_CONFIG)), settings.ingest_queue_url),
        sweeps=ReconciliationState(dynamodb, settings.state_table),
        open_registry=lambda location: ModelRegistry(location, s3_client=s3),
    )


@lru_cache(maxsize=1)
def stores() -> Stores:
    return make_stores(cached_settings())


def reset() -> None:
    """Forget settings and clients: the next invocation reads the environment again."""
    stores.cache_clear()
    cached_settings.cache_clear()
