"""cdk-nag (AWS Solutions) finds nothing unacknowledged; cfn-lint finds no error in the template."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks

pytestmark = pytest.mark.infra

PLACEHOLDER_REASONS = {"", "todo", "tbd", "n/a", "na", "none", "reason", "placeholder", "suppressed", "ok"}

# The default deployment, and the one with the SageMaker training hook (more grants, more findings).
VARIANTS = ["synthesized", "synthesized_sagemaker"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_cdk_nag_finds_no_unacknowledged_error(variant: str, request: pytest.FixtureRequest) -> None:
    synthesized = request.getfixturevalue(variant)
    report = AwsSolutionsChecks(verbose=True).validate_scope(synthesized.app)
    errors = [
        f"{v.rule_name} at {[r.construct_path for r in v.violating_resources]}: {v.description}"
        for v in report.violations
        if v.severity == "error"
    ]
    assert errors == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_acknowledgement_gives_a_real_reason(variant: str, request: pytest.FixtureRequest) -> None:
    synthesized = request.getfixturevalue(variant)
    acknowledged: dict[str, str] = {}
    for construct in synthesized.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in dict(entry.data).items():
                    acknowledged[f"{construct.node.path}: {rule}"] = reason
    assert any("AwsSolutions-" in key for key in acknowledged)
    for key, reason in acknowledged.items():
        text = str(reason).strip()
        assert text.lower().rstrip(".") not in PLACEHOLDER_REASONS, key
        assert len(text.split()) >= 5, f"{key}: the reason {text!r} does not say why"


@pytest.mark.parametrize("variant", VARIANTS)
def test_cfn_lint_reports_no_error(variant: str, request: pytest.FixtureRequest) -> None:
    synthesized = request.getfixturevalue(variant)
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(Path(synthesized.template_file), ManualArgs(regions=["us-east-1"]))
    errors = [f"{m.rule.id} {m.message} ({m.path_string})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []
