"""Step Functions: what the embedded engine changes in moto's interpreter and API (fixes 3 to 9, 12 to 14).

3. A Map worker loops over its items instead of recursing. moto's workers (`_eval_pool`) call
   themselves once per item, so past ~1,000 items a worker thread dies with RecursionError.
4. A Map whose worker thread dies fails with `States.Runtime` naming the cause, instead of
   waiting forever for items that no thread will run (the run would stay RUNNING).
5. The 256 KiB payload quota where moto does not check it: a state's input, the input after
   Parameters/ItemSelector (a Task's payload, a Map child's input), a Map's gathered result
   before ResultSelector/ResultPath, and StartExecution's input (ValidationException, as AWS's
   API answers). moto already checks a state's output and a Task's result.
6. `States.ALL` does not match `States.DataLimitExceeded` or `States.Runtime`: both are terminal
   in AWS (a Retry or Catch on States.ALL does not see them); moto matched them.
7. A Parallel branch or inline Map iteration that fails with a `States.*` error passes that error
   on, as AWS does; moto rebuilt it as a custom error name, which refuses the `States.` prefix, so
   every such error became `States.Runtime`.
8. The EXPRESS child's 5-minute limit. moto runs Distributed Map children only as STANDARD, so the
   engine deploys them so (workflow.definition.adapt_for_local_engine) and tells this module which
   Map states had EXPRESS children (`set_express_children`); a child of those that runs past
   5 minutes (times `time_scale`) ends TIMED_OUT with `States.Timeout`, as in AWS, whatever its
   Tasks' TimeoutSeconds or Retry say. Its thread, like a timed-out Lambda handler's, finishes in
   the background and its outcome is dropped.
9. A Distributed Map's tolerated failures: moto parsed ToleratedFailureCount/Percentage but
   ignored failed children (the Map succeeded whatever failed). Now failed and timed-out children
   count against the threshold, default 0, and past it the Map fails with
   `States.ExceedToleratedFailureThreshold`. Each child's input, and a failed child's error and
   cause, are kept on the Map Run for the ResultWriter (fix 12). moto's grammar also refused a
   whole-number `ToleratedFailurePercentage` (`5`, as AWS's examples write it; only `5.0` parsed):
   the definition text is read with such numbers as decimals.

12. A Distributed Map's ResultWriter writes AWS's result files beside manifest.json:
    SUCCEEDED_0.json and FAILED_0.json (failed and timed-out children, with Error and Cause), each
    an array of child execution records with Input and Output as JSON strings, listed in the
    manifest's ResultFiles. moto wrote an empty manifest only.
13. ListMapRuns on an execution that has just started lists no Map Run, and DescribeMapRun skips
    executions still building their environment (moto answered a 500 in those moments, which are
    when the run console and `batchinfer show` poll a new run).
14. A Distributed Map's ResultWriter reads its Parameters' paths (`"Bucket.$"`, `"Prefix.$"`) from the
    Map state's input, as in AWS; moto read them from the list of the children's results, so a path
    into the state's input failed the Map with States.Runtime.
20. StopExecution keeps its `error` and `cause`: DescribeExecution of the aborted execution returns them, as in
    AWS (`batchinfer stop` says there who stopped the run, and why). moto dropped both.
21. An execution's history holds at most 25,000 events, AWS's hard quota (`limits.history_events`, lower in
    tests): a state about to start in an execution whose history has reached it fails the execution with
    `States.Runtime`, as AWS fails it. moto let a history grow without end. A Distributed Map's children have
    histories of their own, as in AWS: their events do not count against the parent's.
22. The `arn:aws:states:::states:startExecution` task passes its parameters (`StateMachineArn`, `Name`,
    `Input`, as the integration names them) to the SDK under the API's own names (`stateMachineArn`, ...).
    moto passed them as written, which the SDK refuses (KeyError), so every such task failed with
    States.Runtime. Its result is under the integration's names too (`ExecutionArn`, `StartDate`), the date
    as ISO 8601 text rather than the SDK's datetime, which no later read of the state could serialise.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contract.resource_spec import (
    EXPRESS_EXECUTION_SECONDS,
    STATES_HISTORY_EVENTS,
    STATES_PAYLOAD_BYTES,
)


def map_workers_loop() -> None:
    """Fix 3: run each Map worker's items in a loop.

    moto's `_eval_pool` ends with a tail call to itself for the next item. The wrapper lets the
    outermost call run moto's own code and turns each inner (tail) call into the next turn of a
    loop, so the worker's logic stays moto's and its stack depth stays constant.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator import (
        distributed_iterator_worker,
    )

    for worker_class in (
        iteration_worker.IterationWorker,
        distributed_item_processor_worker.DistributedItemProcessorWorker,
        distributed_iterator_worker.DistributedIteratorWorker,
    ):
        original = worker_class.__dict__["_eval_pool"]
        if getattr(original, "_looping", False):
            continue
        worker_class._eval_pool = _looping(original)  # type: ignore[method-assign]


