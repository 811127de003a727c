"""DynamoDB and S3 access behind small named classes; domain code takes them as arguments."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from lambdas.records import Failure, ImageVersion, Prediction, utc_now

COUNTED = "COUNTED"
FAILED = "FAILED"
MODEL_PREFIX = "MODEL#"
# The counts table keeps the shard count the counters were written with, so that readers outside
# the functions (the CLI) use the deployment's figure. Its "#" keeps it out of the per-day rollups.
SHARDS_RECORD = {"pk": "#deployment", "sk": "count_shards"}

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
# Two items per image plus one counter per (date, class) stay under the 100-item transaction cap.
_IMAGES_PER_TRANSACTION = 25
_MAX_ATTEMPTS = 10


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


def chunked(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass
class WriteOutcome:
    written: list[Prediction] = field(default_factory=list)  # new prediction rows
    counted: list[Prediction] = field(default_factory=list)  # of those, the ones that entered counts
    duplicates: list[Prediction] = field(default_factory=list)  # already written by this model version


class PredictionStore:
    """Predictions, the per-image ledger (COUNTED / FAILED) and the sharded daily counters.

    A prediction, its COUNTED marker and the counter increment are one transaction with
    conditions, so a retried batch, a duplicate event or an overlapping run can never count an
    image version twice, and no reader ever sees a count without its prediction.
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
        if predictions:
            self._record_count_shards()
        for chunk in chunked(list(predictions), _IMAGES_PER_TRANSACTION):
            self._write_chunk(list(chunk), outcome)
        return outcome

    def _write_chunk(self, chunk: list[Prediction], outcome: WriteOutcome) -> None:
        to_count = {p.image.image_id for p in chunk}
        for attempt in range(_MAX_ATTEMPTS):
            if not chunk:
                return
            actions, owners = self._transaction(chunk, to_count)
            try:
                self.client.transact_write_items(TransactItems=actions)
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = error.response.get("CancellationReasons") or []
                conditional = False
                for reason, owner in zip(reasons, owners, strict=False):
                    if reason.get("Code") != "ConditionalCheckFailed" or owner is None:
                        continue
                    conditional = True
                    prediction, kind = owner
                    if kind == "prediction":
                        chunk.remove(prediction)
                        outcome.duplicates.append(prediction)
                    else:
                        to_count.discard(prediction.image.image_id)
                if not conditional:  # conflict or throttling inside the transaction: wait, retry
                    _backoff(attempt)
                continue
            outcome.written.extend(chunk)
            outcome.counted.extend(p for p in chunk if p.image.image_id in to_count)
            return
        raise RuntimeError(f"predictions not written after {_MAX_ATTEMPTS} attempts (contention)")

    def _transaction(
        self, chunk: list[Prediction], to_count: set[str]
    ) -> tuple[list[dict[str, Any]], list[tuple[Prediction, str] | None]]:
        actions: list[dict[str, Any]] = []
        owners: list[tuple[Prediction, str] | None] = []
        increments: Counter[tuple[str, str]] = Counter()
        now = utc_now()
        for p in chunk:
            actions.append(self._conditional_put(self.prediction_row(p, now)))
            owners.append((p, "prediction"))
            if p.image.image_id in to_count:
                actions.append(self._conditional_put(self.counted_row(p, now)))
                owners.append((p, "counted"))
                increments[(p.date, p.predicted_class)] += 1
        # One counter shard per transaction keeps a busy day off a single partition.
        shard = random.randrange(self.count_shards)
        for (date, label), n in sorted(increments.items()):
            actions.append(
                {
                    "Update": {
                        "TableName": self.counts_table,
                        "Key": to_item({"pk": f"{date}#{shard:02d}", "sk": label}),
                        "UpdateExpression": "ADD #n :n SET updated_at = :now",
                        "ExpressionAttributeNames": {"#n": "count"},
                        "ExpressionAttributeValues": to_item({":n": n, ":now": now}),
                    }
                }
            )
            owners.append(None)
        return actions, owners

    def _conditional_put(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.predictions_table,
                "Item": to_item(row),
                "ConditionExpression": "attribute_not_exists(image_id)",
            }
        }

    @staticmethod
    def prediction_row(p: Prediction, now: str) -> dict[str, Any]:
        return {
            "image_id": p.image.image_id,
            "sk": MODEL_PREFIX + p.model_version,
            "prediction_id": p.prediction_id,
            "date": p.date,
            "predicted_class": p.predicted_class,
            "confidence": p.confidence,
            "probabilities": p.probabilities,
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

    def counted_row(self, p: Prediction, now: str) -> dict[str, Any]:
        shard = stable_shard(p.image.image_id, self.count_shards)
        return {
            "image_id": p.image.image_id,
            "sk": COUNTED,
            "date": p.date,
            "date_shard": f"{p.date}#{shard:02d}",
            "predicted_class": p.predicted_class,
            "prediction_id": p.prediction_id,
            "model_version": p.model_version,
            "run_id": p.run_id,
            "created_at": now,
        }

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
        found: dict[str, set[str]] = defaultdict(set)
        keys = [{"image_id": i, "sk": s} for i in dict.fromkeys(image_ids) for s in (COUNTED, FAILED)]
        for row in self.get_many(keys, "image_id, sk"):
            found[row["image_id"]].add(row["sk"])
        return dict(found)

    def counted_by_run(self, image_ids: Sequence[str]) -> dict[str, str]:
        """The run that counted each image id, for those that have been counted."""
        keys = [{"image_id": i, "sk": COUNTED} for i in dict.fromkeys(image_ids)]
        return {row["image_id"]: row["run_id"] for row in self.get_many(keys, "image_id, run_id")}

    def made_by(self, run_id: str, predictions: Sequence[Prediction]) -> set[str]:
        """The image ids among `predictions` whose stored prediction (same model version) `run_id` wrote."""
        keys = [{"image_id": p.image.image_id, "sk": MODEL_PREFIX + p.model_version} for p in predictions]
        return {row["image_id"] for row in self.get_many(keys, "image_id, run_id") if row.get("run_id") == run_id}

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
        response = self.client.query(
            TableName=self.predictions_table,
            KeyConditionExpression="image_id = :i",
            ExpressionAttributeValues=to_item({":i": image_id}),
            ConsistentRead=True,
        )
        return [from_item(item) for item in response["Items"]]

    def model_predictions(self) -> list[dict[str, Any]]:
        """Every prediction row (not the ledger markers); a scan, for the CLI and tests."""
        return [row for row in scan_all(self.client, TableName=self.predictions_table)
                if str(row["sk"]).startswith(MODEL_PREFIX)]

    def predictions_on(self, date: str) -> list[dict[str, Any]]:
        """The counted prediction of each image version captured on `date`, from the by_date index."""
        counted = [
            row
            for shard in range(self.count_shards)
            for row in query_all(self.client, TableName=self.predictions_table, IndexName="by_date",
                                 KeyConditionExpression="date_shard = :d",
                                 ExpressionAttributeValues=to_item({":d": f"{date}#{shard:02d}"}))
            if row["sk"] == COUNTED
        ]
        return list(self.get_many([{"image_id": r["image_id"], "sk": MODEL_PREFIX + r["model_version"]}
                                   for r in counted]))

    def below_confidence(self, model_version: str, threshold: float) -> list[dict[str, Any]]:
        """Predictions of one model version with a confidence under `threshold`."""
        return list(scan_all(
            self.client, TableName=self.predictions_table,
            FilterExpression="sk = :sk AND confidence < :c",
            ExpressionAttributeValues={":sk": {"S": MODEL_PREFIX + model_version}, ":c": {"N": str(threshold)}},
        ))

    def day_counts(self, date: str) -> dict[str, int]:
        """The exact count per class for one day: the sum of its counter shards."""
        totals: Counter[str] = Counter()
        for shard in range(self.count_shards):
            for row in query_all(
                self.client,
                TableName=self.counts_table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues=to_item({":pk": f"{date}#{shard:02d}"}),
                ConsistentRead=True,
            ):
                totals[row["sk"]] += int(row["count"])
        return dict(totals)

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
            response = self.client.get_object(**request)
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
            response = self.client.head_object(**request)
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
