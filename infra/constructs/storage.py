"""Storage: the private, versioned images bucket (with its access-log bucket) and the tables."""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from contract.resource_spec import RUNS_PREFIX, TABLES, KeyAttribute, TableSpec
from contract.results import RESULTS_INDEX_PREFIX

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
BUCKET_LOGICAL_ID = "ImagesBucket"
INGEST_QUEUE_LOGICAL_ID = "IngestQueue"


def _attribute(key: KeyAttribute) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=key.name, type=_ATTRIBUTE_TYPES[key.type])


class Storage(Construct):
    """Images, manifests and models in one bucket; predictions, counts, failures, run state in tables.

    Everything here holds data, so it is retained when the stack is deleted, and its logical ids
    are pinned (bucket: ImagesBucket, tables: the spec's logical_id) so that a refactoring of the
    construct tree never replaces them.
    """

    def __init__(self, scope: Construct, construct_id: str, *, runs_expire_days: int = 30,
                 warm_writes: Mapping[str, float] | None = None) -> None:
        super().__init__(scope, construct_id)

        self.access_logs = s3.Bucket(
            self,
            "AccessLogsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,  # the only encryption server access logs support
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=cdk.Duration.days(365))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.bucket = s3.Bucket(
            self,
            "ImagesBucket",
            versioned=True,  # a new upload of a key is a new version, and is scored
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="images-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-run-manifests",
                    prefix=RUNS_PREFIX,
                    expiration=cdk.Duration.days(runs_expire_days),
                    noncurrent_version_expiration=cdk.Duration.days(1),
                ),
                # The Glue tables' index files go a day before the result files they list, so that a
                # query never meets an index naming a file that has expired.
                s3.LifecycleRule(
                    id="expire-results-index",
                    prefix=RESULTS_INDEX_PREFIX,
                    expiration=cdk.Duration.days(max(1, runs_expire_days - 1)),
                    noncurrent_version_expiration=cdk.Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=cdk.Duration.days(365),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(7),
                ),
            ],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        _pin_logical_id(self.bucket, BUCKET_LOGICAL_ID)
        # Object Created events start scoring through the pipe. Set on the bucket resource itself:
        # `event_bridge_enabled=True` would do it through CDK's notifications custom resource,
        # an extra Lambda function with an AWS managed policy, for a setting CloudFormation has.
        bucket_resource = self.bucket.node.default_child
        assert isinstance(bucket_resource, s3.CfnBucket)
        bucket_resource.add_property_override(
            "NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled", True
        )

        self.tables: dict[str, dynamodb.Table] = {}
        for spec in TABLES:
            self.tables[spec.logical_id] = self._table(spec, (warm_writes or {}).get(spec.logical_id))

        # The ingest ledger's feed: every upload event, kept until a score run has moved it into the
        # ledger. 14 days (SQS's most) so that a week of failed nightly runs loses no event.
        self.ingest_dead_letter_queue = sqs.Queue(
            self,
            "IngestDeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self.ingest_queue = sqs.Queue(
            self,
            "IngestQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.minutes(5),
            retention_period=cdk.Duration.days(14),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.ingest_dead_letter_queue, max_receive_count=10),
        )
        _pin_logical_id(self.ingest_queue, INGEST_QUEUE_LOGICAL_ID)

    def _table(self, spec: TableSpec, warm_writes: float | None = None) -> dynamodb.Table:
        # Pre-warmed (the deploy config's warm throughput, from the capacity plan): the table and its indexes
        # serve that many write units a second from the start; else a new on-demand table's 4,000.
        warm = dynamodb.WarmThroughput(write_units_per_second=warm_writes) if warm_writes else None
        table = dynamodb.Table(
            self,
            spec.logical_id,
            partition_key=_attribute(spec.partition_key),
            sort_key=_attribute(spec.sort_key) if spec.sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=cdk.RemovalPolicy.RETAIN,
            warm_throughput=warm,
        )
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_attribute(index.partition_key),
                sort_key=_attribute(index.sort_key) if index.sort_key else None,
                projection_type=dynamodb.ProjectionType.ALL,
                warm_throughput=warm,
            )
        _pin_logical_id(table, spec.logical_id)
        return table

    def table(self, spec: TableSpec) -> dynamodb.Table:
        return self.tables[spec.logical_id]


def _pin_logical_id(construct: Construct, logical_id: str) -> None:
    resource = construct.node.default_child
    assert isinstance(resource, cdk.CfnResource)
    resource.override_logical_id(logical_id)
