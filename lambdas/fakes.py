"""In-memory stand-ins for the stores and the registry's storage, for unit tests and quick experiments.

Each subclasses the real store and overrides every method that touches AWS (it has no client), and
keeps the real store's contract (tests/contract runs the same tests on both): the same rows, the
same ordering, and the same exactly-once rule for predictions and counts. Rows go through the real
stores' DynamoDB conversion, so numbers round as they do in the tables.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from lambdas.model_registry import ModelFileMissing
from lambdas.records import Failure, ImageVersion, parse_timestamp, utc_now
from lambdas.stores import (
    FAILED,
    MODEL_PREFIX,
    CountedItem,
    FailureStore,
    ImageSource,
    ImageTooLarge,
    ObjectUnreadable,
    PredictionStore,
    RunStateStore,
    VersionPage,
    from_item,
    project,
    to_item,
)


def _stored(row: dict[str, Any]) -> dict[str, Any]:
    """A row as DynamoDB gives it back: None dropped, floats rounded, whole numbers as int."""
    return from_item(to_item(row))


class InMemoryPredictionStore(PredictionStore):
    """PredictionStore in dicts; one lock plays the part of DynamoDB's conditions and transactions.
    Only the calls that touch AWS are replaced: writing, folding and reading views are the real store's."""

    def __init__(self, count_shards: int = 8, predictions_table: str = "predictions", counts_table: str = "counts"):
        super().__init__(None, predictions_table, counts_table, count_shards)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.counters: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    # -- the shard count the counters were written with --------------------------------------
    def recorded_count_shards(self) -> int | None:
        record = self.counters.get(("#deployment", "count_shards"))
        return int(record["shards"]) if record else None

    def _record_count_shards(self) -> None:
        with self._lock:
            self.counters[("#deployment", "count_shards")] = {"pk": "#deployment", "sk": "count_shards",
                                                              "shards": self.count_shards, "updated_at": utc_now()}

    # -- writes ---------------------------------------------------------------------------
    def _put_new(self, row: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            key = (row["image_id"], row["sk"])
            if key in self.rows:
                return dict(self.rows[key])
            self.rows[key] = _stored(row)
            return None

    def _create_fold(self, pk: str, sk: str, items: Sequence[CountedItem]) -> bool:
        with self._lock:
            if (pk, sk) in self.counters:
                return False
            self.counters[(pk, sk)] = _stored(self._fold_marker(pk, sk, items, utc_now()))
            return True

    def _fold_markers(self, pk: str, owner: str = "") -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for (p, sk), row in sorted(self.counters.items()) if p == pk and sk.startswith(owner)]

    def mark_failed(self, failures: Iterable[Failure]) -> None:
        with self._lock:
            for f in failures:
                self.rows[(f.image.image_id, FAILED)] = _stored({
                    "image_id": f.image.image_id, "sk": FAILED, "run_id": f.run_id, "stage": f.stage,
                    "reason": f.reason, "recorded_at": f.recorded_at,
                })

    # -- reads ----------------------------------------------------------------------------
    def _get_raw(self, keys: list[dict[str, str]], projection: str | None = None) -> Iterator[dict[str, Any]]:
        for key in keys:
            row = self.rows.get((key["image_id"], key["sk"]))
            if row is not None:
                yield project(row, projection)

    def _rows_of(self, image_id: str) -> list[dict[str, Any]]:
        return [dict(row) for (i, _), row in sorted(self.rows.items()) if i == image_id]

    def _scan_rows(self) -> Iterator[dict[str, Any]]:
        return iter([dict(row) for row in list(self.rows.values())])

    def _marked_on(self, date: str) -> list[dict[str, Any]]:
        return [dict(row) for row in list(self.rows.values())
                if str(row.get("date_shard", "")).startswith(f"{date}#")
                and int(row["date_shard"].rsplit("#", 1)[1]) < self.count_shards]

    def below_confidence(self, model_version: str, threshold: float) -> list[dict[str, Any]]:
        return [view for row in self._scan_rows() for view in self._views(row)
                if view["sk"] == MODEL_PREFIX + model_version and view["confidence"] < threshold]

    def _counter_shard(self, date: str, shard: int) -> dict[str, int]:
        return {label: int(row["count"]) for (pk, label), row in list(self.counters.items())
                if pk == f"{date}#{shard:02d}"}

    def write_rollup(self, date: str, counts: dict[str, int]) -> None:
        now = utc_now()
        with self._lock:
            for label, n in counts.items():
                row = self.counters.get((date, label))
                if row is not None and int(row["count"]) > n:
                    continue  # never lower a total that a later recount already raised
                self.counters[(date, label)] = {"pk": date, "sk": label, "count": n, "updated_at": now, "date": date}

    def rollups(self) -> dict[str, dict[str, int]]:
        days: dict[str, dict[str, int]] = defaultdict(dict)
        for (pk, label), row in sorted(self.counters.items()):
            if "#" not in pk:
                days[pk][label] = int(row["count"])
        return dict(sorted(days.items()))


