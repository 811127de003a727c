"""The deployed definition is the one file the local engine runs, with every placeholder filled."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.resource_spec import FUNCTIONS, function_arn_placeholder
from workflow.definition import definition_text, placeholders, render

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def machine(synthesized: Any) -> dict[str, Any]:
    [resource] = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    return dict(resource["Properties"])


def test_the_template_carries_the_definition_file_itself(machine: dict[str, Any]) -> None:
    assert machine["DefinitionString"] == definition_text()


def test_substitutions_cover_every_placeholder_of_the_definition(machine: dict[str, Any]) -> None:
    substitutions = machine["DefinitionSubstitutions"]
    assert placeholders(machine["DefinitionString"]) == set(substitutions)
    assert set(substitutions) == {function_arn_placeholder(name) for name in FUNCTIONS}


def test_each_placeholder_is_the_arn_of_the_function_it_names(synthesized: Any, machine: dict[str, Any]) -> None:
    for name in FUNCTIONS:
        logical_id, attribute = machine["DefinitionSubstitutions"][function_arn_placeholder(name)]["Fn::GetAtt"]
        function = synthesized.template["Resources"][logical_id]
        assert attribute == "Arn"
        assert function["Type"] == "AWS::Lambda::Function"
        assert function["Properties"]["FunctionName"] == f"batchinfer-dev-{name}"


def test_nothing_is_left_unsubstituted(machine: dict[str, Any]) -> None:
    filled = render(
        {key: f"arn:aws:lambda:us-east-1:123456789012:function:{key}" for key in machine["DefinitionSubstitutions"]},
        machine["DefinitionString"],
    )
    text = json.dumps(filled)
    assert "${" not in text
    assert filled["StartAt"] == "RouteByMode"