def _looping(original: Callable[..., None]) -> Callable[..., None]:
    def _eval_pool(self: Any, job: Any, worker_frame: Any) -> None:
        if getattr(self, "_in_pool", False):
            self._next_pool_call = (job, worker_frame)  # moto's tail call: the loop below runs it
            return
        self._in_pool = True
        try:
            call: tuple[Any, Any] | None = (job, worker_frame)
            while call is not None:
                self._next_pool_call = None
                original(self, *call)
                call = self._next_pool_call
        finally:
            self._in_pool = False

    _eval_pool._looping = True  # type: ignore[attr-defined]
    return _eval_pool


def dead_map_workers_fail_the_map() -> None:
    """Fix 4: an error that escapes a Map worker's thread ends the Map with a clear error."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
        inline_iteration_component as inline,
    )

    component = inline.InlineIterationComponent
    if getattr(component._launch_worker, "_watched", False):
        return

    def _launch_worker(self: Any, env: Any, eval_input: Any, job_pool: Any) -> Any:
        worker = self._create_worker(env=env, eval_input=eval_input, job_pool=job_pool)
        worker._child_seconds = _express_child_seconds(env, eval_input.state_name)  # fix 8
        thread = threading.Thread(target=_watched_worker, args=(worker, env, job_pool), daemon=True)
        inline.TMP_THREADS.append(thread)
        thread.start()
        return worker

    _launch_worker._watched = True  # type: ignore[attr-defined]
    component._launch_worker = _launch_worker  # type: ignore[method-assign]


def _watched_worker(worker: Any, env: Any, job_pool: Any) -> None:
    try:
        worker.eval()
    except BaseException as exc:  # the thread is ending: whatever it was, the Map must hear of it
        cause = (
            f"A Map worker thread of the embedded engine died with {type(exc).__name__}: {exc}; "
            "the items it had not finished can no longer run, so the Map fails instead of waiting for them."
        )
        with job_pool._mutex:
            if job_pool._worker_exception is None:
                job_pool._worker_exception = _runtime_failure(env, cause)
            job_pool._termination_event.set()
        if not isinstance(exc, Exception):
            raise


def _runtime_failure(env: Any, cause: str) -> Exception:
    return _states_failure(env, "StatesRuntime", cause, execution=True)


def _states_failure(env: Any, error_type: str, cause: str, execution: bool = False) -> Exception:
    """A `States.*` error as moto's interpreter raises it: a failed task, or (`execution`) a failed execution."""
    from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    typ = getattr(StatesErrorNameType, error_type)
    if execution:
        event_type = HistoryEventType.ExecutionFailed
        details = EventDetails(  # type: ignore[typeddict-item]  # moto builds it the same way
            executionFailedEventDetails=ExecutionFailedEventDetails(error=typ.to_name(), cause=cause))
    else:
        event_type = HistoryEventType.TaskFailed
        details = EventDetails(  # type: ignore[typeddict-item]  # moto builds it the same way
            taskFailedEventDetails=TaskFailedEventDetails(error=typ.to_name(), cause=cause))
    return FailureEventException(failure_event=FailureEvent(
        env=env, error_name=StatesErrorName(typ=typ), event_type=event_type, event_details=details))


PAYLOAD_QUOTA_BYTES = STATES_PAYLOAD_BYTES
# The Map state being evaluated on this thread (innermost last): its Map Run and workers start here.
_current_map = threading.local()


def _payload_bytes(value: Any) -> int:
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    return len((value if isinstance(value, str) else to_json_str(value)).encode("utf-8"))


def _check_payload(env: Any, value: Any, what: str) -> None:
    size = _payload_bytes(value)
    if size > PAYLOAD_QUOTA_BYTES:
        raise _data_limit_failure(env, f"{what} has {size} bytes, over the {PAYLOAD_QUOTA_BYTES}-byte payload quota")


