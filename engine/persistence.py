"""Local state that survives a restart: snapshots of moto's S3, DynamoDB and Step Functions state in a folder.

Why pickling plus an export, not one or the other: S3 objects and DynamoDB tables must come back with
the same version ids, LastModified times and items, which no public API can recreate, so their moto
backend objects are pickled (a few reducers stand in for their locks and spooled files). Step
Functions executions hold live interpreter threads and cannot be pickled; an ended execution is
exported as plain data (description, history events, map runs) and restored as a read-only
execution that answers DescribeExecution, GetExecutionHistory, ListMapRuns and DescribeMapRun as
before. An execution still running when a snapshot is taken is saved as ABORTED, with the history it
had so far: a restart cannot resume it, and its images are listed again by the next run.

Snapshots are written atomically (a temporary file, fsync, rename), every `SNAPSHOT_SECONDS` while
the stack runs and once more on a graceful stop, so a hard kill loses at most that many seconds.
"""

from __future__ import annotations

import datetime
import fcntl
import io
import os
import pickle
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SNAPSHOT_FILE = "state.pickle"
LOCK_FILE = "lock"
FORMAT = 1
SNAPSHOT_SECONDS = 5.0
ABORTED_CAUSE = "the local stack stopped while this run was in progress; a restart does not resume it"


class StateError(RuntimeError):
    """The saved state cannot be used; the message says why and what to do, on one line."""


# -- pickling moto's S3 and DynamoDB objects -----------------------------------------------------
_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _new_lock(reentrant: bool) -> Any:
    return threading.RLock() if reentrant else threading.Lock()


def _spooled_file(data: bytes) -> Any:
    spooled = tempfile.SpooledTemporaryFile()
    spooled.write(data)
    return spooled


def _fake_key(state: dict[str, Any], value: bytes) -> Any:
    from moto.s3.models import FakeKey

    key: Any = FakeKey.__new__(FakeKey)
    key.__dict__.update(state)
    key.lock = threading.Lock()
    key._value_buffer = tempfile.SpooledTemporaryFile(key._max_buffer_size)
    key._value_buffer.write(value)  # as stored: no new etag or LastModified
    return key


def _versioned_keys(versions: dict[str, list[Any]]) -> Any:
    from moto.s3.utils import _VersionedKeyStore

    store = _VersionedKeyStore()
    for name, keys in versions.items():
        store.setlist(name, keys)
    return store


class _BackendPickler(pickle.Pickler):
    """Pickles moto's model objects: locks become new locks, an object's bytes are read under its lock."""

    def reducer_override(self, obj: Any) -> Any:
        from moto.s3.models import FakeKey
        from moto.s3.utils import _VersionedKeyStore

        if isinstance(obj, _VersionedKeyStore):  # a dict whose __setitem__ appends: unpickled by hand
            return _versioned_keys, ({name: list(keys) for name, keys in dict.items(obj)},)
        if isinstance(obj, FakeKey):
            state = {k: v for k, v in obj.__dict__.items() if k not in ("lock", "_value_buffer")}
            return _fake_key, (state, obj.value)
        if isinstance(obj, _LOCK_TYPES):
            return _new_lock, (isinstance(obj, _LOCK_TYPES[1]),)
        if isinstance(obj, tempfile.SpooledTemporaryFile):
            obj.seek(0)
            return _spooled_file, (obj.read(),)
        return NotImplemented


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    _BackendPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()


def _stable_dumps(value: Any, attempts: int = 20) -> bytes:
    """Pickle objects that request threads may change meanwhile: try again when a dict changed under us."""
    for attempt in range(attempts):
        try:
            return _dumps(value)
        except RuntimeError as error:  # "dictionary changed size during iteration"
            if attempt == attempts - 1:
                raise StateError(f"the local state kept changing while it was saved: {error}") from None
            threading.Event().wait(0.05)
    raise AssertionError("unreachable")


# -- Step Functions executions as data ----------------------------------------------------------
class _History:
    def __init__(self, events: list[dict[str, Any]]):
        self._events = events

    def get_event_history(self) -> list[dict[str, Any]]:
        return list(self._events)


class _MapRun:
    def __init__(self, listed: dict[str, Any], described: dict[str, Any]):
        self.listed, self.described = listed, described

    def list_item(self) -> dict[str, Any]:
        return self.listed

    def describe(self) -> dict[str, Any]:
        return self.described


class _MapRuns:
    def __init__(self, runs: list[_MapRun]):
        self._runs = runs

    def get(self, arn: str) -> _MapRun | None:
        return next((run for run in self._runs if run.listed["mapRunArn"] == arn), None)

    def get_all(self) -> list[_MapRun]:
        return list(self._runs)


@dataclass
class _Environment:
    event_manager: _History
    map_run_record_pool_manager: _MapRuns


@dataclass
class _EndedWorker:
    """What moto's backend reads from an execution's worker, for an execution that has ended."""

    env: _Environment

    def stop(self, stop_date: Any = None, cause: Any = None, error: Any = None) -> None:
        return None  # already ended: StopExecution changes nothing, as in AWS


