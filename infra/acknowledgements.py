"""cdk-nag findings that are acknowledged, each with the reason it cannot or need not be fixed."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import IConstruct


def acknowledge(scope: IConstruct, reasons: dict[str, str]) -> None:
    """Acknowledge findings on scope and everything under it: {rule or rule[finding]: reason}."""
    for rule, reason in reasons.items():
        if not reason.strip():
            raise ValueError(f"acknowledging {rule} needs a reason")
        cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of a construct's resource, as cdk-nag names it in findings."""
    resource = construct.node.default_child or construct
    assert isinstance(resource, cdk.CfnElement)
    return str(cdk.Stack.of(resource).resolve(resource.logical_id))


def object_prefix_reason(prefix: str) -> str:
    return f"Object-level access is limited to the {prefix} prefix, whose keys are not known in advance."


def object_prefix_finding(bucket: IConstruct, prefix: str) -> str:
    return f"AwsSolutions-IAM5[Resource::<{logical_id(bucket)}.Arn>/{prefix}*]"


def log_streams_finding(log_group: IConstruct) -> str:
    return f"AwsSolutions-IAM5[Resource::<{logical_id(log_group)}.Arn>:log-stream:*]"


LOG_STREAMS_REASON = (
    "Log streams are created by the Lambda service with generated names; the grant is limited to "
    "this function's own log group."
)
XRAY_REASON = (
    "X-Ray's PutTraceSegments and PutTelemetryRecords do not support resource-level permissions; "
    "CDK adds them for active tracing."
)