def _data_limit_failure(env: Any, cause: str) -> Exception:
    return _states_failure(env, "StatesStatesDataLimitExceeded", cause)


def payload_quota() -> None:
    """Fix 5: enforce the 256 KiB payload quota where moto does not."""
    from moto.stepfunctions import models as sfn_models
    from moto.stepfunctions.exceptions import ValidationException
    from moto.stepfunctions.parser import models as parser_models
    from moto.stepfunctions.parser.asl.component.common.parargs import Parargs
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_selector import ItemSelector
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField

    if getattr(CommonStateField._eval_body, "_quota", False):
        return

    state_body = CommonStateField._eval_body

    def state_eval_body(self: Any, env: Any) -> None:
        _check_payload(env, env.states.get_input(), f"The input of state '{self.name}'")
        state_body(self, env)

    def after(original: Callable[..., None], what: Callable[[Any], str]) -> Callable[..., None]:
        def eval_body(self: Any, env: Any) -> None:
            original(self, env)
            _check_payload(env, env.stack[-1], what(self))

        return eval_body

    def start_execution(original: Callable[..., Any]) -> Callable[..., Any]:
        def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
            execution_input = kwargs.get("execution_input", args[2] if len(args) > 2 else None)
            if execution_input is not None and _payload_bytes(execution_input) > PAYLOAD_QUOTA_BYTES:
                # AWS's API model caps `input` at 262144 and answers a longer one with this error.
                raise ValidationException(
                    "1 validation error detected: Value at 'input' failed to satisfy constraint: "
                    f"Member must have length less than or equal to {PAYLOAD_QUOTA_BYTES}"
                )
            return original(self, *args, **kwargs)

        return checked

    CommonStateField._eval_body = state_eval_body  # type: ignore[method-assign]
    CommonStateField._eval_body._quota = True  # type: ignore[attr-defined]
    Parargs._eval_body = after(Parargs._eval_body, lambda _: "The input after Parameters")  # type: ignore[method-assign]
    ItemSelector._eval_body = after(  # type: ignore[method-assign]
        ItemSelector._eval_body, lambda _: "A Map child's input after ItemSelector"
    )
    map_execution = StateMap._eval_execution

    def eval_map_execution(self: Any, env: Any) -> None:
        _current_map.states = [*getattr(_current_map, "states", []), self]  # read by fixes 8 and 9
        try:
            map_execution(self, env)
        finally:
            _current_map.states = _current_map.states[:-1]
        _check_payload(env, env.stack[-1], f"The result of Map state '{self.name}'")

    StateMap._eval_execution = eval_map_execution  # type: ignore[method-assign]
    for backend in (sfn_models.StepFunctionBackend, parser_models.StepFunctionsParserBackend):
        if "start_execution" in backend.__dict__:
            backend.start_execution = start_execution(backend.__dict__["start_execution"])  # type: ignore[method-assign]


def terminal_errors_escape_states_all() -> None:
    """Fix 6: a Retry or Catch on States.ALL does not see States.DataLimitExceeded or States.Runtime."""
    from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import ErrorEqualsDecl
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )

    if getattr(ErrorEqualsDecl._eval_body, "_terminal", False):
        return
    original = ErrorEqualsDecl._eval_body
    terminal = {StatesErrorNameType.StatesStatesDataLimitExceeded, StatesErrorNameType.StatesRuntime}

    def _eval_body(self: Any, env: Any) -> None:
        error_name = env.stack[-1]
        terminal_error = isinstance(error_name, StatesErrorName) and error_name.typ in terminal
        if terminal_error and error_name not in self.error_names:
            env.stack.pop()
            env.stack.append(False)  # only an explicit ErrorEquals on the name itself matches
            return
        original(self, env)

    _eval_body._terminal = True  # type: ignore[attr-defined]
    ErrorEqualsDecl._eval_body = _eval_body  # type: ignore[method-assign]


def states_errors_pass_through_branches() -> None:
    """Fix 7: a branch's or iteration's `States.*` error keeps its name."""
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import iteration_worker
    from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl

    def error_name_of(error_name: str) -> Any:
        if error_name.startswith("States."):
            try:
                return StatesErrorName.from_name(error_name)
            except ValueError:
                pass
        return CustomErrorName(error_name=error_name)

    iteration_worker.CustomErrorName = error_name_of  # type: ignore[misc, assignment]
    branches_decl.CustomErrorName = error_name_of  # type: ignore[misc, assignment]