@dataclass
class SavedExecution:
    name: str
    arn: str
    status: str
    start_date: datetime.datetime
    stop_date: datetime.datetime | None
    input: str
    output: Any
    error: str | None
    cause: str | None
    events: list[dict[str, Any]] = field(default_factory=list)
    map_runs: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


def export_execution(execution: Any, now: datetime.datetime) -> SavedExecution:
    env = execution.exec_worker.env if execution.exec_worker is not None else None
    events = env.event_manager.get_event_history() if env is not None else []
    map_runs = [(r.list_item(), r.describe()) for r in env.map_run_record_pool_manager.get_all()] if env else []
    running = execution.status == "RUNNING"
    return SavedExecution(
        name=execution.name,
        arn=execution.execution_arn,
        status="ABORTED" if running else execution.status,
        start_date=execution.start_date,
        stop_date=now if running else execution.stop_date,
        input=execution.execution_input,
        output=None if running else execution.output,
        error="States.Aborted" if running else execution.error,
        cause=ABORTED_CAUSE if running else execution.cause,
        events=events,
        map_runs=map_runs,
    )


def restored_execution(saved: SavedExecution, state_machine: Any, account: str, region: str) -> Any:
    """A moto execution that has ended: it answers every read as the original did."""
    from moto.stepfunctions.parser.api import CloudWatchEventsExecutionDataDetails, ExecutionStatus
    from moto.stepfunctions.parser.backend.execution import Execution

    execution = Execution.__new__(Execution)
    execution.name = saved.name
    execution.exec_arn = execution.execution_arn = saved.arn
    execution.state_machine = state_machine
    execution.state_machine_arn = state_machine.arn
    execution.sm_type = state_machine.sm_type
    execution.role_arn = state_machine.roleArn
    execution.account_id, execution.region_name = account, region
    execution.start_date, execution.stop_date = saved.start_date, saved.stop_date
    execution.execution_input = saved.input
    execution.input_data = None
    execution.input_details = execution.output_details = CloudWatchEventsExecutionDataDetails(included=True)
    execution.trace_header = None
    execution.exec_status = ExecutionStatus(saved.status)
    execution.output, execution.error, execution.cause = saved.output, saved.error, saved.cause
    execution._activity_store = {}
    execution._cloud_watch_logging_session = None
    execution.exec_worker = _EndedWorker(_Environment(  # type: ignore[assignment]
        _History(saved.events), _MapRuns([_MapRun(listed, described) for listed, described in saved.map_runs])))
    return execution


# -- the snapshot -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """The account, region and state machine whose state is kept."""

    account: str
    region: str
    state_machine_arn: str


def _backends(scope: Scope) -> tuple[Any, Any, Any]:
    from moto.backends import get_backend
    from moto.stepfunctions.responses import get_backend as stepfunctions_backend

    s3 = get_backend("s3")
    dynamodb = get_backend("dynamodb")[scope.account][scope.region]
    return s3, dynamodb, stepfunctions_backend(scope.account, scope.region)


def fingerprint(scope: Scope) -> tuple[Any, ...]:
    """A cheap summary that changes when the state does: object versions per bucket, items per table, each
    execution's status. A run in progress changes it every time (its history grows), so it is saved as it goes;
    in-place updates (a counter, a rollup) happen inside runs, whose end changes it too."""
    s3_backends, dynamodb, stepfunctions = _backends(scope)
    s3 = s3_backends[scope.account]["aws"]
    buckets = tuple((name, sum(len(versions) for versions in dict.values(bucket.keys)))
                    for name, bucket in list(s3.buckets.items()))
    tables = tuple((name, sum(len(v) if isinstance(v, dict) else 1 for v in list(table.items.values())))
                   for name, table in list(dynamodb.tables.items()))
    executions = tuple((e.name, e.status) for e in list(
        stepfunctions.describe_state_machine(scope.state_machine_arn).executions))
    running = any(status == "RUNNING" for _, status in executions)
    return buckets, tables, executions, object() if running else None


def capture(scope: Scope, dynamodb_lock: Any = None, ended: dict[str, SavedExecution] | None = None) -> bytes:
    """The whole state of the stack as bytes: S3 buckets, DynamoDB tables, the state machine's executions.

    `ended` keeps the exports of executions that have ended, which never change, from one capture to the next.
    """
    import moto

    s3_backends, dynamodb, stepfunctions = _backends(scope)
    s3 = s3_backends[scope.account]["aws"]
    buckets = _stable_dumps((dict(s3.buckets), dict(s3_backends.bucket_accounts)))
    if dynamodb_lock is not None:
        with dynamodb_lock:  # a table is never saved halfway through a transaction
            tables = _stable_dumps(dict(dynamodb.tables))
    else:
        tables = _stable_dumps(dict(dynamodb.tables))
    now = datetime.datetime.now(tz=datetime.timezone.utc)
    state_machine = stepfunctions.describe_state_machine(scope.state_machine_arn)
    executions = []
    for execution in list(state_machine.executions):
        saved = ended.get(execution.execution_arn) if ended is not None else None
        if saved is None:
            saved = export_execution(execution, now)
            if ended is not None and execution.status != "RUNNING":
                ended[execution.execution_arn] = saved
        executions.append(saved)
    return pickle.dumps({
        "format": FORMAT,
        "moto": moto.__version__,
        "saved_at": now.isoformat(timespec="seconds"),
        "state_machine_arn": scope.state_machine_arn,
        "buckets": buckets,
        "tables": tables,
        "executions": executions,
    }, protocol=pickle.HIGHEST_PROTOCOL)


