"""CDK entry point (`cdk synth` / `cdk deploy` from the repository root; see cdk.json)."""

from __future__ import annotations

import sys
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from contract import capacity
from infra.config import DeployConfig
from infra.stack import BatchinferStack

# CDK behaviours the stack relies on, whatever the context: access logs are delivered under a
# bucket policy (not ACLs), and statements for the same resource are merged.
FEATURE_FLAGS = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
}


def build_app(**app_options: Any) -> tuple[cdk.App, BatchinferStack]:
    """The app with its one stack, checked by cdk-nag's AWS Solutions rules at synth."""
    app = cdk.App(post_cli_context={**FEATURE_FLAGS, **app_options.pop("post_cli_context", {})}, **app_options)
    config = DeployConfig.from_context(app.node)
    stack = BatchinferStack(
        app,
        "Batchinfer",
        stack_name=config.prefix,
        description="batchinfer: batch image classification on AWS Step Functions",
        config=config,
    )
    # Settings that cannot work fail in DeployConfig; what only the account can tell is a warning here.
    for warning in capacity_plan(config).warnings:
        cdk.Annotations.of(stack).add_warning_v2("batchinfer:capacity", warning)
    cdk.Tags.of(app).add("project", "batchinfer")
    cdk.Tags.of(app).add("stage", config.stage)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


def capacity_plan(config: DeployConfig) -> capacity.Plan:
    """The plan of `plan_images` for this deployment, at the default seconds per batch and AWS's default quotas
    (`batchinfer plan --stack` reads the account's own and the served model's)."""
    return capacity.plan(config.deployment(), config.plan_images)


def main() -> None:
    app, _ = build_app()
    # stderr: CDK prints it, and keeps stdout for the template.
    print("\n".join(capacity.plan_lines(capacity_plan(DeployConfig.from_context(app.node)))), file=sys.stderr)
    app.synth()


if __name__ == "__main__":
    main()