@dataclass
class EngineLimits:
    """What the engine tells the patches: the time scale, and which Map states have EXPRESS children."""

    time_scale: float = 1.0
    express_children: dict[str, set[str]] = field(default_factory=dict)  # state machine ARN -> Map names
    history_events: int = STATES_HISTORY_EVENTS  # fix 21


limits = EngineLimits()


def set_express_children(state_machine_arn: str, map_state_names: set[str]) -> None:
    limits.express_children[state_machine_arn] = set(map_state_names)


def _express_child_seconds(env: Any, map_state_name: str) -> float | None:
    state_machine = env.states.context_object.context_object_data["StateMachine"]["Id"]
    # A Map Run's children belong to "<state machine ARN>/<map run id>"; the ARN is what was deployed.
    deployed = next((arn for arn in limits.express_children if state_machine.startswith(arn)), None)
    if deployed is None or map_state_name not in limits.express_children[deployed]:
        return None
    return EXPRESS_EXECUTION_SECONDS * limits.time_scale


def express_children_time_out() -> None:
    """Fix 8 (with fix 9's accounting): an EXPRESS child ends TIMED_OUT after 5 minutes (scaled)."""
    from moto.stepfunctions.parser.asl.component.program.program import Program
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
        distributed_item_processor_worker as worker_module,
    )

    worker_class = worker_module.DistributedItemProcessorWorker
    if getattr(worker_class._eval_job, "_limited", False):
        return
    program_eval = Program.eval

    def eval_program(self: Any, env: Any) -> None:
        seconds = getattr(env, "_child_seconds", None)
        if seconds is None:
            return program_eval(self, env)
        env._child_seconds = None  # the child's own program only, not the programs nested in it
        env.next_state_name = self.start_at.start_at_name
        # Program.eval's own way to time a program out, with the child's limit in place of TimeoutSeconds.
        child = threading.Thread(target=super(Program, self).eval, args=(env,), daemon=True, name="express-child")
        child.start()
        child.join(timeout=seconds)
        if child.is_alive():
            env.set_timed_out()
        return None

    Program.eval = eval_program  # type: ignore[method-assign]
    worker_class._eval_job = _eval_child_job  # type: ignore[method-assign]
    worker_class._eval_job._limited = True  # type: ignore[attr-defined]


def _eval_child_job(self: Any, env: Any, job: Any) -> None:
    """moto's DistributedItemProcessorWorker._eval_job, counting a timed-out or failed child as AWS does."""
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramError, ProgramStopped, ProgramTimedOut
    from moto.stepfunctions.parser.asl.eval.states import ItemData, MapData

    record = self._map_run_record
    record.item_counter.total.count()
    record.item_counter.running.count()
    record.execution_counter.total.count()
    record.execution_counter.running.count()
    job_output = None
    failure: dict[str, Any] | None = None
    try:
        env.states.context_object.context_object_data["Map"] = MapData(
            Item=ItemData(Index=job.job_index, Value=job.job_input)
        )
        env.states.reset(job.job_input)
        env.stack.append(env.states.get_input())
        self._eval_input(env_frame=env)
        child_input = env.states.get_input()
        with _failed_children_lock:
            record.__dict__.setdefault("child_inputs", {})[job.job_index] = child_input
        env._child_seconds = getattr(self, "_child_seconds", None)
        job.job_program.eval(env)
        end = env.program_state()
        if isinstance(end, ProgramTimedOut):
            failure = {"Status": "TIMED_OUT", "Error": "States.Timeout", "Input": child_input,
                       "Cause": f"The child execution ran past the EXPRESS limit of {EXPRESS_EXECUTION_SECONDS} s"}
            record.item_counter.timed_out.count()
            record.execution_counter.timed_out.count()
        elif isinstance(end, ProgramError):
            error = end.error or {}
            failure = {"Status": "FAILED", "Error": error.get("error"), "Cause": error.get("cause"),
                       "Input": child_input}
            record.item_counter.failed.count()
            record.execution_counter.failed.count()
        elif isinstance(end, ProgramStopped):
            record.item_counter.aborted.count()
            record.execution_counter.aborted.count()
        else:
            record.item_counter.succeeded.count()
            record.item_counter.results_written.count()
            record.execution_counter.succeeded.count()
            record.execution_counter.results_written.count()
            job_output = env.states.get_input()
    except Exception as exc:  # the child could not even start (its input, say): it failed
        failure = {"Status": "FAILED", "Error": getattr(exc, "error", None) or "States.Runtime",
                   "Cause": str(exc), "Input": job.job_input}
        failure_event = getattr(exc, "failure_event", None)
        if failure_event is not None:
            failure["Error"] = failure_event.error_name.error_name if failure_event.error_name else "States.Runtime"
        record.item_counter.failed.count()
        record.execution_counter.failed.count()
    finally:
        record.item_counter.running.offset(-1)
        record.execution_counter.running.offset(-1)
        job.job_output = job_output
        if failure is not None:
            with _failed_children_lock:
                failed = record.__dict__.setdefault("failed_children", [])
                failed.append({"Index": job.job_index, **failure})


