"""Approval through the CLI against a served local stack: a version published pending is refused until
approved, then serves (the runs score with it), and `models promote` rolls back; every change is in
`models history` with who made it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import cli, cli_json, upload

pytestmark = pytest.mark.workflow


def _score(served: Any, digits: list[Any], folder: str) -> set[str]:
    """Upload digits under a folder of their own, score them with a run, and say which versions served."""
    for digit in digits:
        upload(served, f"incoming/{folder}/{digit.index}.png", digit.png)
    run = cli_json("start", "--prefix", f"incoming/{folder}/", "--wait")
    assert run["status"] == "SUCCEEDED" and run["output"]["images_scored"] == len(digits), run
    return {row["model_version"] for row in cli_json("predictions", "--limit", "1000")
            if row["run_id"] == run["run_id"]}


def test_pending_approve_serve_roll_back_and_history(served: Any, demo_model: Any,
                                                     held_out_digits: list[Any]) -> None:
    from demo import digits
    from lambdas.model_registry import ModelRegistry

    registry = ModelRegistry(served.config.model_registry, s3_client=served.client("s3"))
    registry.publish("v2", demo_model[0], digits.LABELS, demo_model[1])
    registry.record("published", "v2", by="ci")
    registry.request_approval("v2", by="ci")

    listed = {row["version"]: row for row in cli_json("models")}
    assert (listed["v1"]["current"], listed["v1"]["approval"]) == (True, None)
    assert (listed["v2"]["current"], listed["v2"]["approval"]) == (False, "pending")
    assert "pending" in cli("models").stdout

    refused = cli("models", "promote", "v2")
    assert refused.exit_code == 2
    assert "digits/v2 cannot serve: its approval is pending; approve it first" in refused.output

    # Pointed at by hand, a pending version still does not serve: the run stops before listing anything.
    served.client("s3").put_object(Bucket=served.config.bucket, Key="models/digits/current.json",
                                   Body=b'{"version": "v2"}')
    upload(served, "incoming/by-hand/one.png", held_out_digits[0].png)
    failed = cli("start", "--prefix", "incoming/by-hand/", "--wait", "--json")
    assert failed.exit_code == 1
    stopped = json.loads(failed.stdout)
    assert stopped["status"] == "FAILED" and stopped["error"] == "ModelError"
    assert "digits/v2 is named in current.json but its approval is pending" in stopped["cause"]
    assert cli_json("predictions") == []
    registry.promote("v1")  # from the pointer set by hand back to v1: recorded as a rollback

    approved = cli_json("models", "approve", "v2")
    assert (approved["event"], approved["version"], approved["by"], approved["approval"]) == (
        "approved", "v2", "local", "approved")
    promoted = cli("models", "promote", "v2", "--reason", "approved by review")
    assert promoted.exit_code == 0 and "digits/v2 promoted by local" in promoted.stdout
    assert _score(served, held_out_digits[:6], "after-approval") == {"v2"}

    rejected = cli("models", "reject", "v2", "--reason", "serving")
    assert rejected.exit_code == 2 and "digits/v2 is serving: promote another version first" in rejected.output
    rolled = cli_json("models", "promote", "v1", "--reason", "v2 misreads sevens")
    assert (rolled["event"], rolled["detail"]) == ("rolled back", {"previous": "v2"})
    assert _score(served, held_out_digits[6:12], "after-rollback") == {"v1"}
    assert cli_json("models", "reject", "v2", "--reason", "misreads sevens")["approval"] == "rejected"
    assert "its approval is rejected" in cli("models", "promote", "v2").output

    history = cli_json("models", "history")
    assert [(e["event"], e["version"], e["by"]) for e in history] == [
        ("promoted", "v1", "system"), ("published", "v2", "ci"), ("pending", "v2", "ci"),
        ("rolled back", "v1", "system"), ("approved", "v2", "local"), ("promoted", "v2", "local"),
        ("rolled back", "v1", "local"), ("rejected", "v2", "local")]
    assert history[-2]["reason"] == "v2 misreads sevens" and all(e["at"].endswith("+00:00") for e in history)
    table = cli("models", "history").stdout
    assert "rolled back" in table and "misreads sevens" in table

