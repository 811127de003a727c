"""The CloudWatch dashboard exists, and every metric it shows is one that something really emits."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest

from lambdas import observability
from tests.infra.conftest import REPO_ROOT

pytestmark = pytest.mark.infra

# What the AWS services publish on their own (their CloudWatch metrics documentation), by namespace,
# with the dimension that names our resource.
SERVICE_METRICS = {
    "AWS/Lambda": ({"Duration", "Errors", "Throttles", "Invocations"}, "FunctionName"),
    "AWS/States": ({"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted", "ExecutionsStarted"},
                   "StateMachineArn"),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible"}, "QueueName"),
    "AWS/EventBridge/Pipes": ({"Invocations", "ExecutionFailed"}, "PipeName"),
}


def _emitted_by_our_code() -> dict[str, set[str]]:
    """Metric name -> dimension names, from the add_metric / single_metric calls in the deployed code,
    and Powertools' ColdStart where a handler counts it."""
    constants = {name: getattr(observability, name) for name in dir(observability) if name.isupper()}
    emitted: dict[str, set[str]] = {}
    for package in ("lambdas", "inference_image"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                keywords = {k.arg: k.value for k in node.keywords}
                if called in ("add_metric", "single_metric") and "name" in keywords:
                    value = keywords["name"]
                    name = value.value if isinstance(value, ast.Constant) else constants.get(getattr(value, "id", ""))
                    if name is not None:
                        dims = {"service"} | ({"stage"} if called == "single_metric" else set())
                        emitted.setdefault(str(name), set()).update(dims)
                if called == "add_cold_start_metric" or called == "count_cold_start":
                    emitted.setdefault("ColdStart", set()).update({"service", "function_name"})
    return emitted


def _body(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as JSON, with each CloudFormation reference kept as a readable marker."""
    parts = dashboard["Properties"]["DashboardBody"]
    if isinstance(parts, dict) and "Fn::Join" in parts:
        text = "".join(p if isinstance(p, str) else "<" + json.dumps(p, sort_keys=True).replace('"', "'") + ">"
                       for p in parts["Fn::Join"][1])
    else:
        text = parts
    return dict(json.loads(text))


def _shown_metrics(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    shown = []
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            if isinstance(row[0], dict):  # a math expression: its inputs are listed as rows too
                continue
            names = [c for c in row if not isinstance(c, dict)]
            namespace, metric, rest = names[0], names[1], names[2:]
            shown.append((namespace, metric, dict(zip(rest[::2], rest[1::2], strict=True))))
    return shown


@pytest.fixture(scope="module")
def body(synthesized: Any) -> dict[str, Any]:
    (dashboard,) = synthesized.resources("AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == "batchinfer-dev-pipeline"
    return _body(dashboard)


def test_the_dashboard_has_every_panel_the_operators_need(body: dict[str, Any]) -> None:
    titles = [w["properties"].get("title", "") for w in body["widgets"]]
    for wanted in ("Images per minute: scored, and failed by stage", "ClassifyBatch duration",
                   "ClassifyBatch cold starts, throttles, errors", "Map Run failures", "Dead-letter queue depth",
                   "Pipe-started executions", "Estimated cost per 1,000 images"):
        assert any(t.startswith(wanted) for t in titles), wanted
    stats = {row[-1].get("stat") for w in body["widgets"] for row in w["properties"].get("metrics", [])
             if row and isinstance(row[-1], dict) and "ClassifyBatch duration" in w["properties"].get("title", "")}
    assert {"p50", "p99"} <= stats


def test_every_metric_shown_is_really_emitted(body: dict[str, Any], synthesized: Any) -> None:
    ours = _emitted_by_our_code()
    assert {"ImagesScored", "ImagesFailed", "BatchesFailed", "ColdStart"} <= set(ours)
    resources = synthesized.template["Resources"]
    shown = _shown_metrics(body)
    assert len(shown) >= 15
    for namespace, metric, dimensions in shown:
        if namespace == observability.NAMESPACE:
            assert metric in ours, f"{metric} is shown but no code emits it"
            assert set(dimensions) == ours[metric] or set(dimensions) == {"service"}, (metric, dimensions)
            assert dimensions["service"] == observability.SERVICE
            if "stage" in dimensions:
                assert dimensions["stage"] in observability.FAILURE_STAGES
            continue
        assert namespace in SERVICE_METRICS, f"{namespace} is not a namespace this stack publishes to"
        names, dimension = SERVICE_METRICS[namespace]
        assert metric in names, f"{namespace} {metric} is not a metric that service publishes"
        # The dimension names one of our resources, by reference, of the right type.
        (reference,) = re.findall(r"'(?:Ref|Fn::GetAtt)': (?:\['|')([A-Za-z0-9]+)", dimensions[dimension])
        kind = resources[reference]["Type"]
        assert kind == {"FunctionName": "AWS::Lambda::Function", "StateMachineArn": "AWS::StepFunctions::StateMachine",
                        "QueueName": "AWS::SQS::Queue", "PipeName": "AWS::Pipes::Pipe"}[dimension], (metric, kind)


def test_failure_stages_are_the_stages_the_code_records() -> None:
    """The dashboard plots one line per stage: the stages a failure can have must all be on it."""
    recorded = set()
    for path in [REPO_ROOT / "inference_image" / "classify.py", REPO_ROOT / "lambdas" / "failures.py"]:
        recorded |= set(re.findall(r'return "([a-z]+)", "?\w', path.read_text()))
        recorded |= set(re.findall(r'stage="(\w+)"', path.read_text()))
    assert recorded == set(observability.FAILURE_STAGES)


def test_the_cost_estimate_uses_the_benchmark_prices(body: dict[str, Any]) -> None:
    prices = json.loads((REPO_ROOT / "benchmarks" / "prices.json").read_text())
    (cost,) = [w for w in body["widgets"] if w["properties"].get("title", "").startswith("Estimated cost")]
    (expression,) = [row[0]["expression"] for row in cost["properties"]["metrics"] if isinstance(row[0], dict)]
    assert expression.startswith("1000 * (") and expression.endswith(") / s")
    assert str(prices["lambda"]["per_gb_second"]) in expression
    inputs = {row[-1]["id"] for row in cost["properties"]["metrics"]
              if not isinstance(row[0], dict) and isinstance(row[-1], dict) and "id" in row[-1]}
    assert set(re.findall(r"FILL\((\w+), 0\)", expression)) <= inputs