_failed_children_lock = threading.Lock()


_WHOLE_PERCENTAGE = re.compile(r'("ToleratedFailurePercentage"\s*:\s*)(\d+)(?=\s*[,}\]])')


def tolerated_failures_enforced() -> None:
    """Fix 9: past the tolerated failures, a Distributed Map fails with States.ExceedToleratedFailureThreshold."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (
        DistributedIterationComponent,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.tolerated_failure import (
        ToleratedFailureCountDecl,
        ToleratedFailurePercentageDecl,
    )
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    if getattr(DistributedIterationComponent._map_run, "_tolerance", False):
        return
    from_state_props = StateMap.from_state_props

    def note_declared_tolerance(self: Any, state_props: Any) -> None:
        from_state_props(self, state_props)
        # AWS applies only the thresholds that are declared; with neither, any failure fails the Map.
        self._declared_tolerance = (
            state_props.get(ToleratedFailureCountDecl) is not None,
            state_props.get(ToleratedFailurePercentageDecl) is not None,
        )

    map_run = DistributedIterationComponent._map_run

    def checked_map_run(self: Any, env: Any, eval_input: Any) -> None:
        items = len(env.stack[-1]) if env.stack and isinstance(env.stack[-1], list) else 0
        map_run(self, env, eval_input)
        if isinstance(env.program_state(), ProgramStopped):
            return  # a stopped execution's Map Run is aborted, as in AWS: its unfinished children are not failures
        record = eval_input.map_run_record
        failed = record.item_counter.failed.get() + record.item_counter.timed_out.get()
        state = (getattr(_current_map, "states", None) or [None])[-1]
        count_declared, percentage_declared = getattr(state, "_declared_tolerance", (False, False))
        count_limit, percentage_limit = eval_input.tolerated_failure_count, eval_input.tolerated_failure_percentage
        percentage = 100.0 * failed / items if items else 0.0
        over_count = failed > count_limit if count_declared else False
        over_percentage = percentage > percentage_limit if percentage_declared else False
        if not count_declared and not percentage_declared:
            over_count = failed > 0
        if over_count or over_percentage:
            env.stack.pop()  # the gathered results: the Map has failed
            raise _tolerance_failure(env, failed, items, count_limit if count_declared else None,
                                     percentage_limit if percentage_declared else None)

    parse = AmazonStateLanguageParser.parse

    def parse_whole_percentages(definition: str) -> Any:
        return parse(_WHOLE_PERCENTAGE.sub(r"\1\2.0", definition))

    AmazonStateLanguageParser.parse = staticmethod(parse_whole_percentages)  # type: ignore[method-assign]
    StateMap.from_state_props = note_declared_tolerance  # type: ignore[method-assign]
    checked_map_run._tolerance = True  # type: ignore[attr-defined]
    DistributedIterationComponent._map_run = checked_map_run  # type: ignore[method-assign]


def _tolerance_failure(env: Any, failed: int, items: int, count: int | None, percentage: float | None) -> Exception:
    tolerated = " and ".join(
        text for text in (
            None if count is None else f"{count} item(s)",
            None if percentage is None else f"{percentage:g}% of items",
        ) if text
    ) or "no failed item (no ToleratedFailureCount or ToleratedFailurePercentage)"
    cause = (
        f"The Map Run failed: {failed} of {items} child executions failed or timed out, "
        f"over the tolerated failure threshold ({tolerated})"
    )
    return _states_failure(env, "StatesExceedToleratedFailureThreshold", cause)


def result_writer_files() -> None:
    """Fix 12: SUCCEEDED_0.json and FAILED_0.json, as AWS's ResultWriter writes them."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (
        resource_eval_s3,
    )

    evaluator = resource_eval_s3.ResourceEvalS3
    if getattr(evaluator._handle_put_object, "_files", False):
        return

    def handle_put_object(env: Any, resource_runtime_part: Any, state_credentials: Any) -> None:
        parameters = env.stack.pop()
        results = env.stack.pop()
        s3 = evaluator._get_s3_client(resource_runtime_part=resource_runtime_part, state_credentials=state_credentials)
        record = env.map_run_record_pool_manager.get_all().pop()
        prefix = parameters.get("Prefix", "")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        folder = f"{prefix}{record.map_run_arn.split(':')[-1]}/"
        files = _result_files(record, results)
        listed: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for status, entries in files.items():
            if not entries:
                continue
            body = json.dumps(entries).encode()
            key = f"{folder}{status}_0.json"
            s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=body)
            listed[status].append({"Key": key, "Size": len(body)})
        manifest = {"DestinationBucket": parameters["Bucket"], "MapRunArn": record.map_run_arn,
                    "ResultFiles": listed}
        key = f"{folder}manifest.json"
        s3.put_object(Bucket=parameters["Bucket"], Key=key, Body=json.dumps(manifest, indent=2).encode())
        env.stack.append({"MapRunArn": record.map_run_arn,
                          "ResultWriterDetails": {"Bucket": parameters["Bucket"], "Key": key}})

    handle_put_object._files = True  # type: ignore[attr-defined]
    evaluator._handle_put_object = staticmethod(handle_put_object)  # type: ignore[assignment]


