"""Triggers: the scoring and retraining schedules, and S3 uploads → EventBridge → SQS → Pipe."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_pipes as pipes
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from contract.resource_spec import SQS_MESSAGE_BYTES, upload_event_pattern
from infra.config import DeployConfig
from infra.constructs.storage import Storage


class Triggers(Construct):
    """Every way a run starts, besides an operator's StartExecution.

    Uploads are micro-batched: the pipe starts one execution per batch of up to
    `pipe_batch_size` events (or whatever arrived within `pipe_window_seconds`), and the state
    machine takes that raw array of SQS records as its input.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        storage: Storage,
        state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        time_zone = cdk.TimeZone.of(config.time_zone)
        self.score_schedule = self._schedule(
            "ScoreSchedule", "batchinfer: score the image versions that are new since the last run",
            config.score_schedule, time_zone, state_machine, "score",
        )
        self.retrain_schedule = self._schedule(
            "RetrainSchedule", "batchinfer: run the retraining branch", config.retrain_schedule, time_zone,
            state_machine, "retrain",
        )
        self.dead_letter_queue, self.queue = self._upload_queues()
        self.rule = self._uploads_rule(storage)
        self.pipe_role = self._pipe_role(state_machine)
        self.pipe = self._uploads_pipe(config, state_machine)

    def _schedule(self, schedule_id: str, description: str, expression: str, time_zone: cdk.TimeZone,
                  state_machine: sfn.IStateMachine, mode: str) -> scheduler.Schedule:
        return scheduler.Schedule(
            self,
            schedule_id,
            description=description,
            schedule=scheduler.ScheduleExpression.expression(expression, time_zone),
            target=scheduler_targets.StepFunctionsStartExecution(
                state_machine, input=scheduler.ScheduleTargetInput.from_object({"mode": mode})
            ),
        )

    def _upload_queues(self) -> tuple[sqs.Queue, sqs.Queue]:
        """The upload events' queue and its dead-letter queue."""
        dead_letter_queue = sqs.Queue(
            self,
            "UploadEventsDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        queue = sqs.Queue(
            self,
            "UploadEventsQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.minutes(5),
            retention_period=cdk.Duration.days(4),
            # Explicit, from the resource spec, so that the embedded engine's queue has the same limit.
            max_message_size_bytes=SQS_MESSAGE_BYTES,
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letter_queue, max_receive_count=5),
        )
        return dead_letter_queue, queue

    def _uploads_rule(self, storage: Storage) -> events.Rule:
        # The same pattern the local engine's rule uses.
        pattern: dict[str, Any] = upload_event_pattern(storage.bucket.bucket_name)
        return events.Rule(
            self,
            "UploadsRule",
            description="batchinfer: images uploaded under incoming/ go to the upload-events queue",
            event_pattern=events.EventPattern(
                source=pattern["source"], detail_type=pattern["detail-type"], detail=pattern["detail"]
            ),
            targets=[events_targets.SqsQueue(self.queue)],
        )

    def _pipe_role(self, state_machine: sfn.IStateMachine) -> iam.Role:
        role = iam.Role(
            self,
            "PipeRole",
            assumed_by=iam.ServicePrincipal(
                "pipes.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": cdk.Stack.of(self).account}},
            ),
            description="batchinfer pipe: read the upload-events queue, start the state machine",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                resources=[self.queue.queue_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[state_machine.state_machine_arn])
        )
        return role

    def _uploads_pipe(self, config: DeployConfig, state_machine: sfn.IStateMachine) -> pipes.CfnPipe:
        pipe = pipes.CfnPipe(
            self,
            "UploadsPipe",
            description="batchinfer: one execution per batch of uploads",
            role_arn=self.pipe_role.role_arn,
            source=self.queue.queue_arn,
            source_parameters=pipes.CfnPipe.PipeSourceParametersProperty(
                sqs_queue_parameters=pipes.CfnPipe.PipeSourceSqsQueueParametersProperty(
                    batch_size=config.pipe_batch_size,
                    maximum_batching_window_in_seconds=config.pipe_window_seconds,
                )
            ),
            target=state_machine.state_machine_arn,
            target_parameters=pipes.CfnPipe.PipeTargetParametersProperty(
                step_function_state_machine_parameters=pipes.CfnPipe.PipeTargetStateMachineParametersProperty(
                    invocation_type="FIRE_AND_FORGET"  # the only type a STANDARD state machine accepts
                )
            ),
        )
        # The pipe checks its role's permissions when it is created.
        policy = self.pipe_role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            pipe.node.add_dependency(policy)
        return pipe
