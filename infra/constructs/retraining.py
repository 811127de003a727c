"""Retraining: the TrainingHook and EvaluateCandidate container functions, the SageMaker training
hook's execution role, and what the state machine needs to run the retraining branch; and PublishModel,
the other function of the training image, which makes a version of a model brought from outside."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from contract.resource_spec import (
    DEFINITION_PARAMETERS,
    FUNCTION_LIMITS,
    LABELS_PREFIX,
    MODELS_PREFIX,
    RUNS_PREFIX,
    STAGING_PREFIX,
)
from infra.acknowledgements import (
    LOG_STREAMS_REASON,
    XRAY_REASON,
    acknowledge,
    log_streams_finding,
    object_prefix_finding,
    object_prefix_reason,
)
from infra.config import ECR_IMAGE_URI, DeployConfig
from infra.constructs.functions import allow, function_log_group, function_role
from infra.constructs.inference import container_function
from infra.constructs.storage import Storage

TRAINING_HOOK = "TrainingHook"
EVALUATE_CANDIDATE = "EvaluateCandidate"
PUBLISH_MODEL = "PublishModel"
# The definition names each training job batchinfer-<model_name>-<candidate version>.
TRAINING_JOB_PREFIX = "batchinfer-"
# The rule Step Functions manages to learn when a training job it waits for (.sync) ends.
SAGEMAKER_SYNC_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
SAGEMAKER_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class Retraining(Construct):
    """The built-in training hook is the TrainingHook function, from the same image as ClassifyBatch.

    With `training_hook_function_arn` your own function takes its place (and TrainingHook is not
    created); with `training_hook=sagemaker` the state machine runs a SageMaker training job instead,
    as the execution role created here, on `training_image_uri`.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.storage = storage
        stack = cdk.Stack.of(self)
        bucket = storage.bucket
        self.functions: dict[str, lambda_.IFunction] = {}
        self.roles: dict[str, iam.Role] = {}

        if config.training_hook_function_arn:
            self.functions[TRAINING_HOOK] = lambda_.Function.from_function_arn(
                self, "UserTrainingHook", config.training_hook_function_arn
            )
        else:
            self.functions[TRAINING_HOOK] = self._container_function(
                TRAINING_HOOK, config.training_memory_mb, "fine-tunes the current model into a candidate"
            )
        self.functions[EVALUATE_CANDIDATE] = self._container_function(
            EVALUATE_CANDIDATE, config.evaluation_memory_mb, "scores the candidate and the current model"
        )
        # Both read the base model and the candidate (models/), the manifests (runs/) and the
        # labelled images they list (labels/) with GetObject, and write the candidate version's
        # model.keras, labels.json and metrics.json (models/) with PutObject. EvaluateCandidate also
        # reads a SageMaker job's model.tar.gz, under runs/training/. ListBucket makes a
        # missing file a 404 (metrics.json is optional) rather than an AccessDenied.
        for role in (r for name, r in self.roles.items() if name != PUBLISH_MODEL):
            allow(
                role,
                ["s3:GetObject"],
                [bucket.arn_for_objects(f"{prefix}*") for prefix in (LABELS_PREFIX, MODELS_PREFIX, RUNS_PREFIX)],
            )
            allow(role, ["s3:PutObject"], [bucket.arn_for_objects(f"{MODELS_PREFIX}*")])
            allow(role, ["s3:ListBucket"], [bucket.bucket_arn])
            acknowledge(
                role,
                {
                    object_prefix_finding(bucket, prefix): object_prefix_reason(prefix)
                    for prefix in (LABELS_PREFIX, MODELS_PREFIX, RUNS_PREFIX)
                },
            )

        self.functions[PUBLISH_MODEL] = self._container_function(
            PUBLISH_MODEL, config.evaluation_memory_mb, "makes a version of a model brought from outside"
        )
        self._grant_publish(self.roles[PUBLISH_MODEL])

        # Outside the registry: a job's output becomes a version only once it is evaluated.
        self.training_output_prefix = f"{RUNS_PREFIX}training/"
        self.training_image_uri = config.training_image_uri or (
            # Only a well-formed stand-in: the SageMaker hook is not used unless training_hook=sagemaker,
            # and that setting requires training_image_uri.
            f"{stack.account}.dkr.ecr.{stack.region}.{stack.url_suffix}/{config.prefix}-training:latest"
        )
        self.sagemaker_role = self._sagemaker_role(stack)

    def _grant_publish(self, role: iam.Role) -> None:
        """PublishModel reads the staged artifact and the registry (models/) and the held-out and calibration
        images (labels/), writes the version (models/), and removes every version of the staged upload
        (ListBucketVersions, DeleteObjectVersion) so that nothing of it stays under the registry."""
        bucket = self.storage.bucket
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{prefix}*") for prefix in (LABELS_PREFIX,
                                                                                           MODELS_PREFIX)])
        allow(role, ["s3:PutObject"], [bucket.arn_for_objects(f"{MODELS_PREFIX}*")])
        allow(role, ["s3:DeleteObjectVersion"], [bucket.arn_for_objects(f"{STAGING_PREFIX}*")])
        allow(role, ["s3:ListBucket", "s3:ListBucketVersions"], [bucket.bucket_arn])
        findings = {object_prefix_finding(bucket, prefix): object_prefix_reason(prefix)
                    for prefix in (LABELS_PREFIX, MODELS_PREFIX)}
        findings[object_prefix_finding(bucket, STAGING_PREFIX)] = (
            "An artifact is staged under models/_staging/<version>/, the version chosen at publish time; the "
            "step removes it when it is done.")
        acknowledge(role, findings)

    def _container_function(self, name: str, memory_mb: int, description: str) -> lambda_.IFunction:
        log_group = function_log_group(self, name)
        role = function_role(self, name, log_group)
        self.roles[name] = role
        function = container_function(
            self,
            name,
            config=self.config,
            storage=self.storage,
            role=role,
            log_group=log_group,
            memory_mb=memory_mb,
            timeout_seconds=FUNCTION_LIMITS[name].timeout_seconds,
            description=description,
        )
        acknowledge(
            role,
            {"AwsSolutions-IAM5[Resource::*]": XRAY_REASON, log_streams_finding(log_group): LOG_STREAMS_REASON},
        )
        return function

    def _sagemaker_role(self, stack: cdk.Stack) -> iam.Role:
        """The training job's role: read labels/, runs/ and models/, write under the job output
        prefix, log to SageMaker's log group, pull the training image. Created whatever the hook,
        so that the deployed definition names a real role."""
        bucket = self.storage.bucket
        role = iam.Role(
            self,
            "SageMakerTrainingRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="batchinfer SageMaker training jobs: labelled data in, a model.tar.gz out",
        )
        read_prefixes = (LABELS_PREFIX, RUNS_PREFIX, MODELS_PREFIX)
        # The job's input channel downloads labels/ (ListBucket with that prefix); its container
        # reads the manifests (runs/) and the base model (models/).
        allow(
            role,
            ["s3:ListBucket"],
            [bucket.bucket_arn],
            StringLike={"s3:prefix": [f"{prefix}*" for prefix in read_prefixes]},
        )
        allow(role, ["s3:GetObject"], [bucket.arn_for_objects(f"{prefix}*") for prefix in read_prefixes])
        allow(role, ["s3:PutObject"], [bucket.arn_for_objects(f"{self.training_output_prefix}*")])

        log_group = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{SAGEMAKER_LOG_GROUP}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        # One log stream per job instance: <job name>/algo-1-<timestamp>.
        log_streams = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{SAGEMAKER_LOG_GROUP}:log-stream:{TRAINING_JOB_PREFIX}*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        allow(role, ["logs:CreateLogGroup", "logs:DescribeLogStreams"], [log_group])
        allow(role, ["logs:CreateLogStream", "logs:PutLogEvents"], [log_streams])

        allow(
            role,
            ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
            [self._image_repository_arn(stack)],
        )
        allow(role, ["ecr:GetAuthorizationToken"], ["*"])

        findings = {object_prefix_finding(bucket, prefix): object_prefix_reason(prefix) for prefix in read_prefixes}
        findings[object_prefix_finding(bucket, self.training_output_prefix)] = (
            "SageMaker writes the job's model.tar.gz under <output path>/<job name>/output/; the job name "
            "holds the candidate version, chosen at run time."
        )
        findings["AwsSolutions-IAM5[Resource::*]"] = (
            "ecr:GetAuthorizationToken does not support resource-level permissions; the image pull itself "
            "is limited to the training image's repository."
        )
        findings[
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
            f"{SAGEMAKER_LOG_GROUP}:*]"
        ] = (
            f"SageMaker training jobs log to the shared {SAGEMAKER_LOG_GROUP} log group, which the "
            "first job in the account creates."
        )
        findings[
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:"
            f"{SAGEMAKER_LOG_GROUP}:log-stream:{TRAINING_JOB_PREFIX}*]"
        ] = "Log streams are named after the training job, whose name holds the candidate version."
        acknowledge(role, findings)
        return role

    def _image_repository_arn(self, stack: cdk.Stack) -> str:
        if self.config.training_image_uri:
            match = ECR_IMAGE_URI.match(self.config.training_image_uri)
            assert match is not None  # DeployConfig.validate checked it
            return f"arn:{stack.partition}:ecr:{match['region']}:{match['account']}:repository/{match['repository']}"
        return stack.format_arn(service="ecr", resource="repository", resource_name=f"{self.config.prefix}-training")

    def event_bus_arn(self) -> str:
        name = self.config.event_bus_name
        if name.startswith("arn:"):
            return name
        return cdk.Stack.of(self).format_arn(service="events", resource="event-bus", resource_name=name)

    def definition_parameters(self) -> dict[str, str]:
        """Values of the definition's placeholders that are not function ARNs."""
        bucket = self.storage.bucket.bucket_name
        values = {
            "EventBusName": self.config.event_bus_name,
            "SageMakerRoleArn": self.sagemaker_role.role_arn,
            "TrainingImageUri": self.training_image_uri,
            "TrainingInstanceType": self.config.training_instance_type,
            "LabelsUri": f"s3://{bucket}/{LABELS_PREFIX}",
            "TrainingOutputUri": f"s3://{bucket}/{self.training_output_prefix}",
        }
        assert set(values) == set(DEFINITION_PARAMETERS), "a placeholder of the definition has no value"
        return values

    def grant_state_machine(self, role: iam.Role) -> None:
        """The state machine announces the outcome (PutEvents); with the SageMaker hook it also
        starts, watches and stops training jobs (the .sync integration) and passes them their role."""
        stack = cdk.Stack.of(self)
        role.add_to_policy(iam.PolicyStatement(actions=["events:PutEvents"], resources=[self.event_bus_arn()]))
        if self.config.training_hook != "sagemaker":
            return
        jobs = stack.format_arn(service="sagemaker", resource="training-job", resource_name=f"{TRAINING_JOB_PREFIX}*")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",  # in the documented policy of the .sync integration
                ],
                resources=[jobs],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[stack.format_arn(service="events", resource="rule", resource_name=SAGEMAKER_SYNC_RULE)],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.sagemaker_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        acknowledge(
            role,
            {
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:<AWS::AccountId>:"
                f"training-job/{TRAINING_JOB_PREFIX}*]": (
                    "Each retraining run starts a training job named after its candidate version, chosen "
                    "at run time; the grant is limited to batchinfer's job names."
                )
            },
        )
