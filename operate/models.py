"""What operators do with a stack's model registry: approve, reject, promote or roll back, and read
its history. Each change is recorded with the caller's identity."""

from __future__ import annotations

import re
from typing import Any

from contract.resource_spec import MODELS_PREFIX
from lambdas.model_registry import ModelRegistry
from lambdas.stores import ImageSource
from operate.identity import caller_identity
from operate.targets import Target, TargetError

MODEL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def model_names(target: Target) -> list[str]:
    """The models in the stack's registry (the folders under models/)."""
    return list(ImageSource(target.client("s3")).list_folders(target.bucket, MODELS_PREFIX))


def open_registry(target: Target, model: str | None = None) -> ModelRegistry:
    """The registry of `model`; without it, the one the stack serves from, else the only one there is."""
    s3 = target.client("s3")
    if model is not None:
        if not MODEL_NAME.match(model):
            raise TargetError(f"--model {model!r} must be a plain name (letters, digits, '.', '_', '-')")
        return ModelRegistry(f"s3://{target.bucket}/{MODELS_PREFIX}{model}", s3_client=s3)
    if target.model_registry:
        return ModelRegistry(target.model_registry, s3_client=s3)
    names = model_names(target)
    if len(names) == 1:
        return ModelRegistry(f"s3://{target.bucket}/{MODELS_PREFIX}{names[0]}", s3_client=s3)
    if not names:
        raise TargetError(f"the registry s3://{target.bucket}/{MODELS_PREFIX} holds no model yet")
    raise TargetError(f"{len(names)} models in the registry ({', '.join(names)}): pick one with --model")


def _outcome(registry: ModelRegistry, version: str) -> dict[str, Any]:
    entry = registry.history()[-1]
    return {"model": registry.name, **entry, "approval": (registry.approval(version) or {}).get("status")}


def approve_version(target: Target, version: str, model: str | None = None) -> dict[str, Any]:
    registry = open_registry(target, model)
    registry.approve(version, caller_identity(target))
    return _outcome(registry, version)


def reject_version(target: Target, version: str, reason: str, model: str | None = None) -> dict[str, Any]:
    registry = open_registry(target, model)
    registry.reject(version, caller_identity(target), reason)
    return _outcome(registry, version)


def promote_version(target: Target, version: str, reason: str | None = None,
                    model: str | None = None) -> dict[str, Any]:
    """Serve `version` from the next run on: a promotion, or a rollback to an earlier version."""
    registry = open_registry(target, model)
    registry.promote(version, caller_identity(target), reason)
    return _outcome(registry, version)


def model_history(target: Target, model: str | None = None) -> list[dict[str, Any]]:
    """Every recorded change of the registry, oldest first."""
    registry = open_registry(target, model)
    return [{"model": registry.name, **entry} for entry in registry.history()]
