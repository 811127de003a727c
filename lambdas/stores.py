"""DynamoDB and S3 access behind small named classes; domain code takes them as arguments."""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from lambdas.records import Failure, ImageVersion, Prediction, kept_probabilities, utc_now
from lambdas.throttles import THROTTLE_CODES, carrying_context

COUNTED = "COUNTED"
FAILED = "FAILED"
MODEL_PREFIX = "MODEL#"
# A counting marker of the counts table: pk="FOLD#<date>#<nn>", sk="<run>#<batch>#<seq>", listing the
# image versions one batch's fold added to that day's counters (README, "What is kept").
FOLD_PREFIX = "FOLD#"
# A COUNTED item written since the fold design holds its prediction ("layout": 2); one written before
# holds only the marker, and its prediction is the MODEL#<version> row beside it.
LAYOUT = 2
# The counts table keeps the shard count the counters were written with, so that readers outside
# the functions (the CLI) use the deployment's figure. Its "#" keeps it out of the per-day rollups.
SHARDS_RECORD = {"pk": "#deployment", "sk": "count_shards"}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
# Images a fold transaction lists: their marker and at most one counter each stay under the 100-item cap.
_IMAGES_PER_FOLD = 64
_MAX_ATTEMPTS = 10
_WRITER_THREADS = 8
# The keys of a COUNTED marker as readers know it (the layout before the fold design).
_MARKER_FIELDS = ("image_id", "sk", "date", "date_shard", "predicted_class", "prediction_id", "model_version",
                  "run_id", "created_at")


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(round(value, 6)))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_plain(v)) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    values = {k: _deserializer.deserialize(v) for k, v in item.items()}
    return {k: _python(v) for k, v in values.items()}


def _python(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_python(v) for v in value]
    return value


def stable_shard(text: str, shards: int) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % shards


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))


# S3's answers to a prefix's request rate past its quota: SlowDown, or for a HEAD (no body) only its status.
_S3_THROTTLED = THROTTLE_CODES | {"503", "ServiceUnavailable"}


def _s3_call(call: Any, **request: Any) -> Any:
    """One S3 request, backing off while S3 throttles it. The SDK retries throttling too, but a client that has
    spent its retry quota (a listing that HEADs a slice's worth of versions under SlowDown) stops retrying."""
    for attempt in range(_MAX_ATTEMPTS):
        try:
            return call(**request)
        except ClientError as error:
            if error.response["Error"]["Code"] not in _S3_THROTTLED or attempt == _MAX_ATTEMPTS - 1:
                raise
            _backoff(attempt)
    raise AssertionError("unreachable")


