"""The deployed definition is the one file the local engine runs, with every placeholder filled."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract.resource_spec import DEFINITION_PARAMETERS, FUNCTIONS, function_arn_placeholder
from tests.infra.conftest import SAGEMAKER_CONTEXT, USER_HOOK_ARN
from workflow.definition import definition_text, placeholders, render

pytestmark = pytest.mark.infra

ACCOUNT, REGION = "123456789012", "us-east-1"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"}


def state_machine(synthesized: Any) -> dict[str, Any]:
    [resource] = synthesized.resources("AWS::StepFunctions::StateMachine").values()
    return dict(resource["Properties"])


@pytest.fixture(scope="module")
def machine(synthesized: Any) -> dict[str, Any]:
    return state_machine(synthesized)


def resolve(value: Any) -> str:
    """A substitution as CloudFormation fills it in us-east-1 of account 123456789012, with each
    resource's Ref / GetAtt shown as `<logical id>` / `<logical id>.<attribute>`."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return PSEUDO.get(value["Ref"], f"<{value['Ref']}>")
    if "Fn::GetAtt" in value:
        return f"<{value['Fn::GetAtt'][0]}.{value['Fn::GetAtt'][1]}>"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(resolve(part) for part in parts)
    raise AssertionError(f"unexpected substitution {value!r}")


def deployed_definition(synthesized: Any) -> dict[str, Any]:
    props = state_machine(synthesized)
    return render({k: resolve(v) for k, v in props["DefinitionSubstitutions"].items()}, props["DefinitionString"])


def test_the_template_carries_the_definition_file_itself(machine: dict[str, Any]) -> None:
    assert machine["DefinitionString"] == definition_text()


def test_substitutions_cover_every_placeholder_of_the_definition(machine: dict[str, Any]) -> None:
    substitutions = machine["DefinitionSubstitutions"]
    assert placeholders(machine["DefinitionString"]) == set(substitutions)
    assert set(substitutions) == {function_arn_placeholder(name) for name in FUNCTIONS} | set(DEFINITION_PARAMETERS)


def test_each_function_placeholder_is_the_arn_of_the_function_it_names(
    synthesized: Any, machine: dict[str, Any]
) -> None:
    for name in FUNCTIONS:
        logical_id, attribute = machine["DefinitionSubstitutions"][function_arn_placeholder(name)]["Fn::GetAtt"]
        function = synthesized.template["Resources"][logical_id]
        assert attribute == "Arn"
        assert function["Type"] == "AWS::Lambda::Function"
        assert function["Properties"]["FunctionName"] == f"batchinfer-dev-{name}"


@pytest.mark.parametrize("variant", ["default", "sagemaker", "user_hook"])
def test_nothing_is_left_unsubstituted(variant: str, request: pytest.FixtureRequest) -> None:
    fixture = {"default": "synthesized"}.get(variant, f"synthesized_{variant}")
    filled = deployed_definition(request.getfixturevalue(fixture))
    text = json.dumps(filled)
    assert "${" not in text
    assert filled["StartAt"] == "RouteByMode"
    assert "CollectTrainingData" in filled["States"]


def test_the_retraining_outcome_goes_to_the_default_event_bus(synthesized: Any) -> None:
    announce = deployed_definition(synthesized)["States"]["AnnounceOutcome"]
    assert announce["Resource"] == "arn:aws:states:::events:putEvents"
    [entry] = announce["Parameters"]["Entries"]
    assert entry["EventBusName"] == "default"


def test_the_built_in_training_hook_is_the_training_hook_function(synthesized: Any) -> None:
    states = deployed_definition(synthesized)["States"]
    [hook] = [
        logical_id
        for logical_id, function in synthesized.resources("AWS::Lambda::Function").items()
        if function["Properties"]["FunctionName"] == "batchinfer-dev-TrainingHook"
    ]
    assert states["TrainingHook"]["Parameters"]["FunctionName"] == f"<{hook}.Arn>"


def test_a_user_training_hook_takes_the_place_of_the_built_in_one(synthesized_user_hook: Any) -> None:
    states = deployed_definition(synthesized_user_hook)["States"]
    assert states["TrainingHook"]["Parameters"]["FunctionName"] == USER_HOOK_ARN
    names = {f["Properties"]["FunctionName"] for f in synthesized_user_hook.resources("AWS::Lambda::Function").values()}
    assert "batchinfer-dev-TrainingHook" not in names
    assert "batchinfer-dev-EvaluateCandidate" in names


def test_the_sagemaker_hook_gets_its_role_image_instance_and_locations(synthesized_sagemaker: Any) -> None:
    train = deployed_definition(synthesized_sagemaker)["States"]["TrainOnSageMaker"]
    assert train["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    params = train["Parameters"]
    [role] = [
        logical_id
        for logical_id, role in synthesized_sagemaker.resources("AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "sagemaker.amazonaws.com"}
    ]
    assert params["RoleArn"] == f"<{role}.Arn>"
    assert params["AlgorithmSpecification"]["TrainingImage"] == SAGEMAKER_CONTEXT["training_image_uri"]
    assert params["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    [channel] = params["InputDataConfig"]
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == "s3://<ImagesBucket>/labels/"
    assert params["OutputDataConfig"]["S3OutputPath"] == "s3://<ImagesBucket>/runs/training/"
    # The job is named batchinfer-..., the prefix the state machine's SageMaker grants are limited to.
    assert params["TrainingJobName.$"].startswith("States.Format('batchinfer-")


def test_the_sagemaker_hook_is_chosen_by_the_functions_setting(synthesized_sagemaker: Any) -> None:
    for function in synthesized_sagemaker.resources("AWS::Lambda::Function").values():
        assert function["Properties"]["Environment"]["Variables"]["BATCHINFER_TRAINING_HOOK"] == "sagemaker"
    choice = deployed_definition(synthesized_sagemaker)["States"]["EnoughNewLabels"]
    assert {"Variable": "$.collected.value.hook", "StringEquals": "sagemaker", "Next": "TrainOnSageMaker"} in choice[
        "Choices"
    ]
