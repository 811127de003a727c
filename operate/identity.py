"""Who is making a registry change: the caller's identity on AWS, `local` on the local stack."""

from __future__ import annotations

from operate.targets import Target

LOCAL_IDENTITY = "local"


def caller_identity(target: Target) -> str:
    """The caller's ARN from STS GetCallerIdentity on a deployed stack; `local` on the local stack, where
    moto accepts any credentials and an ARN would name nobody."""
    if target.kind == "local":
        return LOCAL_IDENTITY
    return str(target.client("sts").get_caller_identity()["Arn"])