def read_snapshot(path: Path) -> dict[str, Any]:
    """The saved state, checked: anything unusable is a StateError naming the file and the fix."""
    import moto

    fix = "start with --fresh to discard it, or --state-dir to use another folder"
    try:
        snapshot = pickle.loads(path.read_bytes())
    except Exception as error:
        raise StateError(f"cannot restore the local state from {path}: {type(error).__name__}: {error}; "
                         f"{fix}") from None
    if not isinstance(snapshot, dict) or snapshot.get("format") != FORMAT:
        raise StateError(f"cannot restore the local state from {path}: not a batchinfer state of format {FORMAT}; "
                         f"{fix}")
    if snapshot.get("moto") != moto.__version__:
        raise StateError(f"cannot restore the local state from {path}: saved with moto {snapshot.get('moto')}, "
                         f"this is moto {moto.__version__}; {fix}")
    try:
        snapshot["buckets"] = pickle.loads(snapshot["buckets"])
        snapshot["tables"] = pickle.loads(snapshot["tables"])
    except Exception as error:
        raise StateError(f"cannot restore the local state from {path}: {type(error).__name__}: {error}; "
                         f"{fix}") from None
    return snapshot


def restore(scope: Scope, snapshot: dict[str, Any]) -> int:
    """Put a snapshot's state in place of the new stack's empty resources; returns the runs restored."""
    if snapshot["state_machine_arn"] != scope.state_machine_arn:
        raise StateError(f"the saved state belongs to {snapshot['state_machine_arn']}, not "
                         f"{scope.state_machine_arn}; start with --fresh or use its own --state-dir")
    s3_backends, dynamodb, stepfunctions = _backends(scope)
    buckets, bucket_accounts = snapshot["buckets"]
    s3 = s3_backends[scope.account]["aws"]
    s3.buckets.clear()
    s3.buckets.update(buckets)
    s3_backends.bucket_accounts.update(bucket_accounts)
    dynamodb.tables.clear()
    dynamodb.tables.update(snapshot["tables"])
    state_machine = stepfunctions.describe_state_machine(scope.state_machine_arn)
    restored = [restored_execution(saved, state_machine, scope.account, scope.region)
                for saved in snapshot["executions"]]
    state_machine.executions[:0] = restored
    return len(restored)


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, rename: a reader sees the old or the new file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(scratch, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(scratch, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class StateKeeper:
    """Owns a state folder while a stack runs: restores it at start, snapshots it, saves it at stop.

    One stack at a time per folder: an exclusive lock on `<folder>/lock`, which the system drops when
    the process ends, however it ends.
    """

    def __init__(self, folder: Path, interval: float = SNAPSHOT_SECONDS):
        self.folder = folder
        self.interval = interval
        self.snapshot_path = folder / SNAPSHOT_FILE
        self._lock_handle: Any = None
        self._scope: Scope | None = None
        self._dynamodb_lock: Any = None
        self._last_fingerprint: Any = None
        self._ended: dict[str, SavedExecution] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._save_lock = threading.Lock()
        self.saves = 0

    def claim(self, fresh: bool = False) -> dict[str, Any] | None:
        """Lock the folder and read its snapshot (None if there is none, or with `fresh`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            handle.close()
            raise StateError(f"the state folder {self.folder} is in use by another local stack (pid {owner}); "
                             "give this one its own --state-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        if fresh:
            self.snapshot_path.unlink(missing_ok=True)
            return None
        if not self.snapshot_path.exists():
            return None
        try:
            return read_snapshot(self.snapshot_path)
        except StateError:
            self.release()
            raise

    def keep(self, scope: Scope, dynamodb_lock: Any = None) -> None:
        """Start the periodic snapshots of this stack."""
        self._scope, self._dynamodb_lock = scope, dynamodb_lock
        self.save()
        self._thread = threading.Thread(target=self._loop, name="local-state", daemon=True)
        self._thread.start()

    def save(self) -> bool:
        """Snapshot now; False when nothing changed since the last one (a capture costs CPU the stack needs)."""
        assert self._scope is not None
        with self._save_lock:
            before = fingerprint(self._scope)
            if before == self._last_fingerprint:
                return False
            write_atomically(self.snapshot_path, capture(self._scope, self._dynamodb_lock, self._ended))
            self._last_fingerprint = before
            self.saves += 1
            return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.save()
            except Exception:  # a failed snapshot must not stop the stack; the next one tries again
                continue

    def close(self) -> None:
        """The final snapshot of a graceful stop, then let the folder go."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._scope is not None:
            self.save()
        self.release()

    def release(self) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

