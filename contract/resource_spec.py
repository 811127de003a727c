"""One source of truth for resource shapes: table keys and indexes, bucket prefixes, placeholders.

Both the CDK stack and the embedded engine build their resources from this module, and a test
holds the synthesized template against it. It imports nothing from aws_cdk on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KeyAttribute:
    name: str
    type: str = "S"  # DynamoDB scalar type: S, N or B


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition_key: KeyAttribute
    sort_key: KeyAttribute | None = None


@dataclass(frozen=True)
class TableSpec:
    """A DynamoDB table; `setting` is the environment variable that carries its name."""

    logical_id: str
    setting: str
    partition_key: KeyAttribute
    sort_key: KeyAttribute | None = None
    indexes: tuple[IndexSpec, ...] = field(default_factory=tuple)

    def key_schema(self) -> list[dict[str, str]]:
        schema = [{"AttributeName": self.partition_key.name, "KeyType": "HASH"}]
        if self.sort_key:
            schema.append({"AttributeName": self.sort_key.name, "KeyType": "RANGE"})
        return schema

    def attribute_definitions(self) -> list[dict[str, str]]:
        attributes: dict[str, str] = {}
        keys = [self.partition_key, self.sort_key]
        for index in self.indexes:
            keys += [index.partition_key, index.sort_key]
        for key in keys:
            if key is not None:
                attributes[key.name] = key.type
        return [{"AttributeName": n, "AttributeType": t} for n, t in sorted(attributes.items())]

    def global_secondary_indexes(self) -> list[dict[str, object]]:
        indexes: list[dict[str, object]] = []
        for index in self.indexes:
            schema = [{"AttributeName": index.partition_key.name, "KeyType": "HASH"}]
            if index.sort_key:
                schema.append({"AttributeName": index.sort_key.name, "KeyType": "RANGE"})
            indexes.append(
                {"IndexName": index.name, "KeySchema": schema, "Projection": {"ProjectionType": "ALL"}}
            )
        return indexes


# Predictions, one item per kind of fact about an image version:
#   sk = "MODEL#<model version>"  a prediction made by that model version
#   sk = "COUNTED"                the prediction that entered the daily counts (exactly one)
#   sk = "FAILED"                 the version failed; replay takes it from the failures table
# `date_shard` ("<date>#<nn>") spreads one day's rows over several index partitions.
PREDICTIONS = TableSpec(
    logical_id="PredictionsTable",
    setting="BATCHINFER_PREDICTIONS_TABLE",
    partition_key=KeyAttribute("image_id"),
    sort_key=KeyAttribute("sk"),
    indexes=(IndexSpec("by_date", KeyAttribute("date_shard"), KeyAttribute("image_id")),),
)

# Daily counts: sharded counters pk="<date>#<nn>", sk=<class>, and the per-day rollup that the
# aggregation step writes, pk="<date>", sk=<class>.
DAILY_COUNTS = TableSpec(
    logical_id="DailyCountsTable",
    setting="BATCHINFER_COUNTS_TABLE",
    partition_key=KeyAttribute("pk"),
    sort_key=KeyAttribute("sk"),
)

# Failures, kept with the run that saw them: pk=<run id>, sk=<image id>.
FAILURES = TableSpec(
    logical_id="FailuresTable",
    setting="BATCHINFER_FAILURES_TABLE",
    partition_key=KeyAttribute("run_id"),
    sort_key=KeyAttribute("image_id"),
)

# Run state: listing checkpoints and per-batch results of each run.
RUN_STATE = TableSpec(
    logical_id="RunStateTable",
    setting="BATCHINFER_STATE_TABLE",
    partition_key=KeyAttribute("pk"),
    sort_key=KeyAttribute("sk"),
)

# The ingest ledger: image versions known to exist and not yet seen scored or failed, fed by the
# upload events (and by the reconciliation), drained by the nightly score run. pk="<nn>", one of
# LEDGER_SHARDS partitions chosen by a stable hash of the image id, so no key is hot; sk=<image id>.
INGEST_LEDGER = TableSpec(
    logical_id="IngestLedgerTable",
    setting="BATCHINFER_LEDGER_TABLE",
    partition_key=KeyAttribute("shard"),
    sort_key=KeyAttribute("image_id"),
)
LEDGER_SHARDS = 16

TABLES: tuple[TableSpec, ...] = (PREDICTIONS, DAILY_COUNTS, FAILURES, RUN_STATE, INGEST_LEDGER)

# The upload events' second queue: EventBridge delivers every Object Created event both to the
# pipe's queue (score now) and to this one, which the score run moves into the ingest ledger.
INGEST_QUEUE_SETTING = "BATCHINFER_INGEST_QUEUE_URL"

# Bucket layout. Uploads land under IMAGES_PREFIX; everything else is written by batchinfer.
IMAGES_PREFIX = "incoming/"
RUNS_PREFIX = "runs/"
MODELS_PREFIX = "models/"
LABELS_PREFIX = "labels/"
# `batchinfer models publish` uploads an artifact here, models/_staging/<version>/<file>, for the PublishModel
# step, which removes it when it is done; a folder named with "_" is neither a model nor a version.
STAGING_PREFIX = f"{MODELS_PREFIX}_staging/"

# A model version's folder in the registry (models/<name>/<version>/) and the registry's pointer.
MODEL_FILE = "model.keras"
COMPILED_FILE = "model.tflite"  # the same model in TF-Lite form (fp32)
INT8_FILE = "model.int8.tflite"  # its full-integer int8 form, calibrated on the version's training images
# The forms a version can serve in, by the name metrics.json gives them under "serving".
SERVING_FILES = {"fp32": COMPILED_FILE, "int8": INT8_FILE}
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
# In a version's metrics.json: its accuracy on the newest held-out set, on which every version is scored,
# as {"set": <held-out manifest URI>, "images": n, "accuracy": a}.
SHARED_EVALUATION = "held_out_evaluation"
POINTER_FILE = "current.json"
# A version published for manual approval holds approval.json ({"status": pending|approved|rejected, "by",
# "at", "reason"?}); a version without one needs no approval. Every registry change is one object under
# HISTORY_FOLDER, so that two writers never rewrite the same file.
APPROVAL_FILE = "approval.json"
HISTORY_FOLDER = "_history"

# Names of the Lambda functions, as the local engine registers them and CDK suffixes them.
FUNCTIONS = {
    "ListNewVersions": "lambdas.handlers.list_new_versions.handler",
    "ReconcileVersions": "lambdas.handlers.reconcile_versions.handler",
    "BuildReplayManifest": "lambdas.handlers.build_replay_manifest.handler",
    "ClassifyBatch": "inference_image.handler.handler",
    "RecordBatchFailure": "lambdas.handlers.record_batch_failure.handler",
    "ReconcileBatches": "lambdas.handlers.reconcile_batches.handler",
    "WriteRunResults": "lambdas.handlers.write_run_results.handler",
    "AggregateDailyCounts": "lambdas.handlers.aggregate_daily_counts.handler",
    "CollectTrainingData": "lambdas.handlers.collect_training_data.handler",
    "TrainingHook": "inference_image.retrain_handlers.train",
    "EvaluateCandidate": "inference_image.retrain_handlers.evaluate",
    "PromoteIfBetter": "lambdas.handlers.promote_if_better.handler",
    "PublishModel": "inference_image.retrain_handlers.publish",
}

# These run TensorFlow: the container image from inference_image/, each with its own command.
CONTAINER_FUNCTIONS = ("ClassifyBatch", "TrainingHook", "EvaluateCandidate", "PublishModel")


@dataclass(frozen=True)
class FunctionLimits:
    """What a function is deployed with: CDK sets these, and the embedded engine enforces them."""

    memory_mb: int
    timeout_seconds: int


# Each function's default memory and timeout. The deploy config can change ClassifyBatch's memory and
# timeout and the retraining containers' memory (infra/config.py); its defaults are these.
FUNCTION_LIMITS: dict[str, FunctionLimits] = {
    # Moves a night of upload events into the ingest ledger within BATCHINFER_LISTING_BUDGET_SECONDS (600 s).
    "ListNewVersions": FunctionLimits(memory_mb=512, timeout_seconds=900),
    # Reads pages for BATCHINFER_RECONCILE_BUDGET_SECONDS (600 s), then hands over to its next invocation.
    "ReconcileVersions": FunctionLimits(memory_mb=512, timeout_seconds=900),
    "BuildReplayManifest": FunctionLimits(memory_mb=512, timeout_seconds=300),
    # ClassifyBatch and RecordBatchFailure run inside the Classify map's EXPRESS child, whose 5 minutes
    # include every Retry attempt of both: 3 attempts at 60 s, the backoffs, and RecordBatchFailure (a
    # few DynamoDB batch calls) at 30 s take at most 246 s (infra/config.py checks it at synth).
    # 1,769 MB (one vCPU): `make bench` measures the time per image at one vCPU and at two (3,008 MB) and
    # costs both; one vCPU cost less per image in its run (README, "Performance"). Its peak RSS at
    # batch 32 is under 400 MB.
    "ClassifyBatch": FunctionLimits(memory_mb=1769, timeout_seconds=60),
    "RecordBatchFailure": FunctionLimits(memory_mb=512, timeout_seconds=30),
    # Pages through the whole manifest after the Map.
    "ReconcileBatches": FunctionLimits(memory_mb=512, timeout_seconds=900),
    # Pages through the manifest and the run's failures, streaming them into the run's result files.
    "WriteRunResults": FunctionLimits(memory_mb=512, timeout_seconds=900),
    "AggregateDailyCounts": FunctionLimits(memory_mb=512, timeout_seconds=300),
    # Scans the predictions table for the low-confidence export.
    "CollectTrainingData": FunctionLimits(memory_mb=512, timeout_seconds=900),
    # 3,008 MB: what every account can deploy (new accounts are capped there until a quota increase);
    # with a raised quota, -c training_memory_mb=10240 trains faster (Lambda gives vCPUs with memory).
    "TrainingHook": FunctionLimits(memory_mb=3008, timeout_seconds=900),
    "EvaluateCandidate": FunctionLimits(memory_mb=3008, timeout_seconds=900),
    "PromoteIfBetter": FunctionLimits(memory_mb=512, timeout_seconds=300),
    # Unpacks an artifact of up to 1 GiB (lambdas/model_artifacts.py) in /tmp, converts it to fp32 and int8
    # TF-Lite and scores it on the held-out images: the retraining containers' memory and timeout.
    "PublishModel": FunctionLimits(memory_mb=3008, timeout_seconds=900),
}


# AWS's documented quotas that can fail a run; the embedded engine enforces each (docs/engine/index.md).
# Step Functions: input or output of a task, state or execution, as UTF-8 bytes.
STATES_PAYLOAD_BYTES = 256 * 1024
# An EXPRESS workflow (a Distributed Map's EXPRESS child) ends after this long, whatever its Tasks say.
EXPRESS_EXECUTION_SECONDS = 5 * 60
# A STANDARD execution fails once its history reaches this many events (a hard quota). A Distributed Map's
# children have histories of their own; a run's parent adds about HISTORY_EVENTS_PER_SLICE a slice (measured
# on the engine: tests/workflow/test_slices.py), so it continues in a new execution every SLICES_PER_EXECUTION
# slices, well inside the quota: 500 slices of 100,000 images is 50M images an execution.
STATES_HISTORY_EVENTS = 25_000
HISTORY_EVENTS_PER_SLICE = 30
SLICES_PER_EXECUTION = 500
# Lambda.
LAMBDA_MAX_TIMEOUT_SECONDS = 15 * 60
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10240
LAMBDA_REQUEST_BYTES = 6 * 1024 * 1024  # synchronous invocation request
LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024 + 100  # synchronous response: the "6291556 bytes" Lambda's error names
# DynamoDB.
DYNAMODB_ITEM_BYTES = 400 * 1024
DYNAMODB_TRANSACTION_ITEMS = 100
DYNAMODB_TRANSACTION_BYTES = 4 * 1024 * 1024
DYNAMODB_BATCH_WRITE_ITEMS = 25
DYNAMODB_BATCH_GET_KEYS = 100
# SQS: one message, body and attributes.
SQS_MESSAGE_BYTES = 256 * 1024

# AWS's documented throughput quotas, which the embedded engine can enforce (`--quota`, docs/engine/index.md).
# DynamoDB: each partition serves at most this many units a second (a write unit: 1 KB written, twice that in
# a transaction; a read unit: one strongly consistent read of 4 KB, or two eventually consistent ones).
DYNAMODB_PARTITION_WRITE_UNITS = 1000
DYNAMODB_PARTITION_READ_UNITS = 3000
# A new on-demand table sustains 4,000 write and 12,000 read units a second until it scales: four partitions.
DYNAMODB_NEW_TABLE_PARTITIONS = 4
# The account's default ceiling of one on-demand table (or index), reads and writes alike.
DYNAMODB_TABLE_UNITS = 40000
# S3: requests a second per partitioned prefix, above which S3 answers 503 SlowDown until it scales.
S3_PREFIX_WRITES = 3500  # PUT, COPY, POST, DELETE
S3_PREFIX_READS = 5500  # GET, HEAD
# Lambda: the account's concurrent executions in a Region by default (new accounts may have far less).
LAMBDA_ACCOUNT_CONCURRENCY = 1000

# Placeholders of the definition that are not function ARNs: the retraining outcome's event bus,
# and the SageMaker training hook (its role, image, instance type, the labels and output locations).
DEFINITION_PARAMETERS = (
    "EventBusName",
    "SageMakerRoleArn",
    "TrainingImageUri",
    "TrainingInstanceType",
    "LabelsUri",
    "TrainingOutputUri",
)


def function_arn_placeholder(function: str) -> str:
    """The ${Placeholder} in the ASL file that stands for a function's ARN."""
    return f"{function}FunctionArn"


def upload_event_pattern(bucket: str) -> dict[str, object]:
    """The EventBridge pattern of the S3 event path: Object Created under the images prefix."""
    return {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": IMAGES_PREFIX}]}},
    }


# The S3 event path's pipe: at most this many records start one execution, after at most this wait.
# 50 S3 event records (~2 KiB each with SQS attributes) keep an execution input far below 256 KiB.
PIPE_BATCH_SIZE = 50
PIPE_WINDOW_SECONDS = 20
