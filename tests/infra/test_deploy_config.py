"""The deployment settings: cdk.json's context is the documented defaults, and bad values fail by name."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from infra.config import ConfigError, DeployConfig

pytestmark = pytest.mark.infra


def test_cdk_json_holds_every_setting_with_its_default(cdk_context: dict[str, Any]) -> None:
    settings = {k: v for k, v in cdk_context.items() if not k.startswith("@aws-cdk/")}
    assert settings == asdict(DeployConfig())
    assert DeployConfig.from_values(settings) == DeployConfig()


def test_context_strings_become_typed_values() -> None:
    config = DeployConfig.from_values({"stage": "prod", "batch_size": "64", "classify_reserved_concurrency": "10",
                                       "max_concurrency": "10"})
    assert (config.prefix, config.batch_size, config.classify_reserved_concurrency) == ("batchinfer-prod", 64, 10)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"batch_size": "many"}, "batch_size"),
        ({"max_images_per_run": 1_000_000}, "max_images_per_run"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"score_schedule": "every night"}, "score_schedule"),
        ({"stage": "Prod_1"}, "stage"),
        ({"classify_timeout_seconds": 1200}, "classify_timeout_seconds"),
        ({"pipe_window_seconds": 0}, "pipe_window_seconds"),
        ({"training_hook": "batch"}, "training_hook"),
        ({"training_hook_function_arn": "my-function"}, "training_hook_function_arn"),
        ({"training_image_uri": "docker.io/me/trainer:1"}, "training_image_uri"),
        ({"training_instance_type": "m5.large"}, "training_instance_type"),
        ({"training_memory_mb": 20000}, "training_memory_mb"),
        ({"promotion_margin": "a lot"}, "promotion_margin"),
        ({"low_confidence": 1.5}, "low_confidence"),
        ({"holdout_percent": 100}, "holdout_percent"),
        ({"min_new_labels": 0}, "min_new_labels"),
        ({"event_bus_name": "my bus"}, "event_bus_name"),
    ],
)
def test_a_bad_value_fails_naming_its_key(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        DeployConfig.from_values(values)


def test_the_sagemaker_hook_without_an_image_fails_saying_what_to_set() -> None:
    with pytest.raises(ConfigError) as error:
        DeployConfig.from_values({"training_hook": "sagemaker"})
    assert "training_hook=sagemaker needs training_image_uri" in str(error.value)
    assert "\n" not in str(error.value)


def test_the_sagemaker_hook_needs_a_model_name_that_fits_a_training_job_name() -> None:
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1"
    with pytest.raises(ConfigError, match="model_name"):
        DeployConfig.from_values({"training_hook": "sagemaker", "training_image_uri": image, "model_name": "my_model"})
    config = DeployConfig.from_values({"training_hook": "sagemaker", "training_image_uri": image})
    assert (config.training_hook, config.training_image_uri) == ("sagemaker", image)


def test_a_user_training_hook_is_a_lambda_hook() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:my-trainer"
    assert DeployConfig.from_values({"training_hook_function_arn": arn}).training_hook_function_arn == arn
    with pytest.raises(ConfigError, match="training_hook_function_arn needs training_hook=lambda"):
        DeployConfig.from_values(
            {
                "training_hook": "sagemaker",
                "training_image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1",
                "training_hook_function_arn": arn,
            }
        )


def test_retraining_numbers_come_from_context_strings() -> None:
    config = DeployConfig.from_values({"promotion_margin": "0.02", "low_confidence": "0.5", "holdout_percent": "25"})
    assert (config.promotion_margin, config.low_confidence, config.holdout_percent) == (0.02, 0.5, 25)


def test_synth_without_the_training_image_fails_before_building_anything(cdk_context: dict[str, Any]) -> None:
    from infra.app import build_app

    with pytest.raises(ConfigError, match="training_hook=sagemaker needs training_image_uri"):
        build_app(context={**cdk_context, "training_hook": "sagemaker"})


def test_the_classify_child_worst_case_fits_the_express_five_minutes() -> None:
    from infra.config import EXPRESS_CHILD_SECONDS, child_worst_case_seconds

    # 3 attempts of ClassifyBatch at 60 s + its backoffs (1+2+4+8 and 2+4) + RecordBatchFailure
    # at 30 s with its own backoffs (1+2+4+8): the definition's Retry policies, read from the file.
    assert child_worst_case_seconds({"ClassifyBatch": 60, "RecordBatchFailure": 30}) == 246
    assert child_worst_case_seconds({"ClassifyBatch": DeployConfig().classify_timeout_seconds,
                                     "RecordBatchFailure": 30}) <= EXPRESS_CHILD_SECONDS
    assert DeployConfig.from_values({"classify_timeout_seconds": 78}).classify_timeout_seconds == 78


def test_a_classify_timeout_that_cannot_fit_express_is_refused_naming_the_values() -> None:
    with pytest.raises(ConfigError) as error:
        DeployConfig.from_values({"classify_timeout_seconds": 300})
    message = str(error.value)
    assert "classify_timeout_seconds=300" in message
    assert "is 966 s" in message and "ends at 300 s" in message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"pipe_batch_size": 86}, "pipe_batch_size=86 S3 event records of up to 3072 bytes each can exceed the "
                                  "256 KiB execution input; at most 85"),
        ({"batch_size": 113}, "batch_size=113 images of up to 2048 bytes each can exceed the 256 KiB input"),
        ({"classify_reserved_concurrency": 2, "max_concurrency": 4},
         "classify_reserved_concurrency=2 is below max_concurrency=4"),
        ({"classify_memory_mb": 10241}, "classify_memory_mb=10241 must be between 128 and 10240"),
    ],
)
def test_values_aws_would_reject_at_run_time_are_refused(values: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        DeployConfig.from_values(values)
    assert expected in str(error.value)


def test_the_largest_values_that_fit_are_accepted() -> None:
    config = DeployConfig.from_values({"pipe_batch_size": 85, "batch_size": 112, "classify_reserved_concurrency": 4,
                                       "max_concurrency": 4})
    assert (config.pipe_batch_size, config.batch_size) == (85, 112)
    assert DeployConfig().training_memory_mb == 3008  # what accounts capped at 3,008 MB can deploy


@pytest.mark.parametrize(("key", "value"), [("batch_size", 2000), ("holdout_percent", 0), ("time_zone", "Mars/X")])
def test_a_setting_the_functions_share_fails_as_the_functions_would(key: str, value: Any) -> None:
    from contract.settings import problem_with

    reason = problem_with(key, value)
    assert reason is not None
    with pytest.raises(ConfigError, match=f"bad context value: {key}={value!r} {reason}"):
        DeployConfig.from_values({key: value})