def chunked(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class WriteOutcome:
    written: list[Prediction] = field(default_factory=list)  # new prediction rows
    counted: list[Prediction] = field(default_factory=list)  # of those, the ones that entered counts
    duplicates: list[Prediction] = field(default_factory=list)  # already written by this model version
    # Of the duplicates, those this batch wrote in an earlier attempt (a retry), each with whether it counted:
    # still this run's work, told apart from other runs' by the item each conditional put found.
    own: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class CountedItem:
    """What a fold needs of a COUNTED item: whose it is, and what it adds to which day."""

    image_id: str
    predicted_class: str
    date: str
    run_id: str
    batch_id: str

    @classmethod
    def of(cls, p: Prediction) -> CountedItem:
        return cls(p.image.image_id, p.predicted_class, p.date, p.run_id, p.batch_id)


def project(row: dict[str, Any], projection: str | None) -> dict[str, Any]:
    """A row cut to a ProjectionExpression's plain attribute names, as DynamoDB returns it."""
    if not projection:
        return dict(row)
    names = [name.strip() for name in projection.split(",")]
    return {name: row[name] for name in names if name in row}


class PredictionStore:
    """Predictions, the per-image ledger (COUNTED / FAILED) and the sharded daily counters.

    The first prediction of an image version is one item (sk=COUNTED) written with a plain conditional
    put that names its owner, the run and batch that wrote it. Its class enters the day's counters when
    the owner folds it: one small transaction per batch and day creates a numbered fold marker listing
    the image versions it adds, on condition that no marker of that number exists, together with the
    counter increments. Whoever folds for an owner (the batch, its retry, RecordBatchFailure or
    ReconcileBatches) first reads the owner's markers, so each item is added once. A later model
    version's prediction is a plain MODEL#<version> row, never counted. README: "What is kept, and why
    the counts are exact".
    """

    def __init__(self, client: Any, predictions_table: str, counts_table: str, count_shards: int):
        self.client = client
        self.predictions_table = predictions_table
        self.counts_table = counts_table
        self.count_shards = count_shards
        self._shards_recorded = False

    @classmethod
    def deployed(cls, client: Any, predictions_table: str, counts_table: str, default_shards: int) -> PredictionStore:
        """A store for readers outside the functions: its shard count is the one the counters were
        written with (recorded in the counts table), or `default_shards` when nothing was counted yet."""
        store = cls(client, predictions_table, counts_table, default_shards)
        store.count_shards = store.recorded_count_shards() or default_shards
        return store

    def recorded_count_shards(self) -> int | None:
        response = self.client.get_item(TableName=self.counts_table, Key=to_item(SHARDS_RECORD), ConsistentRead=True)
        item = response.get("Item")
        return int(from_item(item)["shards"]) if item else None

    def _record_count_shards(self) -> None:
        if self._shards_recorded:
            return
        self.client.update_item(
            TableName=self.counts_table,
            Key=to_item(SHARDS_RECORD),
            UpdateExpression="SET shards = :s, updated_at = :now",
            ExpressionAttributeValues=to_item({":s": self.count_shards, ":now": utc_now()}),
        )
        self._shards_recorded = True

    # -- writes ---------------------------------------------------------------------------
    def write(self, predictions: Sequence[Prediction]) -> WriteOutcome:
        outcome = WriteOutcome()
        predictions = list(predictions)
        if not predictions:
            return outcome
        self._record_count_shards()
        now, writer = utc_now(), uuid.uuid4().hex[:12]
        kinds = self._each(lambda p: self._put_prediction(p, now, writer), predictions)
        for p, kind in zip(predictions, kinds, strict=True):
            (outcome.written if kind in ("written", "rescored") else outcome.duplicates).append(p)
        # The batch's own items, new or left by its earlier attempt, enter the counts before it returns.
        self.fold([CountedItem.of(p) for p, kind in zip(predictions, kinds, strict=True) if kind in ("written", "own")])
        outcome.counted.extend(p for p, kind in zip(predictions, kinds, strict=True) if kind == "written")
        outcome.own = {p.image.image_id: kind == "own" for p, kind in zip(predictions, kinds, strict=True)
                       if kind in ("own", "own-rescored")}
        return outcome

    def _each(self, put: Any, predictions: list[Prediction]) -> list[str]:
        """One conditional put per image, several in flight: a batch's puts wait on the network, not the CPU."""
        if len(predictions) == 1:
            return [put(predictions[0])]
        with ThreadPoolExecutor(max_workers=min(_WRITER_THREADS, len(predictions))) as pool:
            return list(pool.map(carrying_context(put), predictions))

    def _put_prediction(self, p: Prediction, now: str, writer: str) -> str:
        """written (the image version's COUNTED item), own (left by this batch's earlier attempt),
        rescored (a later model version's row, not counted), own-rescored (that row, left by this batch's
        earlier attempt) or duplicate."""
        existing = self._put_new({**self.counted_item(p, now), "writer": writer})
        if existing is None:
            return "written"
        if existing.get("model_version") == p.model_version:
            own = (existing.get("layout") == LAYOUT and existing.get("run_id") == p.run_id
                   and existing.get("batch_id") == p.batch_id)
            if own and existing.get("writer") == writer:
                return "written"  # this very put, retried by the SDK after a lost response
            return "own" if own else "duplicate"
        # Another model version's prediction counts for this image version; this one is kept beside it.
        existing = self._put_new({**self.prediction_row(p, now), "writer": writer})
        if existing is None or existing.get("writer") == writer:
            return "rescored"
        own = existing.get("run_id") == p.run_id and existing.get("batch_id") == p.batch_id
        return "own-rescored" if own else "duplicate"

    def _put_new(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """Put the row unless its key exists: None when written, else the item that was there."""
        try:
            self.client.put_item(TableName=self.predictions_table, Item=to_item(row),
                                 ConditionExpression="attribute_not_exists(image_id)",
                                 ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old: Any = error.response.get("Item")
            if old is None:  # DynamoDB returns it with ALL_OLD: without it no decision is safe
                raise RuntimeError(f"{self.predictions_table}: a conditional put of {row['image_id']} failed without "
                                   "returning the item it found (ReturnValuesOnConditionCheckFailure)") from None
            return from_item(old)
        return None

    def fold(self, items: Sequence[CountedItem]) -> list[CountedItem]:
        """Add to the counters the given COUNTED items that no fold marker of their owner lists yet.

        Exactly once however often and by whomever it is called: an item is only ever listed by a marker
        of its own owner and day, and a marker is created (conditionally) only by a folder that has read
        every lower-numbered marker of that owner and day. Returns the items this call added."""
        groups: dict[tuple[str, str, str], list[CountedItem]] = defaultdict(list)
        for item in dict.fromkeys(items):
            groups[(item.run_id, item.batch_id, item.date)].append(item)
        added: list[CountedItem] = []
        for (run_id, batch_id, date), group in groups.items():
            owner = f"{run_id}#{batch_id}#"
            pk = f"{FOLD_PREFIX}{date}#{stable_shard(owner, self.count_shards):02d}"
            todo, number = group, 1
            while todo:
                chunk = todo[:_IMAGES_PER_FOLD]
                if self._create_fold(pk, f"{owner}{number:04d}", chunk):
                    added += chunk
                    todo, number = todo[len(chunk):], number + 1
                    continue
                # This marker exists: an earlier attempt, a concurrent one or the reconciliation folded first.
                markers = self._fold_markers(pk, owner)
                listed = {image_id for marker in markers for image_id in marker["images"]}
                todo = [item for item in todo if item.image_id not in listed]
                number = 1 + max((int(str(marker["sk"]).rsplit("#", 1)[1]) for marker in markers), default=number)
        return added

    def fold_orphans(self, run_id: str, batch_id: str, image_ids: Sequence[str]) -> int:
        """Fold the COUNTED items a batch wrote and died before folding; how many entered the counts."""
        keys = [{"image_id": i, "sk": COUNTED} for i in dict.fromkeys(image_ids)]
        mine = [CountedItem(r["image_id"], r["predicted_class"], r["date"], run_id, batch_id)
                for r in self._get_raw(keys)
                if r.get("layout") == LAYOUT and r.get("run_id") == run_id and r.get("batch_id") == batch_id]
        return len(self.fold(mine))

    def _fold_marker(self, pk: str, sk: str, items: Sequence[CountedItem], now: str) -> dict[str, Any]:
        return {"pk": pk, "sk": sk, "images": [i.image_id for i in items],
                "counts": dict(Counter(i.predicted_class for i in items)), "date": items[0].date,
                "run_id": items[0].run_id, "batch_id": items[0].batch_id, "created_at": now}

    def _create_fold(self, pk: str, sk: str, items: Sequence[CountedItem]) -> bool:
        """Put the fold marker, with its per-class counts, unless it exists (then False)."""
        try:
            self.client.put_item(TableName=self.counts_table, Item=to_item(self._fold_marker(pk, sk, items, utc_now())),
                                 ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _fold_markers(self, pk: str, owner: str = "") -> list[dict[str, Any]]:
        """The fold markers of one day's partition, those of one owner when it is given."""
        condition, values = "pk = :pk", {":pk": pk}
        if owner:
            condition, values = condition + " AND begins_with(sk, :o)", {**values, ":o": owner}
        return list(query_all(self.client, TableName=self.counts_table, KeyConditionExpression=condition,
                              ExpressionAttributeValues=to_item(values), ConsistentRead=True))

    @staticmethod
    def prediction_row(p: Prediction, now: str) -> dict[str, Any]:
        probabilities, kept = kept_probabilities(p.probabilities)
        return {
            "image_id": p.image.image_id,
            "sk": MODEL_PREFIX + p.model_version,
            "prediction_id": p.prediction_id,
            "date": p.date,
            "predicted_class": p.predicted_class,
            "confidence": p.confidence,
            "probabilities": probabilities,
            "probabilities_kept": kept,
            "captured_at": p.image.captured_at().isoformat(),
            "image_uri": p.image.image_id,
            "bucket": p.image.bucket,
            "key": p.image.key,
            "version_id": p.image.version_id,
            "model_version": p.model_version,
            "runtime": p.runtime,
            "run_id": p.run_id,
            "batch_id": p.batch_id,
            "created_at": now,
        }

    def counted_item(self, p: Prediction, now: str) -> dict[str, Any]:
        """The image version's first prediction and its COUNTED marker in one item; owner = run_id, batch_id."""
        return {**self.prediction_row(p, now), "sk": COUNTED, "layout": LAYOUT}

    def _views(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """A stored item as the rows readers know: a COUNTED item holding its prediction reads as the
        MODEL#<version> row and the COUNTED marker it replaces."""
        if row.get("sk") != COUNTED or row.get("layout") != LAYOUT:
            return [{k: v for k, v in row.items() if k != "writer"}]
        prediction = {k: v for k, v in row.items() if k not in ("layout", "writer")}
        prediction["sk"] = MODEL_PREFIX + row["model_version"]
        marker = {k: row[k] for k in _MARKER_FIELDS if k in row}
        marker["date_shard"] = f"{row['date']}#{stable_shard(row['image_id'], self.count_shards):02d}"
        return [prediction, marker]

    def mark_failed(self, failures: Iterable[Failure]) -> None:
        rows = [
            {
                "image_id": f.image.image_id,
                "sk": FAILED,
                "run_id": f.run_id,
                "stage": f.stage,
                "reason": f.reason,
                "recorded_at": f.recorded_at,
            }
            for f in failures
        ]
        batch_write(self.client, self.predictions_table, rows)

    # -- reads ----------------------------------------------------------------------------
    def get_many(self, keys: list[dict[str, str]], projection: str | None = None) -> Iterator[dict[str, Any]]:
        """The rows of these keys; a MODEL#<version> key is also found in the COUNTED item holding it."""
        wanted = {(k["image_id"], k["sk"]) for k in keys}
        models = [k for k in keys if k["sk"].startswith(MODEL_PREFIX)]
        fetch = list({(k["image_id"], k["sk"]): k for k in
                      [*keys, *({"image_id": k["image_id"], "sk": COUNTED} for k in models)]}.values())
        for row in self._get_raw(fetch, None if models else projection):
            for view in self._views(row):
                # A row cut by a projection without "sk" answers the key it was fetched for.
                if "sk" not in view or (view.get("image_id"), view["sk"]) in wanted:
                    yield project(view, projection)

    def _get_raw(self, keys: list[dict[str, str]], projection: str | None = None) -> Iterator[dict[str, Any]]:
        """BatchGetItem in chunks of 100 keys, retrying unprocessed keys with backoff."""
        for chunk in chunked(keys, 100):
            request: dict[str, Any] = {
                self.predictions_table: {"Keys": [to_item(k) for k in chunk], "ConsistentRead": True}
            }
            if projection:
                request[self.predictions_table]["ProjectionExpression"] = projection
            for attempt in range(_MAX_ATTEMPTS):
                response = self.client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.predictions_table, []):
                    yield from_item(item)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(attempt)
            else:
                raise RuntimeError(f"{self.predictions_table}: keys still unprocessed after {_MAX_ATTEMPTS} attempts")

    def ledger(self, image_ids: Sequence[str]) -> dict[str, set[str]]:
        """Which of COUNTED / FAILED each image id has; ids with neither are absent."""
        return {image_id: set(kinds) for image_id, kinds in self.ledger_owners(image_ids).items()}

    def ledger_owners(self, image_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """COUNTED / FAILED of each image id that has either, each with the run that wrote it."""
        found: dict[str, dict[str, str]] = defaultdict(dict)
        keys = [{"image_id": i, "sk": s} for i in dict.fromkeys(image_ids) for s in (COUNTED, FAILED)]
        for row in self._get_raw(keys, "image_id, sk, run_id"):
            found[row["image_id"]][row["sk"]] = str(row.get("run_id", ""))
        return dict(found)

    def run_predictions(self, run_id: str, images: Sequence[ImageVersion]) -> list[tuple[Prediction, bool]]:
        """The predictions `run_id` wrote for these image versions, each with whether it entered the counts
        (one query per image: for the batches of a run whose child died before it wrote its result file)."""
        found = []
        for image in images:
            rows = self.predictions_for(image.image_id)
            counted = {row.get("prediction_id") for row in rows if row["sk"] == COUNTED}
            for row in rows:
                if str(row["sk"]).startswith(MODEL_PREFIX) and row.get("run_id") == run_id:
                    prediction = Prediction(
                        image=image, predicted_class=str(row["predicted_class"]),
                        confidence=float(row["confidence"]),
                        probabilities={k: float(v) for k, v in row["probabilities"].items()},
                        model_version=str(row["model_version"]), run_id=run_id, batch_id=str(row["batch_id"]),
                        date=str(row["date"]), runtime=str(row.get("runtime") or ""),
                    )
                    found.append((prediction, prediction.prediction_id in counted))
        return found

    def predictions_for(self, image_id: str) -> list[dict[str, Any]]:
        return sorted((view for row in self._rows_of(image_id) for view in self._views(row)),
                      key=lambda view: str(view["sk"]))

    def _rows_of(self, image_id: str) -> list[dict[str, Any]]:
        return list(query_all(self.client, TableName=self.predictions_table, KeyConditionExpression="image_id = :i",
                              ExpressionAttributeValues=to_item({":i": image_id}), ConsistentRead=True))

    def model_predictions(self) -> list[dict[str, Any]]:
        """Every prediction row (not the ledger markers); a scan, for the CLI and tests."""
        return [view for row in self._scan_rows() for view in self._views(row)
                if str(view["sk"]).startswith(MODEL_PREFIX)]

    def _scan_rows(self) -> Iterator[dict[str, Any]]:
        return scan_all(self.client, TableName=self.predictions_table)

    def predictions_on(self, date: str) -> list[dict[str, Any]]:
        """The counted prediction of each image version captured on `date`: those counted before the fold
        design from the by_date index, the others from the day's fold markers."""
        before = [{"image_id": r["image_id"], "sk": MODEL_PREFIX + r["model_version"]}
                  for r in self._marked_on(date) if r["sk"] == COUNTED]
        folded = [{"image_id": image_id, "sk": COUNTED}
                  for shard in range(self.count_shards)
                  for marker in self._fold_markers(f"{FOLD_PREFIX}{date}#{shard:02d}")
                  for image_id in marker["images"]]
        return [*self.get_many(before), *(self._views(row)[0] for row in self._get_raw(folded))]

    def _marked_on(self, date: str) -> list[dict[str, Any]]:
        """COUNTED markers of the layout before the fold design, from the by_date index."""
        return [row for shard in range(self.count_shards)
                for row in query_all(self.client, TableName=self.predictions_table, IndexName="by_date",
                                     KeyConditionExpression="date_shard = :d",
                                     ExpressionAttributeValues=to_item({":d": f"{date}#{shard:02d}"}))]

    def below_confidence(self, model_version: str, threshold: float) -> list[dict[str, Any]]:
        """Predictions of one model version with a confidence under `threshold`."""
        rows = scan_all(
            self.client, TableName=self.predictions_table,
            FilterExpression="(sk = :sk OR (sk = :counted AND model_version = :v)) AND confidence < :c",
            ExpressionAttributeValues={":sk": {"S": MODEL_PREFIX + model_version}, ":counted": {"S": COUNTED},
                                       ":v": {"S": model_version}, ":c": {"N": str(threshold)}},
        )
        return [row for stored in rows for row in self._views(stored)[:1]]

    def day_counts(self, date: str) -> dict[str, int]:
        """The exact count per class for one day: the sum of its fold markers' counts, and of the counter
        shards the layout before the fold design incremented."""
        totals: Counter[str] = Counter()
        for shard in range(self.count_shards):
            totals.update(self._counter_shard(date, shard))
            for marker in self._fold_markers(f"{FOLD_PREFIX}{date}#{shard:02d}"):
                totals.update({label: int(n) for label, n in marker["counts"].items()})
        return dict(totals)

    def _counter_shard(self, date: str, shard: int) -> dict[str, int]:
        return {row["sk"]: int(row["count"]) for row in query_all(
            self.client, TableName=self.counts_table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": f"{date}#{shard:02d}"}), ConsistentRead=True)}

    def write_rollup(self, date: str, counts: dict[str, int]) -> None:
        """Store the per-day totals; never lower a total that a later recount already raised."""
        now = utc_now()
        for label, n in counts.items():
            try:
                self.client.update_item(
                    TableName=self.counts_table,
                    Key=to_item({"pk": date, "sk": label}),
                    UpdateExpression="SET #n = :n, updated_at = :now, #d = :d",
                    ConditionExpression="attribute_not_exists(#n) OR #n <= :n",
                    ExpressionAttributeNames={"#n": "count", "#d": "date"},
                    ExpressionAttributeValues=to_item({":n": n, ":now": now, ":d": date}),
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise

    def rollups(self) -> dict[str, dict[str, int]]:
        """All per-day totals, {date: {class: count}}; for the CLI and tests."""
        days: dict[str, dict[str, int]] = defaultdict(dict)
        for row in scan_all(self.client, TableName=self.counts_table):
            if "#" not in row["pk"]:
                days[row["pk"]][row["sk"]] = int(row["count"])
        return dict(sorted(days.items()))


class FailureStore:
    """Failures kept with the run that saw them, so that replay can take them from there."""

    def __init__(self, client: Any, table: str):
        self.client = client
        self.table = table

    def record(self, failures: Sequence[Failure]) -> None:
        rows = [
            {
                "run_id": f.run_id,
                "image_id": f.image.image_id,
                "stage": f.stage,
                "reason": f.reason[:1000],
                "error_type": f.error_type,
                "batch_id": f.batch_id,
                "image": f.image.to_dict(),
                "recorded_at": f.recorded_at,
            }
            for f in failures
        ]
        batch_write(self.client, self.table, rows)

    def for_run(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.each_for_run(run_id))

    def each_for_run(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The run's failures a page at a time (the run is the table's partition key), in image id order."""
        yield from query_all(
            self.client,
            TableName=self.table,
            KeyConditionExpression="run_id = :r",
            ExpressionAttributeValues=to_item({":r": run_id}),
            ConsistentRead=True,
        )


class RunStateStore:
    """Listing checkpoints and the result of each batch of each run."""

    def __init__(self, client: Any, table: str):
        self.client = client
        self.table = table

    def checkpoint(self, scope: str) -> str | None:
        response = self.client.get_item(
            TableName=self.table,
            Key=to_item({"pk": "checkpoint", "sk": scope}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return from_item(item)["last_modified"] if item else None

    def advance_checkpoint(self, scope: str, last_modified: str, run_id: str) -> bool:
        """Move the checkpoint forward only; an older run finishing late cannot move it back."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(
                    {"pk": "checkpoint", "sk": scope, "last_modified": last_modified,
                     "run_id": run_id, "updated_at": utc_now()}
                ),
                ConditionExpression="attribute_not_exists(last_modified) OR last_modified < :t",
                ExpressionAttributeValues=to_item({":t": last_modified}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def put_batch_result(self, run_id: str, batch_id: str, result: dict[str, Any]) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=to_item({"pk": f"run#{run_id}", "sk": f"batch#{batch_id}", **result,
                          "updated_at": utc_now()}),
        )

    def put_batch_results(self, run_id: str, results: Sequence[dict[str, Any]]) -> None:
        """Many batch results at once (BatchWriteItem), as the reconciliation after the Map writes them."""
        now = utc_now()
        batch_write(self.client, self.table, [
            {"pk": f"run#{run_id}", "sk": f"batch#{r['batch_id']}", **r, "updated_at": now} for r in results
        ])

    def batches_with_result(self, run_id: str, batch_ids: Sequence[str]) -> set[str]:
        """Which of these batches of the run have a recorded result (BatchGetItem, 100 keys a call)."""
        found: set[str] = set()
        for chunk in chunked(list(dict.fromkeys(batch_ids)), 100):
            request: dict[str, Any] = {self.table: {
                "Keys": [to_item({"pk": f"run#{run_id}", "sk": f"batch#{b}"}) for b in chunk],
                "ProjectionExpression": "sk", "ConsistentRead": True,
            }}
            for attempt in range(_MAX_ATTEMPTS):
                response = self.client.batch_get_item(RequestItems=request)
                rows = response["Responses"].get(self.table, [])
                found.update(from_item(row)["sk"].removeprefix("batch#") for row in rows)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                _backoff(attempt)
            else:
                raise RuntimeError(f"{self.table}: keys still unprocessed after {_MAX_ATTEMPTS} attempts")
        return found

    def batch_results(self, run_id: str) -> list[dict[str, Any]]:
        return list(
            query_all(
                self.client,
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
                ExpressionAttributeValues=to_item({":pk": f"run#{run_id}", ":b": "batch#"}),
                ConsistentRead=True,
            )
        )


def batch_write(client: Any, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """BatchWriteItem in chunks of 25, retrying unprocessed items with backoff: none is dropped.

    Not boto3's Table.batch_writer(): it re-sends unprocessed items at once, with no backoff and no
    bound on attempts, and it needs a resource where the stores hold a client."""
    for chunk in chunked(list(rows), 25):
        request: dict[str, Any] = {table: [{"PutRequest": {"Item": to_item(r)}} for r in chunk]}
        for attempt in range(_MAX_ATTEMPTS):
            response = client.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}
            if not request:
                break
            _backoff(attempt)
        else:
            raise RuntimeError(f"{table}: items still unprocessed after {_MAX_ATTEMPTS} attempts")


def query_all(client: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    paginator = client.get_paginator("query")
    for page in paginator.paginate(**kwargs):
        for item in page["Items"]:
            yield from_item(item)


def scan_all(client: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    paginator = client.get_paginator("scan")
    for page in paginator.paginate(**kwargs):
        for item in page["Items"]:
            yield from_item(item)


class ImageSource:
    """Reads image versions and run manifests from S3."""

    def __init__(self, client: Any, page_size: int = 1000):
        self.client = client
        self.page_size = page_size

    def read(self, image: ImageVersion, max_bytes: int) -> bytes:
        return self.read_object(image.bucket, image.key, max_bytes, image.version_id)

    def read_object(self, bucket: str, key: str, max_bytes: int | None = None, version_id: str | None = None) -> bytes:
        """An object's bytes (a given version, else the latest). A version that is gone or denied
        raises ObjectUnreadable; throttling and other transient errors propagate as they are."""
        request = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
        try:
            response = _s3_call(self.client.get_object, **request)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in ("NoSuchKey", "NoSuchVersion", "404"):
                raise ObjectUnreadable(code, "the object version was deleted before it was scored") from None
            if code in ("AccessDenied", "403"):
                raise ObjectUnreadable(code, "access denied reading the object version") from None
            raise
        length = int(response.get("ContentLength") or 0)
        if max_bytes is not None and length > max_bytes:
            response["Body"].close()
            raise ImageTooLarge(f"object is {length} bytes, above the limit of {max_bytes} bytes")
        return bytes(response["Body"].read())

    def head(self, bucket: str, key: str, version_id: str | None = None) -> ImageVersion | None:
        """The named version, or the key's latest one; None when it is gone (or only a delete marker)."""
        request = {"Bucket": bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}
        try:
            response = _s3_call(self.client.head_object, **request)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NoSuchVersion", "405", "MethodNotAllowed"):
                return None
            raise
        return ImageVersion(
            bucket=bucket,
            key=key,
            version_id=str(response.get("VersionId") or version_id or ""),
            last_modified=response["LastModified"].isoformat(),
            size=int(response.get("ContentLength", 0)),
        )

    def list_objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, LastModified) of the current objects under prefix."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"], obj["LastModified"].isoformat()

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        """The names of the "folders" right under prefix."""
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return names

    def list_versions(self, bucket: str, prefix: str) -> Iterator[ImageVersion]:
        """Every version (not delete markers) under prefix, page by page."""
        paginator = self.client.get_paginator("list_object_versions")
        for page in paginator.paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}
        ):
            for version in page.get("Versions", []):
                if version["Key"].endswith("/"):
                    continue  # a console-made "folder"
                yield ImageVersion(
                    bucket=bucket,
                    key=version["Key"],
                    version_id=version["VersionId"],
                    last_modified=version["LastModified"].isoformat(),
                    size=int(version.get("Size", 0)),
                )

    def version_pages(
        self, bucket: str, prefix: str, cursor: dict[str, str] | None = None
    ) -> Iterator[VersionPage]:
        """ListObjectVersions a page at a time from a cursor, so that a sweep can stop and resume."""
        markers = dict(cursor or {})
        while True:
            request: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": self.page_size}
            if markers.get("key_marker"):
                request["KeyMarker"] = markers["key_marker"]
                request["VersionIdMarker"] = markers.get("version_id_marker", "")
            response = self.client.list_object_versions(**request)
            versions = [
                ImageVersion(bucket=bucket, key=v["Key"], version_id=v["VersionId"],
                             last_modified=v["LastModified"].isoformat(), size=int(v.get("Size", 0)))
                for v in response.get("Versions", [])
                if not v["Key"].endswith("/")  # a console-made "folder"
            ]
            if not response.get("IsTruncated"):
                yield VersionPage(versions, None)
                return
            markers = {"key_marker": response["NextKeyMarker"],
                       "version_id_marker": response.get("NextVersionIdMarker", "")}
            yield VersionPage(versions, markers)

    def write_json(self, bucket: str, key: str, value: Any) -> None:
        self.client.put_object(
            Bucket=bucket, Key=key, Body=json.dumps(value).encode(), ContentType="application/json"
        )

    def write_text(self, bucket: str, key: str, text: str, content_type: str) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=text.encode(), ContentType=content_type)

    def read_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def upload_file(self, bucket: str, key: str, file: Any, content_type: str) -> None:
        """An object from an open binary file, in parts when it is large (boto3's managed upload)."""
        self.client.upload_fileobj(file, bucket, key, ExtraArgs={"ContentType": content_type})

    def stream_object(self, bucket: str, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """An object's bytes in chunks, for objects too large to hold (a million-image manifest)."""
        yield from self.client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(chunk_size=chunk_bytes)

    def delete_all_versions(self, bucket: str, prefix: str) -> int:
        """Every version and delete marker under prefix, gone for good (a staging area's leftovers)."""
        doomed = []
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            doomed += [{"Key": v["Key"], "VersionId": v["VersionId"]}
                       for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        for start in range(0, len(doomed), 1000):
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start: start + 1000], "Quiet": True})
        return len(doomed)


@dataclass(frozen=True)
class VersionPage:
    versions: list[ImageVersion]
    cursor: dict[str, str] | None  # where the next page starts; None after the last page


class ImageTooLarge(ValueError):
    pass


class ObjectUnreadable(ValueError):
    """An object version cannot be read for good (deleted, denied); `code` is S3's error code."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