def _result_files(record: Any, results: Any) -> dict[str, list[dict[str, Any]]]:
    inputs: dict[int, Any] = record.__dict__.get("child_inputs", {})
    failed = {child["Index"]: child for child in record.__dict__.get("failed_children", [])}

    def entry(index: int, status: str, **extra: Any) -> dict[str, Any]:
        name = f"{record.map_run_arn.split(':')[-1]}-{index:06d}"
        return {
            "ExecutionArn": f"{record.map_state_machine_arn.replace(':mapRun:', ':execution:')}:{name}",
            "Name": name,
            "StateMachineArn": record.map_state_machine_arn.replace(":mapRun:", ":stateMachine:"),
            "Status": status,
            "InputDetails": {"Included": True},
            **extra,
        }

    succeeded = [
        entry(index, "SUCCEEDED", Input=json.dumps(inputs[index]), Output=json.dumps(output),
              OutputDetails={"Included": True})
        for index, output in enumerate(results if isinstance(results, list) else [])
        if index not in failed and index in inputs
    ]
    failures = [
        entry(index, child["Status"], Input=json.dumps(child.get("Input")), Error=child.get("Error"),
              Cause=child.get("Cause"))
        for index, child in sorted(failed.items())
    ]
    return {"SUCCEEDED": succeeded, "FAILED": failures, "PENDING": []}


def map_runs_of_a_starting_execution() -> None:
    """ListMapRuns on an execution that has just started lists no Map Run, as in AWS (fix 13).

    moto builds an execution's environment on its worker thread, so for the first moments of a
    run `exec_worker.env` is None and ListMapRuns fails with an AttributeError (a 500): the run
    console and `batchinfer show` poll runs in exactly those moments. DescribeMapRun of such a
    run is a ResourceNotFound, as for any Map Run that does not exist yet; and since moto's
    DescribeMapRun looks through every execution, one that is starting no longer breaks it for the
    others.
    """
    from moto.stepfunctions.parser.api import ResourceNotFound
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    if getattr(StepFunctionsParserBackend.list_map_runs, "_patched", False):
        return
    list_map_runs = StepFunctionsParserBackend.list_map_runs

    def has_environment(execution: Any) -> bool:
        return execution.exec_worker is not None and execution.exec_worker.env is not None

    def started(backend: Any, execution_arn: str) -> bool:
        return has_environment(backend.describe_execution(execution_arn=execution_arn))

    def patched_list(self: Any, execution_arn: str) -> dict[str, Any]:
        if not started(self, execution_arn):
            return {"mapRuns": []}
        return dict(list_map_runs(self, execution_arn))

    def patched_describe(self: Any, map_run_arn: str) -> dict[str, Any]:
        for execution in self._get_executions():
            if not has_environment(execution):
                continue
            record = execution.exec_worker.env.map_run_record_pool_manager.get(map_run_arn)
            if record is not None:
                return dict(record.describe())
        raise ResourceNotFound(f"Map Run {map_run_arn} not found")

    patched_list._patched = True  # type: ignore[attr-defined]
    StepFunctionsParserBackend.list_map_runs = patched_list  # type: ignore[method-assign]
    StepFunctionsParserBackend.describe_map_run = patched_describe  # type: ignore[method-assign]


