"""A run's result files: where they are and what a line holds, defined once.

The JSONL writer (lambdas/results.py), the Glue tables (infra/constructs/analytics.py) and the DuckDB
views of `batchinfer query` (operate/results_query.py) all take their columns from here.

Layout in the bucket:
    runs/<run>/results/predictions/<batch id>.jsonl   one line per image version the run scored
    runs/<run>/results/failures.jsonl                 one line per image version the run failed
    results-index/predictions/<run>.txt               the run's prediction files, one s3:// URI a line
    results-index/failures/<run>.txt                  the run's failures file
    runs/<run>/stopped.json                           a stopped run's summary: who stopped it, why, what it scored
The index files are Hive symlink manifests: the Glue tables read them (SymlinkTextInputFormat), so that
Athena reads only result files, never the manifests and ResultWriter files beside them under runs/<run>/,
with no crawler and no per-run DDL.
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.resource_spec import RUNS_PREFIX

RESULTS_INDEX_PREFIX = "results-index/"
RESULTS_FOLDER = "results/"  # under runs/<run>/
PREDICTION_FILES = RESULTS_FOLDER + "predictions/"  # under runs/<run>/
PREDICTIONS_TABLE = "predictions"
FAILURES_TABLE = "failures"


@dataclass(frozen=True)
class ResultField:
    name: str
    athena: str  # the Glue / Athena column type
    duckdb: str  # the DuckDB column type
    description: str


def _text(name: str, description: str) -> ResultField:
    return ResultField(name, "string", "VARCHAR", description)


PREDICTION_FIELDS: tuple[ResultField, ...] = (
    _text("image_uri", "s3:// URI of the image version (with ?versionId=)"),
    _text("bucket", "bucket of the image"),
    _text("key", "key of the image"),
    _text("version_id", "S3 version id of the image"),
    _text("class", "the predicted class"),
    ResultField("confidence", "double", "DOUBLE", "probability of the predicted class"),
    ResultField("probabilities", "map<string,double>", "MAP(VARCHAR, DOUBLE)", "every class's probability, as kept"),
    ResultField("counted", "boolean", "BOOLEAN",
                "true when this prediction is the one the daily counts hold for the image version"),
    _text("model_version", "model version that made the prediction"),
    _text("runtime", "what ran the forward pass: litert-int8, litert-fp32 or keras"),
    _text("captured_at", "capture time (S3 LastModified), ISO 8601"),
    _text("date", "capture date in the deployment's time zone, YYYY-MM-DD"),
    _text("run", "the run that scored the image version"),
    _text("batch", "the batch of the run"),
)

FAILURE_FIELDS: tuple[ResultField, ...] = (
    _text("image_uri", "s3:// URI of the image version (with ?versionId=)"),
    _text("bucket", "bucket of the image"),
    _text("key", "key of the image"),
    _text("version_id", "S3 version id of the image"),
    _text("stage", "where it failed: read, decode, classify, write or batch"),
    _text("error_type", "the error's type"),
    _text("reason", "why, in words"),
    _text("run", "the run that failed the image version"),
    _text("batch", "the batch of the run"),
    _text("recorded_at", "when the failure was recorded, ISO 8601"),
)

FIELDS_BY_TABLE = {PREDICTIONS_TABLE: PREDICTION_FIELDS, FAILURES_TABLE: FAILURE_FIELDS}


def results_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/{RESULTS_FOLDER}"


def predictions_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/{PREDICTION_FILES}"


def prediction_part_key(run_id: str, batch_id: str) -> str:
    """One file per batch, named by the batch: a retried batch writes the same key again."""
    return f"{predictions_prefix(run_id)}{batch_id}.jsonl"


def failures_key(run_id: str) -> str:
    return f"{results_prefix(run_id)}failures.jsonl"


def index_prefix(table: str) -> str:
    return f"{RESULTS_INDEX_PREFIX}{table}/"


def index_key(table: str, run_id: str) -> str:
    return f"{index_prefix(table)}{run_id}.txt"


def stop_record_key(run_id: str) -> str:
    """Where `batchinfer stop` keeps a stopped run's summary (an aborted execution has no output)."""
    return f"{RUNS_PREFIX}{run_id}/stopped.json"
