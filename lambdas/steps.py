"""Each step's typed request and result. Every event is parsed here, with one form of error for a
malformed event; every result turns into exactly the dict the state machine reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import unquote_plus

from pydantic import ValidationError

from lambdas.records import BadRecord, Batch


def _quoted(names: tuple[str, ...]) -> str:
    quoted = [f"'{name}'" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _object_with(step: str, event: Any, required: tuple[str, ...], present: tuple[str, ...] = ()) -> dict[str, Any]:
    """The event as a dict that has every `required` field set and every `present` field at all."""
    if (not isinstance(event, dict) or not all(event.get(name) for name in required)
            or not all(name in event for name in present)):
        raise BadRecord(f"{step} needs an object with {_quoted(required + present)}")
    return event


class StepResult:
    """A result as the state machine reads it: its fields in order, optional ones left out when unset."""

    OMIT_WHEN_EMPTY: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        values = {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v) for k, v in values.items()}
        return {k: v for k, v in values.items() if k not in self.OMIT_WHEN_EMPTY or v}


# -- ListNewVersions and BuildReplayManifest ------------------------------------------------------
@dataclass(frozen=True)
class ObjectRef:
    """An object version named by an S3 event: no LastModified yet, it is read with HeadObject."""

    bucket: str
    key: str
    version_id: str


@dataclass(frozen=True)
class SliceProgress:
    """Where a run that drains the ledger slice by slice stands, as the slice before this one left it."""

    slice: int = 0  # slices listed so far
    run_batches: int = 0  # batches listed so far, all slices: the next slice's batch ids follow them
    run_images: int = 0
    already_done: int = 0  # versions found done by other runs, all slices
    notes: tuple[str, ...] = ()

    @classmethod
    def from_listing(cls, listing: Any) -> SliceProgress:
        """The previous slice's listing (the state's `listing`), or none for a run's first slice."""
        if listing is None:
            return cls()
        try:
            return cls(slice=int(listing["slice"]), run_batches=int(listing["run_batches"]),
                       run_images=int(listing["run_images"]), already_done=int(listing["already_done"]),
                       notes=tuple(str(n) for n in listing.get("notes") or ()))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BadRecord("the previous slice's 'listing' needs whole numbers 'slice', 'run_batches', "
                            "'run_images' and 'already_done'") from None


def _max_images(run_input: dict[str, Any]) -> int | None:
    value = run_input.get("max_images")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRecord(f"'max_images' must be a whole number above 0, not {value!r}")
    return value


def _continues(value: Any) -> tuple[str, int] | None:
    if value is None:
        return None
    if (not isinstance(value, dict) or not isinstance(value.get("run"), str) or not value["run"]
            or isinstance(value.get("part"), bool) or not isinstance(value.get("part"), int)):
        raise BadRecord("'continues' must be {\"run\": \"<first run id>\", \"part\": <whole number>}")
    return value["run"], value["part"]