def result_writer_reads_the_state_input() -> None:
    """Fix 14: the ResultWriter's Parameters are evaluated against the Map state's input."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.result_writer_decl import (
        ResultWriter,
    )

    if getattr(ResultWriter._eval_body, "_state_input", False):
        return

    def _eval_body(self: Any, env: Any) -> None:
        results = env.stack.pop()
        env.stack.append(env.states.get_input())
        self.parargs.eval(env=env)
        parameters = env.stack.pop()
        env.stack.pop()
        env.stack.append(results)  # where the S3 handler expects them, under its parameters
        env.stack.append(parameters)
        self.resource_eval.eval_resource(env=env)

    _eval_body._state_input = True  # type: ignore[attr-defined]
    ResultWriter._eval_body = _eval_body  # type: ignore[method-assign]


def stop_execution_keeps_its_cause() -> None:
    """Fix 20: the error and cause given to StopExecution are the aborted execution's."""
    from moto.stepfunctions.responses import StepFunctionResponse

    if getattr(StepFunctionResponse.stop_execution, "_patched", False):
        return
    stop_execution = StepFunctionResponse.stop_execution

    def patched(self: Any) -> Any:
        error, cause = self._get_param("error"), self._get_param("cause")
        execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
        running = execution.status == "RUNNING"  # moto's ExecutionStatus is a str enum
        response = stop_execution(self)
        if running:  # an execution that has already ended keeps its own outcome
            execution.error, execution.cause = error, cause
        return response

    patched._patched = True  # type: ignore[attr-defined]
    StepFunctionResponse.stop_execution = patched  # type: ignore[method-assign]


_EXECUTION_HISTORY = "_batchinfer_execution_history"


def history_quota() -> None:
    """Fix 21: an execution fails once its history reaches `limits.history_events` events."""
    from moto.stepfunctions.parser.asl.component.state.state import CommonStateField
    from moto.stepfunctions.parser.asl.eval.environment import Environment

    if getattr(CommonStateField._eval_body, "_history_limited", False):
        return
    original_init = Environment.__init__
    original_eval = CommonStateField._eval_body

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        # An execution's own history; a Distributed Map's children get a new EventManager of their own.
        setattr(self.event_manager, _EXECUTION_HISTORY, True)

    def eval_body(self: Any, env: Any) -> None:
        manager = env.event_manager
        if getattr(manager, _EXECUTION_HISTORY, False):
            events = manager._event_id_gen._next_id - 1
            if events >= limits.history_events:
                raise _runtime_failure(env, (
                    f"the execution's history reached {limits.history_events} events, Step Functions' quota for "
                    f"a STANDARD execution, before state {self.name!r}: continue in a new execution before it"))
        original_eval(self, env)

    eval_body._history_limited = True  # type: ignore[attr-defined]
    Environment.__init__ = init  # type: ignore[method-assign]
    CommonStateField._eval_body = eval_body  # type: ignore[method-assign]


def start_execution_task_parameters() -> None:
    """Fix 22: the startExecution task's parameters under the Step Functions API's names."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )

    original = StateTaskServiceSfn._eval_service_task
    if getattr(original, "_api_names", False):
        return

    def eval_service_task(self: Any, env: Any, resource_runtime_part: Any, normalised_parameters: dict[str, Any],
                          state_credentials: Any) -> None:
        renamed = {key[:1].lower() + key[1:]: value for key, value in normalised_parameters.items()}
        original(self, env, resource_runtime_part, renamed, state_credentials)
        response = env.stack[-1]
        if isinstance(response, dict):  # the integration's names; the SDK's datetime would fail later reads
            env.stack[-1] = {k[:1].upper() + k[1:]: v.isoformat() if hasattr(v, "isoformat") else v
                             for k, v in response.items()}

    eval_service_task._api_names = True  # type: ignore[attr-defined]
    StateTaskServiceSfn._eval_service_task = eval_service_task  # type: ignore[method-assign]
