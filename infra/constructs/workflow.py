"""Workflow: the state machine, deployed from workflow/definition.asl.json with its placeholders filled."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from contract.resource_spec import RUNS_PREFIX, function_arn_placeholder
from infra.acknowledgements import acknowledge, object_prefix_finding, object_prefix_reason
from infra.config import DeployConfig
from infra.constructs.storage import Storage
from workflow.definition import definition_text


class Workflow(Construct):
    """A STANDARD state machine with full logging and X-Ray; its Distributed Map runs EXPRESS children.

    The definition goes into the template inline (DefinitionString + DefinitionSubstitutions),
    read from the one file the local engine also runs, so that cfn-lint and the tests see it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        storage: Storage,
        functions: dict[str, lambda_.IFunction],
        parameters: dict[str, str],
    ) -> None:
        """`functions` fill the definition's function ARN placeholders, `parameters` the others."""
        super().__init__(scope, construct_id)
        self.state_machine_name = config.prefix
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{config.prefix}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.role = self._role(storage, functions)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(definition_text()),
            definition_substitutions={
                **{function_arn_placeholder(name): fn.function_arn for name, fn in functions.items()},
                **parameters,
            },
            role=self.role,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=True,
        )
        self._acknowledge_role_findings(storage)

    def _own_arn(self, resource: str, resource_name: str) -> str:
        # The role needs the state machine's own ARN (the Distributed Map starts child executions
        # of it); taking it from the name, not the resource, avoids a dependency cycle.
        return cdk.Stack.of(self).format_arn(
            service="states",
            resource=resource,
            resource_name=resource_name,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )

    def _role(self, storage: Storage, functions: dict[str, lambda_.IFunction]) -> iam.Role:
        """The state machine's role: its functions, the run manifests, its own child executions."""
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="batchinfer state machine: its functions, the run manifests, its own child runs, "
            "the retraining outcome event and hook",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[fn.function_arn for fn in functions.values()],
            )
        )
        role.add_to_policy(  # the ItemReader reads the manifest; the ResultWriter writes the results
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"],
                resources=[storage.bucket.arn_for_objects(f"{RUNS_PREFIX}*")],
            )
        )
        role.add_to_policy(  # the Distributed Map runs its children as executions of this machine
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[self._own_arn("stateMachine", self.state_machine_name)]
            )
        )
        # RedriveExecution: an operator (or the console) redrives a failed run, and with it the Map
        # Run's failed children, which runs as this role.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:StopExecution", "states:RedriveExecution"],
                resources=[self._own_arn("execution", f"{self.state_machine_name}:*")],
            )
        )
        return role

    def _acknowledge_role_findings(self, storage: Storage) -> None:
        acknowledge(
            self.role,
            {
                "AwsSolutions-IAM5[Resource::*]": (
                    "CloudWatch Logs log delivery (logs:CreateLogDelivery and friends) and X-Ray "
                    "(xray:PutTraceSegments and friends) do not support resource-level permissions; CDK "
                    "adds them for logging and tracing."
                ),
                object_prefix_finding(storage.bucket, RUNS_PREFIX): (
                    object_prefix_reason(RUNS_PREFIX) + " The manifest key holds the execution name."
                ),
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
                f"execution:{self.state_machine_name}:*]": (
                    "The Distributed Map describes and stops the child executions it starts; their names "
                    "are generated, and the grant is limited to executions of this state machine."
                ),
            },
        )
