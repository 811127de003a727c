"""Analytics: the runs' result files as Glue tables for Athena, and a workgroup to query them.

The tables read the index files under results-index/<table>/ (one per run, written by WriteRunResults):
Hive symlink manifests that list the run's JSONL files. Athena so reads every run's results and nothing
else under runs/ (the manifests, the ResultWriter's files), with no crawler and no partition to add per run.
Their columns come from contract/results.py, the definition the JSONL writer uses.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from contract.resource_spec import RUNS_PREFIX
from contract.results import FIELDS_BY_TABLE, RESULTS_FOLDER, RESULTS_INDEX_PREFIX, index_prefix
from infra.acknowledgements import acknowledge, logical_id, object_prefix_finding
from infra.config import DeployConfig
from infra.constructs.storage import Storage

SYMLINK_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.SymlinkTextInputFormat"
TEXT_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
QUERY_RESULTS_DAYS = 30


def glue_database_name(prefix: str) -> str:
    """Glue names are lower case, letters, digits and underscores."""
    return "".join(c if c.isalnum() else "_" for c in prefix.lower()) + "_results"


class Analytics(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        bucket = storage.bucket
        self.database_name = glue_database_name(config.prefix)
        database = glue.CfnDatabase(
            self, "Database", catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name, description="batchinfer: every run's predictions and failures"),
        )
        self.tables: dict[str, glue.CfnTable] = {}
        for table, fields in FIELDS_BY_TABLE.items():
            resource = glue.CfnTable(
                self, f"{table.capitalize()}Table", catalog_id=stack.account, database_name=self.database_name,
                table_input=glue.CfnTable.TableInputProperty(
                    name=table,
                    description=f"batchinfer {table}: runs/<run>/{RESULTS_FOLDER}, listed by {index_prefix(table)}",
                    table_type="EXTERNAL_TABLE",
                    parameters={"classification": "json", "EXTERNAL": "TRUE"},
                    storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                        columns=[glue.CfnTable.ColumnProperty(name=f.name, type=f.athena, comment=f.description)
                                 for f in fields],
                        location=f"s3://{bucket.bucket_name}/{index_prefix(table)}",
                        input_format=SYMLINK_INPUT_FORMAT,
                        output_format=TEXT_OUTPUT_FORMAT,
                        serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=JSON_SERDE),
                    ),
                ),
            )
            resource.add_dependency(database)
            self.tables[table] = resource

        self.query_results = s3.Bucket(
            self, "QueryResultsBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=storage.access_logs,
            server_access_logs_prefix="query-results-bucket/",
            lifecycle_rules=[s3.LifecycleRule(id="expire-query-results",
                                              expiration=cdk.Duration.days(QUERY_RESULTS_DAYS))],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.workgroup_name = f"{config.prefix}-results"
        self.workgroup = athena.CfnWorkGroup(
            self, "WorkGroup", name=self.workgroup_name,
            description="batchinfer: queries of the runs' result files",
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.query_results.bucket_name}/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"),
                ),
            ),
        )
        self.policy = self._query_policy(stack, storage)

    def _query_policy(self, stack: cdk.Stack, storage: Storage) -> iam.ManagedPolicy:
        """What an analyst needs to query the results in this workgroup, and nothing else: attach it to
        their role or group."""
        bucket = storage.bucket
        workgroup_arn = stack.format_arn(service="athena", resource="workgroup", resource_name=self.workgroup_name)
        catalog = stack.format_arn(service="glue", resource="catalog")
        database = stack.format_arn(service="glue", resource="database", resource_name=self.database_name)
        tables = [stack.format_arn(service="glue", resource="table", resource_name=f"{self.database_name}/{t}")
                  for t in self.tables]
        policy = iam.ManagedPolicy(
            self, "QueryPolicy",
            description="batchinfer: query the runs' predictions and failures with Athena (its workgroup only)",
            statements=[
                iam.PolicyStatement(
                    actions=["athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults",
                             "athena:StopQueryExecution", "athena:GetWorkGroup"],
                    resources=[workgroup_arn]),
                iam.PolicyStatement(actions=["glue:GetDatabase", "glue:GetTable", "glue:GetTables",
                                             "glue:GetPartitions"],
                                    resources=[catalog, database, *tables]),
                iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn],
                                    conditions={"StringLike": {"s3:prefix": [f"{RUNS_PREFIX}*",
                                                                             f"{RESULTS_INDEX_PREFIX}*"]}}),
                iam.PolicyStatement(actions=["s3:GetObject"],
                                    resources=[bucket.arn_for_objects(f"{RUNS_PREFIX}*/{RESULTS_FOLDER}*"),
                                               bucket.arn_for_objects(f"{RESULTS_INDEX_PREFIX}*")]),
                iam.PolicyStatement(actions=["s3:GetBucketLocation", "s3:ListBucket"],
                                    resources=[self.query_results.bucket_arn]),
                iam.PolicyStatement(actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                                             "s3:ListMultipartUploadParts"],
                                    resources=[self.query_results.arn_for_objects("*")]),
            ],
        )
        acknowledge(policy, {
            object_prefix_finding(bucket, f"{RUNS_PREFIX}*/{RESULTS_FOLDER}"): (
                "Only the runs' result files; the run in the key is not known in advance."),
            object_prefix_finding(bucket, RESULTS_INDEX_PREFIX): (
                "Only the tables' index files, one per run, named by the run."),
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.query_results)}.Arn>/*]": (
                "Athena writes each query's results under a generated name in this bucket, which holds "
                "nothing else."),
        })
        return policy