class InMemoryFailureStore(FailureStore):
    """FailureStore in a dict keyed as the table is: (run_id, image_id)."""

    def __init__(self, table: str = "failures") -> None:
        super().__init__(None, table)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def record(self, failures: Sequence[Failure]) -> None:
        for f in failures:
            self.rows[(f.run_id, f.image.image_id)] = _stored({
                "run_id": f.run_id,
                "image_id": f.image.image_id,
                "stage": f.stage,
                "reason": f.reason[:1000],
                "error_type": f.error_type,
                "batch_id": f.batch_id,
                "image": f.image.to_dict(),
                "recorded_at": f.recorded_at,
            })

    def for_run(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.each_for_run(run_id))

    def each_for_run(self, run_id: str) -> Iterator[dict[str, Any]]:
        return iter([dict(row) for (run, _), row in sorted(self.rows.items()) if run == run_id])


class InMemoryRunStateStore(RunStateStore):
    """RunStateStore in a dict keyed as the table is: (pk, sk)."""

    def __init__(self, table: str = "state") -> None:
        super().__init__(None, table)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def checkpoint(self, scope: str) -> str | None:
        row = self.rows.get(("checkpoint", scope))
        return str(row["last_modified"]) if row else None

    def advance_checkpoint(self, scope: str, last_modified: str, run_id: str) -> bool:
        with self._lock:
            row = self.rows.get(("checkpoint", scope))
            # The same string comparison as the real store's condition "last_modified < :t".
            if row is not None and not row["last_modified"] < last_modified:
                return False
            self.rows[("checkpoint", scope)] = {"pk": "checkpoint", "sk": scope, "last_modified": last_modified,
                                                "run_id": run_id, "updated_at": utc_now()}
            return True

    def put_batch_result(self, run_id: str, batch_id: str, result: dict[str, Any]) -> None:
        self.rows[(f"run#{run_id}", f"batch#{batch_id}")] = _stored(
            {"pk": f"run#{run_id}", "sk": f"batch#{batch_id}", **result, "updated_at": utc_now()})

    def batch_results(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(row) for (pk, sk), row in sorted(self.rows.items())
                if pk == f"run#{run_id}" and sk.startswith("batch#")]

    def put_batch_results(self, run_id: str, results: Sequence[dict[str, Any]]) -> None:
        for result in results:
            self.put_batch_result(run_id, str(result["batch_id"]), result)

    def batches_with_result(self, run_id: str, batch_ids: Sequence[str]) -> set[str]:
        return {b for b in batch_ids if (f"run#{run_id}", f"batch#{b}") in self.rows}


@dataclass
class _StoredVersion:
    version_id: str
    data: bytes
    last_modified: datetime
    content_type: str = "binary/octet-stream"


