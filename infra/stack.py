"""The batchinfer stack: it composes the constructs and publishes what the CLI reads."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from contract.resource_spec import FUNCTIONS, MODELS_PREFIX, TABLES
from infra.config import DeployConfig
from infra.constructs.alarms import Alarms
from infra.constructs.analytics import Analytics
from infra.constructs.dashboard import Dashboard
from infra.constructs.functions import CLASSIFY_BATCH, Functions
from infra.constructs.inference import Inference
from infra.constructs.retraining import Retraining
from infra.constructs.storage import Storage
from infra.constructs.triggers import Triggers
from infra.constructs.workflow import Workflow


class BatchinferStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        storage = Storage(self, "Storage", warm_writes=config.deployment().warm_writes)
        inference = Inference(self, "Inference", config=config, storage=storage)
        functions = Functions(self, "Functions", config=config, storage=storage)
        retraining = Retraining(self, "Retraining", config=config, storage=storage)
        by_name = {**functions.functions, CLASSIFY_BATCH: inference.function, **retraining.functions}
        workflow = Workflow(
            self,
            "Workflow",
            config=config,
            storage=storage,
            functions={name: by_name[name] for name in FUNCTIONS},
            parameters=retraining.definition_parameters(),
        )
        retraining.grant_state_machine(workflow.role)
        triggers = Triggers(self, "Triggers", config=config, storage=storage, state_machine=workflow.state_machine)
        Alarms(
            self,
            "Alarms",
            config=config,
            state_machine=workflow.state_machine,
            dead_letter_queue=triggers.dead_letter_queue,
        )
        Dashboard(
            self,
            "Dashboard",
            config=config,
            classify_function=inference.function,
            state_machine=workflow.state_machine,
            dead_letter_queue=triggers.dead_letter_queue,
            pipe=triggers.pipe,
        )

        # The CLI finds the deployment by these output ids.
        cdk.CfnOutput(self, "StateMachineArn", value=workflow.state_machine.state_machine_arn)
        cdk.CfnOutput(self, "BucketName", value=storage.bucket.bucket_name)
        for spec in TABLES:
            cdk.CfnOutput(self, f"{spec.logical_id}Name", value=storage.table(spec).table_name)
        analytics = Analytics(self, "Analytics", config=config, storage=storage)
        cdk.CfnOutput(self, "AthenaWorkGroup", value=analytics.workgroup_name)
        cdk.CfnOutput(self, "GlueDatabase", value=analytics.database_name)
        cdk.CfnOutput(self, "QueryPolicyArn", value=analytics.policy.managed_policy_arn)
        cdk.CfnOutput(self, "QueueUrl", value=triggers.queue.queue_url)
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=triggers.dead_letter_queue.queue_url)
        # The registry the functions serve from: `models approve/promote/history` work on it.
        cdk.CfnOutput(self, "ModelRegistry",
                      value=f"s3://{storage.bucket.bucket_name}/{MODELS_PREFIX}{config.model_name}")