@dataclass(frozen=True)
class ListNewVersionsRequest:
    run_id: str
    prefix: str | None = None
    objects: tuple[ObjectRef, ...] | None = None  # set when the run was started by S3 events
    rejected_events: tuple[str, ...] = ()
    max_images: int | None = None  # the caller's cap on the whole run (all slices); None drains the ledger
    previous: SliceProgress = field(default_factory=SliceProgress)
    # A run that continues another in a new execution (Step Functions' history quota): the first execution's
    # run id and this one's part number.
    continues: tuple[str, int] | None = None

    @classmethod
    def from_event(cls, event: Any) -> ListNewVersionsRequest:
        event = _object_with("ListNewVersions", event, ("run_id",))
        run_input = event.get("input") or {}
        if not isinstance(run_input, dict):
            raise BadRecord("the execution input must be a JSON object")
        prefix = run_input.get("prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise BadRecord("'prefix' must be a string")
        events = run_input.get("events")
        if events is None:
            return cls(run_id=str(event["run_id"]), prefix=prefix, max_images=_max_images(run_input),
                       previous=SliceProgress.from_listing(run_input.get("listing")),
                       continues=_continues(run_input.get("continues")))
        if not isinstance(events, list):
            raise BadRecord("'events' must be a list of S3 event records")
        objects, rejected = parse_s3_events(events)
        return cls(
            run_id=str(event["run_id"]), prefix=prefix, objects=tuple(objects), rejected_events=tuple(rejected)
        )


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "the event"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {problem['msg'].lower()}{more}"


def parse_s3_events(records: list[Any]) -> tuple[list[ObjectRef], list[str]]:
    """Object versions from SQS records carrying EventBridge "Object Created" events, read with
    Powertools' parser model of S3's EventBridge events.

    A record that is not such an event is set aside with a reason; the others go on.
    """
    from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

    objects: dict[tuple[str, str, str], ObjectRef] = {}
    rejected: list[str] = []
    for index, record in enumerate(records):
        try:
            body = record.get("body", record) if isinstance(record, dict) else record
            event = json.loads(body) if isinstance(body, str) else body
            if not isinstance(event, dict):
                raise ValueError("the body is not a JSON object")
            if event.get("detail-type") != "Object Created":
                raise ValueError(f"detail-type is {event.get('detail-type')!r}, not 'Object Created'")
            try:
                parsed = S3EventNotificationEventBridgeModel.model_validate(event)
            except ValidationError as error:
                raise ValueError(_first_problem(error)) from None
            bucket = parsed.detail.bucket.name
            raw_key = parsed.detail.object.key
            key = unquote_plus(raw_key) if "%" in raw_key else raw_key
            version_id = parsed.detail.object.version_id
            if not version_id:
                raise ValueError(f"s3://{bucket}/{key} has no version-id: is versioning on?")
        except (TypeError, ValueError) as error:  # json.JSONDecodeError and ValidationError are ValueErrors
            rejected.append(f"record {index}: not an S3 Object Created event ({error})")
            continue
        objects[(bucket, key, version_id)] = ObjectRef(bucket, key, version_id)
    return list(objects.values()), rejected


@dataclass(frozen=True)
class BuildReplayManifestRequest:
    run_id: str
    replay_of: str

    @classmethod
    def from_event(cls, event: Any) -> BuildReplayManifestRequest:
        event = _object_with("BuildReplayManifest", event, ("run_id",))
        run_input = event.get("input")
        if not isinstance(run_input, dict) or not isinstance(run_input.get("run"), str) or not run_input["run"]:
            raise BadRecord('replay needs the run to replay: {"mode": "replay", "run": "<run id>"}')
        return cls(run_id=str(event["run_id"]), replay_of=run_input["run"])


@dataclass
class ManifestResult(StepResult):
    """What ListNewVersions and BuildReplayManifest return: where the manifest is, and what was left out."""

    manifest_bucket: str
    manifest_key: str
    batches: int
    images: int
    max_concurrency: int
    already_done: int  # all slices so far
    checkpoint: dict[str, str] | None
    notes: list[str]  # all slices so far
    # A run drains the ledger a slice (one manifest, one Map Run) at a time: this slice's number, about how
    # many the run will take, whether another follows, and the run's batches and images so far.
    slice: int = 1
    slices: int = 1
    more: bool = False
    run_batches: int = 0
    run_images: int = 0
    # Set when the run goes on in a new execution after this slice: {"name": ..., "input": ...}.
    next_execution: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_batches = self.run_batches or self.batches
        self.run_images = self.run_images or self.images


ListNewVersionsResult = ManifestResult
BuildReplayManifestResult = ManifestResult


# -- ClassifyBatch and RecordBatchFailure -----------------------------------------------------------
@dataclass(frozen=True)
class ClassifyBatchRequest:
    run_id: str
    batch: Batch

    @classmethod
    def from_event(cls, event: Any) -> ClassifyBatchRequest:
        event = _object_with("ClassifyBatch", event, ("run_id",), ("batch",))
        return cls(run_id=str(event["run_id"]), batch=Batch.from_dict(event["batch"]))


@dataclass
class Seconds:
    read_decode: float
    inference: float
    total: float


@dataclass
class ClassifyBatchResult(StepResult):
    OMIT_WHEN_EMPTY = ("throttled",)

    batch_id: str
    model_version: str
    runtime: str  # what ran the forward pass: litert-int8, litert-fp32 or keras
    images: int
    written: int  # new prediction rows
    counted: int  # of the batch's versions, those this run counted (a retry's own earlier writes included)
    duplicates: int  # already written by this model version
    scored: int
    failed: int
    dates: list[str]
    failures: list[dict[str, str]]  # {"image_id", "stage", "reason"}
    seconds: Seconds
    # AWS requests the batch made that were throttled (and retried by the SDK), by service: {"dynamodb": n, ...}
    throttled: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordBatchFailureRequest:
    run_id: str
    batch: Batch
    error: Any  # the Catch's error output {"Error", "Cause"}

    @classmethod
    def from_event(cls, event: Any) -> RecordBatchFailureRequest:
        event = _object_with("RecordBatchFailure", event, ("run_id",), ("batch", "error"))
        return cls(run_id=str(event["run_id"]), batch=Batch.from_dict(event["batch"]), error=event.get("error"))


@dataclass
class RecordBatchFailureResult(StepResult):
    batch_id: str
    scored: int
    counted: int
    duplicates: int
    failed: int
    dates: list[str]
    error: str


# -- WriteRunResults (after the Classify map) ---------------------------------------------------------
@dataclass(frozen=True)
class WriteRunResultsRequest:
    run_id: str
    manifest_bucket: str
    manifest_key: str

    @classmethod
    def from_event(cls, event: Any) -> WriteRunResultsRequest:
        event = _object_with("WriteRunResults", event, ("run_id", "manifest_bucket", "manifest_key"))
        return cls(str(event["run_id"]), str(event["manifest_bucket"]), str(event["manifest_key"]))


@dataclass
class WriteRunResultsResult(StepResult):
    predictions: str  # s3:// prefix of the run's prediction files
    failures: str  # s3:// URI of failures.jsonl
    prediction_files: int
    filled_from_table: int  # files written here, for batches whose child died before writing its own
    failure_lines: int


# -- AggregateDailyCounts ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AggregateDailyCountsRequest:
    run_id: str
    mode: str = "score"
    checkpoint: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    already_done: int = 0
    slices: int = 1
    continued_in: str = ""  # the execution the run goes on in, when it continues

    @classmethod
    def from_event(cls, event: Any) -> AggregateDailyCountsRequest:
        event = _object_with("AggregateDailyCounts", event, ("run_id",))
        checkpoint = event.get("checkpoint")
        notes = event.get("notes") or []
        if (checkpoint is not None and not isinstance(checkpoint, dict)) or not isinstance(notes, list):
            raise BadRecord("AggregateDailyCounts needs 'checkpoint' as an object or null and 'notes' as a list")
        already_done = _whole_number("AggregateDailyCounts", event, "already_done", 0)
        slices = _whole_number("AggregateDailyCounts", event, "slices", 1)
        next_execution = event.get("next_execution") or {}
        if not isinstance(next_execution, dict):
            raise BadRecord("AggregateDailyCounts needs 'next_execution' as an object")
        return cls(run_id=str(event["run_id"]), mode=str(event.get("mode") or "score"), checkpoint=checkpoint,
                   notes=tuple(str(n) for n in notes), already_done=already_done, slices=slices,
                   continued_in=str(next_execution.get("name") or ""))


def _whole_number(step: str, event: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(event.get(name) or default)
    except (TypeError, ValueError):
        raise BadRecord(f"{step} needs {name!r} as a whole number") from None


@dataclass
class AggregateDailyCountsResult(StepResult):
    OMIT_WHEN_EMPTY = ("notes", "replay", "results", "throttled", "continued_in")

    run_id: str
    mode: str
    batches: int
    images_scored: int
    predictions_written: int
    # Found done while listing, or found done by another run while classifying.
    already_scored: int
    images_failed: int
    daily_counts: dict[str, dict[str, int]]
    notes: list[str] = field(default_factory=list)
    replay: str = ""  # how to replay the run's failures, when it has some
    # The run's result files ({"predictions": s3:// prefix, "failures": s3:// URI}), when it classified batches.
    results: dict[str, str] = field(default_factory=dict)
    # The run's batches' AWS requests that were throttled (and retried), by service: {"dynamodb": n, "s3": n}.
    throttled: dict[str, int] = field(default_factory=dict)
    slices: int = 1  # the ledger's slices the run listed, each its own manifest and Map Run
    continued_in: str = ""  # the run goes on in this execution (Step Functions' history quota)


# -- the retraining branch -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CollectTrainingDataRequest:
    run_id: str

    @classmethod
    def from_event(cls, event: Any) -> CollectTrainingDataRequest:
        event = _object_with("CollectTrainingData", event, ("run_id",))
        return cls(run_id=str(event["run_id"]))


@dataclass
class CollectTrainingDataResult(StepResult):
    enough: bool
    reason: str
    hook: str
    model_name: str
    model_registry: str
    current_version: str
    candidate_version: str
    labels: list[str]
    train_manifest: str
    holdout_manifest: str
    train_count: int
    holdout_count: int
    new_labels: int
    labels_high_water: str | None
    epochs: int
    low_confidence_export: str
    low_confidence_count: int
    notes: list[str]


# The fields of the collect step's result that the training hook reads (its contract).
TRAINING_HOOK_NEEDS = ("train_manifest", "labels", "model_registry", "current_version", "candidate_version")


@dataclass(frozen=True)
class TrainingHookRequest:
    run_id: str
    collect: dict[str, Any]

    @classmethod
    def from_event(cls, event: Any) -> TrainingHookRequest:
        collect = _retraining_collect(event)
        missing = [k for k in TRAINING_HOOK_NEEDS if not collect.get(k)]
        if missing:
            raise BadRecord(f"the training hook needs {', '.join(missing)} in 'collect'")
        return cls(run_id=str(event.get("run_id") or ""), collect=collect)


@dataclass
class TrainingHookResult(StepResult):
    candidate_version: str
    model_location: str
    metrics: dict[str, Any]
    excluded: list[dict[str, str]]


@dataclass(frozen=True)
class EvaluateCandidateRequest:
    run_id: str
    collect: dict[str, Any]
    training: dict[str, Any]

    @classmethod
    def from_event(cls, event: Any) -> EvaluateCandidateRequest:
        collect = _retraining_collect(event)
        if not collect.get("holdout_manifest") or not collect.get("model_registry"):
            raise BadRecord("EvaluateCandidate needs the collect step's holdout_manifest and model_registry")
        training = event["training"] if isinstance(event.get("training"), dict) else {}
        return cls(run_id=str(event.get("run_id") or ""), collect=collect, training=dict(training))

    @property
    def candidate_version(self) -> str:
        return str(self.training.get("candidate_version") or self.collect["candidate_version"])


@dataclass
class EvaluateCandidateResult(StepResult):
    candidate_version: str
    candidate_accuracy: float
    current_accuracy: float | None
    # The paired comparison on the same images: right by the candidate only, by the current version only.
    only_candidate_right: int
    only_current_right: int
    held_out: int
    excluded: list[dict[str, str]]
    training_excluded: list[dict[str, str]]
    candidate_runtime: str = ""  # the form it was scored in, the one it would serve in


def _retraining_collect(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or not isinstance(event.get("collect"), dict):
        raise BadRecord("the retraining steps need an object with 'run_id' and 'collect'")
    return dict(event["collect"])


@dataclass(frozen=True)
class PromoteIfBetterRequest:
    run_id: str
    collect: dict[str, Any]
    evaluation: dict[str, Any]
    candidate_version: str
    candidate_accuracy: float
    current_accuracy: float | None

    @classmethod
    def from_event(cls, event: Any) -> PromoteIfBetterRequest:
        event = _object_with("PromoteIfBetter", event, ("run_id",), ("collect", "evaluation"))
        collect, evaluation = event["collect"], event["evaluation"]
        try:
            if not isinstance(collect, dict):
                raise TypeError("collect")
            candidate = str(evaluation["candidate_version"])
            candidate_accuracy = float(evaluation["candidate_accuracy"])
            current_accuracy = evaluation.get("current_accuracy")
            current = float(current_accuracy) if current_accuracy is not None else None
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BadRecord("PromoteIfBetter needs the evaluation's candidate_version and accuracies") from None
        return cls(run_id=str(event["run_id"]), collect=collect, evaluation=evaluation, candidate_version=candidate,
                   candidate_accuracy=candidate_accuracy, current_accuracy=current)


@dataclass
class PromoteIfBetterResult(StepResult):
    outcome: str  # "promoted" or "rejected"
    reason: str
    model_name: str
    candidate_version: str
    current_version: str | None
    previous_version: str | None
    candidate_accuracy: float
    current_accuracy: float | None
    margin: float
    # Why the lead is, or is not, more than chance on the held-out images (None with no current version).
    significance: str | None
    p_value: float | None
    held_out: int | None
    excluded: list[dict[str, str]]


# -- publishing a model brought from outside -------------------------------------------------------------
PUBLISH_POLICIES = ("none", "promote", "promote-if-better", "manual")


@dataclass(frozen=True)
class PublishModelRequest:
    """The execution input of a publish run ({"mode": "publish", ...}), as `batchinfer models publish` starts it."""

    run_id: str
    artifact: str  # s3:// URI of the staged artifact, under the registry's _staging/<version>/
    version: str
    held_out: str  # s3:// prefix laid out <prefix>/<class>/...
    calibration: str | None
    labels: tuple[str, ...] | None  # else a labels file inside the artifact
    preprocess: str
    policy: str
    force: bool
    by: str

    @classmethod
    def from_event(cls, event: Any) -> PublishModelRequest:
        event = _object_with("PublishModel", event, ("run_id",), ("input",))
        run_input = event["input"]
        if not isinstance(run_input, dict):
            raise BadRecord("the execution input must be a JSON object")
        missing = [name for name in ("artifact", "version", "held_out") if not isinstance(run_input.get(name), str)
                   or not run_input[name]]
        if missing:
            raise BadRecord(f"publish needs {_quoted(tuple(missing))} in the execution input")
        labels = run_input.get("labels")
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
            raise BadRecord("'labels' must be a list of class names")
        policy = str(run_input.get("policy") or "none")
        if policy not in PUBLISH_POLICIES:
            raise BadRecord(f"'policy' must be one of {', '.join(PUBLISH_POLICIES)}, got {policy!r}")
        return cls(run_id=str(event["run_id"]), artifact=run_input["artifact"], version=run_input["version"],
                   held_out=run_input["held_out"], calibration=run_input.get("calibration") or None,
                   labels=tuple(labels) if labels is not None else None,
                   preprocess=str(run_input.get("preprocess") or "none"), policy=policy,
                   force=bool(run_input.get("force")), by=str(run_input.get("by") or "unknown"))


@dataclass
class PublishModelResult(StepResult):
    outcome: str  # "promoted", "pending" (approval), "published" (registered, not serving) or "kept" (not better)
    reason: str
    model_name: str
    version: str
    source_format: str
    serves: str  # the form it serves in: int8 or fp32
    preprocess: str
    softmax: str
    accuracy: float
    held_out: int
    near_chance: bool
    current_version: str | None  # serving when the run ended
    previous_version: str | None
    current_accuracy: float | None
    significance: str | None
    by: str
    excluded: list[dict[str, str]]