class InMemoryImageSource(ImageSource):
    """ImageSource over versioned buckets in memory. Each upload is a new version, as in a
    versioned bucket; LastModified comes from a clock that moves a second per upload unless given."""

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__(None)
        self.objects: dict[str, dict[str, list[_StoredVersion]]] = defaultdict(dict)  # bucket -> key -> versions
        self.denied: set[tuple[str, str]] = set()  # (bucket, key) that reads are refused for
        self._clock = (start or datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)).replace(microsecond=0)
        self._lock = threading.Lock()

    # -- test set-up ------------------------------------------------------------------------
    def put(self, bucket: str, key: str, data: bytes, last_modified: str | datetime | None = None,
            content_type: str = "binary/octet-stream") -> ImageVersion:
        with self._lock:
            if last_modified is None:
                self._clock += timedelta(seconds=1)
                when = self._clock
            elif isinstance(last_modified, str):
                when = parse_timestamp(last_modified)
            else:
                when = last_modified
            version = _StoredVersion(uuid.uuid4().hex, bytes(data), when.replace(microsecond=0), content_type)
            self.objects[bucket].setdefault(key, []).append(version)
        return ImageVersion(bucket, key, version.version_id, version.last_modified.isoformat(), len(data))

    def delete_all_versions(self, bucket: str, prefix: str) -> int:
        keys = [key for key in self.objects.get(bucket, {}) if key.startswith(prefix)]
        deleted = sum(len(self.objects[bucket].pop(key)) for key in keys)
        return deleted

    def delete_version(self, bucket: str, key: str, version_id: str) -> None:
        versions = self.objects[bucket].get(key, [])
        self.objects[bucket][key] = [v for v in versions if v.version_id != version_id]
        if not self.objects[bucket][key]:
            del self.objects[bucket][key]

    def _find(self, bucket: str, key: str, version_id: str | None) -> _StoredVersion | None:
        versions = self.objects.get(bucket, {}).get(key, [])
        if version_id is None:
            return versions[-1] if versions else None
        return next((v for v in versions if v.version_id == version_id), None)

    # -- the ImageSource contract -------------------------------------------------------------
    def read(self, image: ImageVersion, max_bytes: int) -> bytes:
        return self.read_object(image.bucket, image.key, max_bytes, image.version_id)

    def read_object(self, bucket: str, key: str, max_bytes: int | None = None, version_id: str | None = None) -> bytes:
        if (bucket, key) in self.denied:
            raise ObjectUnreadable("AccessDenied", "access denied reading the object version")
        found = self._find(bucket, key, version_id)
        if found is None:
            code = "NoSuchVersion" if version_id else "NoSuchKey"
            raise ObjectUnreadable(code, "the object version was deleted before it was scored")
        if max_bytes is not None and len(found.data) > max_bytes:
            raise ImageTooLarge(f"object is {len(found.data)} bytes, above the limit of {max_bytes} bytes")
        return found.data

    def head(self, bucket: str, key: str, version_id: str | None = None) -> ImageVersion | None:
        found = self._find(bucket, key, version_id)
        if found is None:
            return None
        return ImageVersion(bucket, key, found.version_id, found.last_modified.isoformat(), len(found.data))

    def list_versions(self, bucket: str, prefix: str) -> Iterator[ImageVersion]:
        # As S3 lists them: keys in order, the newest version of a key first.
        for key in sorted(self.objects.get(bucket, {})):
            if not key.startswith(prefix) or key.endswith("/"):
                continue
            for found in reversed(self.objects[bucket][key]):
                yield ImageVersion(bucket, key, found.version_id, found.last_modified.isoformat(), len(found.data))

    def version_pages(
        self, bucket: str, prefix: str, cursor: dict[str, str] | None = None
    ) -> Iterator[VersionPage]:
        versions = list(self.list_versions(bucket, prefix))
        start = 0
        if cursor:
            marker = (cursor["key_marker"], cursor.get("version_id_marker", ""))
            start = next(n for n, v in enumerate(versions) if (v.key, v.version_id) == marker) + 1
        while True:
            page = versions[start:start + self.page_size]
            start += len(page)
            if start >= len(versions):
                yield VersionPage(page, None)
                return
            yield VersionPage(page, {"key_marker": page[-1].key, "version_id_marker": page[-1].version_id})

    def list_objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, str]]:
        for key in sorted(self.objects.get(bucket, {})):
            if key.startswith(prefix):
                yield key, self.objects[bucket][key][-1].last_modified.isoformat()

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        return sorted({key[len(prefix):].split("/", 1)[0] for key in self.objects.get(bucket, {})
                       if key.startswith(prefix) and "/" in key[len(prefix):]})

    def write_json(self, bucket: str, key: str, value: Any) -> None:
        self.put(bucket, key, json.dumps(value).encode(), content_type="application/json")

    def write_text(self, bucket: str, key: str, text: str, content_type: str) -> None:
        self.put(bucket, key, text.encode(), content_type=content_type)

    def read_json(self, bucket: str, key: str) -> Any:
        return json.loads(self.read_object(bucket, key))

    def upload_file(self, bucket: str, key: str, file: Any, content_type: str) -> None:
        self.put(bucket, key, file.read(), content_type=content_type)

    def stream_object(self, bucket: str, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        data = self.read_object(bucket, key)
        for start in range(0, len(data), chunk_bytes):
            yield data[start:start + chunk_bytes]


class InMemoryRegistryStorage:
    """A model registry's files in a dict, for ModelRegistry(storage=...)."""

    def __init__(self, location: str = "memory://models/model") -> None:
        self.location = location.rstrip("/")
        self.files: dict[str, bytes] = {}

    def read(self, relative: str) -> bytes:
        if relative not in self.files:
            raise ModelFileMissing(f"cannot read {self.location}/{relative}: no such file")
        return self.files[relative]

    def write(self, relative: str, data: bytes) -> None:
        self.files[relative] = bytes(data)

    def folders(self) -> list[str]:
        return sorted({relative.split("/", 1)[0] for relative in self.files if "/" in relative})

    def file_names(self, folder: str) -> list[str]:
        inside = f"{folder}/"
        return sorted(r[len(inside):] for r in self.files if r.startswith(inside) and "/" not in r[len(inside):])

    def local_path(self, relative: str) -> Path | None:
        return None
