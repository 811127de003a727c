"""Alarms: failed or timed-out runs, and upload events that could not start a run."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import DeployConfig


class Alarms(Construct):
    """Each alarm notifies one encrypted SNS topic; `alarm_email`, when set, is subscribed to it
    (the address must confirm the subscription). Other endpoints can subscribe to the topic too."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        state_machine: sfn.StateMachine,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        key = kms.Key(
            self,
            "TopicKey",
            description="batchinfer alarm topic",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # CloudWatch publishes to an encrypted topic only with a customer managed key it may use.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        self.topic = sns.Topic(self, "Topic", display_name=f"{config.prefix} alarms", master_key=key, enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        action = cloudwatch_actions.SnsAction(self.topic)

        five_minutes = cdk.Duration.minutes(5)
        at_least_one = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD

        def new_alarm(alarm_id: str, description: str, metric: cloudwatch.IMetric, threshold: int,
                  comparison: cloudwatch.ComparisonOperator = at_least_one) -> cloudwatch.Alarm:
            return cloudwatch.Alarm(
                self, alarm_id, alarm_description=description, metric=metric, threshold=threshold,
                evaluation_periods=1, comparison_operator=comparison,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )

        self.alarms = [
            new_alarm("ExecutionsFailed", "A batchinfer run failed; the Step Functions console shows where and why.",
                  state_machine.metric_failed(period=five_minutes, statistic="Sum"), 1),
            new_alarm("ExecutionsTimedOut", "A batchinfer run timed out.",
                  state_machine.metric_timed_out(period=five_minutes, statistic="Sum"), 1),
            new_alarm("UploadEventsDeadLettered",
                  "Upload events could not start a run and are in the dead-letter queue; "
                  "their images are scored by the next scheduled run.",
                  dead_letter_queue.metric_approximate_number_of_messages_visible(
                      period=five_minutes, statistic="Maximum"),
                  0, cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD),
        ]
        for alarm in self.alarms:
            alarm.add_alarm_action(action)
