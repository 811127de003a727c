"""Fixes to moto that the embedded engine needs, one module per AWS service, installed by LocalEngine.start.

Where each numbered fix lives (its text is in that module's docstring; the docs' reference page of moto's
patches is generated from them):

- `dynamodb.py`: requests one at a time (fix 1), cheap transactions (2), BatchWriteItem's 25 requests and
  TransactWriteItems' 4 MB (10), an item's size added up once (17); a partition's throughput (18).
- `stepfunctions.py`: Map workers that loop (3) and fail the Map when they die (4), the 256 KiB payload quota (5),
  terminal errors out of `States.ALL` (6), `States.*` errors through branches (7), the EXPRESS child's 5 minutes
  (8), tolerated failures (9), the ResultWriter's files (12), Map Runs of a starting execution (13), the
  ResultWriter's paths read from the state's input (14), StopExecution's error and cause kept (20), the 25,000
  events of an execution's history (21), the startExecution task's parameters (22).
- `sqs.py`: a message's attributes count against its size (11), costs flat as a queue grows (15).
- `routing.py`: a request finds its handler without rebuilding moto's URL map (16).
- `s3.py`: a prefix's request rates (19).

The Lambda quota (account concurrency) lives in `engine/lambda_bridge.py`, which answers every invocation; the
quotas' figures and switches, and the count of throttled requests, in `engine/throttling.py`.
"""

from __future__ import annotations

from engine.moto_patches.dynamodb import (
    _dynamodb_lock,
    cheap_transactions,
    dynamodb_request_quotas,
    item_size_checked_once,
    partition_throughput,
    serialize_dynamodb_requests,
)
from engine.moto_patches.routing import request_routing_stays_cheap
from engine.moto_patches.s3 import prefix_request_rates
from engine.moto_patches.sqs import sqs_costs_stay_flat_as_a_queue_grows, sqs_message_size
from engine.moto_patches.stepfunctions import (
    EngineLimits,
    dead_map_workers_fail_the_map,
    express_children_time_out,
    history_quota,
    limits,
    map_runs_of_a_starting_execution,
    map_workers_loop,
    payload_quota,
    result_writer_files,
    result_writer_reads_the_state_input,
    set_express_children,
    start_execution_task_parameters,
    states_errors_pass_through_branches,
    stop_execution_keeps_its_cause,
    terminal_errors_escape_states_all,
    tolerated_failures_enforced,
)

__all__ = ["EngineLimits", "_dynamodb_lock", "dead_map_workers_fail_the_map", "install", "limits",
           "serialize_dynamodb_requests", "set_express_children"]


def install() -> None:
    serialize_dynamodb_requests()
    cheap_transactions()
    map_workers_loop()
    dead_map_workers_fail_the_map()
    payload_quota()
    terminal_errors_escape_states_all()
    states_errors_pass_through_branches()
    express_children_time_out()
    tolerated_failures_enforced()
    partition_throughput()  # before fix 10, so that a request is validated before it is throttled
    dynamodb_request_quotas()
    sqs_message_size()
    result_writer_files()
    map_runs_of_a_starting_execution()
    result_writer_reads_the_state_input()
    sqs_costs_stay_flat_as_a_queue_grows()
    request_routing_stays_cheap()
    item_size_checked_once()
    prefix_request_rates()
    stop_execution_keeps_its_cause()
    history_quota()
    start_execution_task_parameters()
