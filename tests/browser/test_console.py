"""The run console in headless chromium against the local stack: start, watch, inspect, replay, review."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import prediction_rows, recount, stored_counts, upload

pytestmark = pytest.mark.browser

TERMINAL = re.compile("SUCCEEDED|FAILED|TIMED_OUT|ABORTED")


def _wait_for_end(page: Any) -> str:
    """The run page follows the run live: wait until its status, refreshed in place, is terminal."""
    status = page.locator("#status")
    page.wait_for_function(
        "() => /SUCCEEDED|FAILED|TIMED_OUT|ABORTED/.test(document.querySelector('#status').textContent)",
        timeout=300_000)
    return str(status.inner_text())


def _state(page: Any, name: str) -> str:
    return str(page.locator(f'#graph g[data-state="{name}"]').first.get_attribute("data-status"))


def test_score_run_with_a_broken_image_then_replay_and_review(
        served: Any, console_url: str, page: Any, browser: Any, held_out_digits: list[Any],
        screenshots: Path) -> None:
    # The runs page, empty, kept open in its own tab: it must show the run without a reload.
    runs_tab = browser.new_page()
    runs_tab.goto(console_url + "/")
    assert "No runs yet" in runs_tab.locator("table.runs").inner_text()

    # Uploads, including a broken image (its first 100 bytes).
    digits = held_out_digits[:20]
    for digit in digits:
        upload(served, f"incoming/{digit.index:04d}.png", digit.png)
    upload(served, "incoming/zz-broken.png", held_out_digits[30].png[:100])

    # Start a score run: confirm, then the page follows the new run live.
    page.goto(console_url + "/")
    page.click("#start-score")
    assert "Start a score run" in page.locator("h1").inner_text()
    page.click("#confirm")
    page.wait_for_url(re.compile(r"/runs/score-"))
    run_id = page.locator("#run-id").inner_text()
    assert _wait_for_end(page) == "SUCCEEDED"
    assert page.locator("#scored").inner_text() == "20" and page.locator("#failed").inner_text() == "1"

    # Its graph: the score path taken, the other branches not.
    for name in ("RouteByMode", "ListNewVersions", "AnythingToScore", "Classify", "AggregateDailyCounts"):
        assert _state(page, name) == "succeeded", name
    for name in ("BuildReplayManifest", "CollectTrainingData", "RejectInput", "FromS3Events"):
        assert _state(page, name) == "not-run", name
    assert _state(page, "ClassifyBatch") == "succeeded"
    assert page.locator('#graph path.taken[data-edge="RouteByMode>ListNewVersions"]').count() == 1
    for edge in ("Classify>ReconcileBatches", "ReconcileBatches>ClassifyOutcome",
                 "ClassifyOutcome>WriteRunResults", "WriteRunResults>MoreToScore", "MoreToScore>AggregateDailyCounts"):
        assert page.locator(f'#graph path.taken[data-edge="{edge}"]').count() == 1
    assert page.locator("#graph path.taken").count() == 8

    # The run's predictions as CSV, from its result files: a header and one row per image scored.
    with page.expect_download() as download:
        page.click("#predictions-csv")
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("image_uri,bucket,key,version_id,class,confidence") and len(rows) == 21
    assert re.search(r"Map · succeeded · [\d.]+ s",
                     page.locator('#graph g[data-state="Classify"] > text.detail').text_content())

    # Map Run counts: 21 items in batches of 8 are 3 batches.
    assert page.locator('#map-runs [data-count="total"]').inner_text() == "3"
    assert page.locator('#map-runs [data-count="succeeded"]').inner_text() == "3"
    assert page.locator("#map-runs .map-status").inner_text() == "SUCCEEDED"

    # What the run added to the daily counts, as a chart and a table, equals the table itself.
    day = _first_day(served)
    assert page.locator("#added-total").inner_text() == "20"
    for name, count in recount(served)[day].items():
        assert page.locator(f'#added tr[data-day="{day}"][data-class="{name}"] td.n').inner_text() == str(count)
    charted = page.locator("#added-chart").evaluate("c => Chart.getChart(c).data.datasets[0].data")
    assert sum(charted) == 20

    # The failure, grouped by stage and reason, with its object, version and (no) preview.
    group = page.locator("#failures .failure-group")
    assert group.count() == 1
    assert group.locator(".stage").inner_text() == "decode"
    assert "truncated or corrupt" in group.locator(".reason").inner_text()
    item = group.locator("li.failure")
    assert item.locator(".object").inner_text() == "incoming/zz-broken.png"
    assert item.locator(".version").inner_text().startswith("version ")
    # The timeline lists every state entered.
    timeline = page.locator("#timeline").inner_text()
    assert all(name in timeline for name in ("RouteByMode", "ListNewVersions", "Classify", "AggregateDailyCounts"))
    page.screenshot(path=str(screenshots / "run.png"), full_page=True)

    # The runs tab updated itself: the run is there, finished, with its figures.
    row = runs_tab.locator(f'tr[data-run="{run_id}"]')
    row.wait_for()
    runs_tab.wait_for_function(
        f"() => document.querySelector('tr[data-run=\"{run_id}\"]').textContent.includes('SUCCEEDED')")
    cells = row.locator("td").all_inner_texts()
    assert cells[1:3] == ["score", "SUCCEEDED"] and cells[5:7] == ["20", "1"]
    assert float(cells[7]) > 0  # images per second

    # Fix the broken image (a new upload of the same key) and replay the failure.
    upload(served, "incoming/zz-broken.png", held_out_digits[30].png)
    page.click("#replay")
    assert "Replay the failures of " + run_id in page.locator("h1").inner_text()
    assert "exactly the 1 failed item(s)" in page.locator(".confirm").inner_text()
    page.click("#confirm")
    page.wait_for_url(re.compile(r"/runs/replay-"))
    replay_id = page.locator("#run-id").inner_text()
    assert _wait_for_end(page) == "SUCCEEDED"
    assert page.locator("#mode").inner_text() == "replay"
    assert page.locator("#scored").inner_text() == "1" and page.locator("#failed").inner_text() == "0"
    assert page.locator("#added-total").inner_text() == "1"
    assert "replaced by the newer upload" in page.locator(".note").first.inner_text()
    assert _state(page, "BuildReplayManifest") == "succeeded" and _state(page, "ListNewVersions") == "not-run"
    assert "No failures." in page.locator("#failures").inner_text()
    # Exact counts: every version once, the stored rollup equal to a recount of the predictions.
    assert stored_counts(served) == recount(served) and sum(recount(served)[day].values()) == 21

    runs_tab.goto(console_url + "/")
    assert runs_tab.locator("tr[data-run]").count() == 2
    assert runs_tab.locator(f'tr[data-run="{replay_id}"] td').all_inner_texts()[1:3] == ["replay", "SUCCEEDED"]
    runs_tab.screenshot(path=str(screenshots / "runs.png"))

    # The predictions grid, filtered by class: every card of that class, thumbnails loaded.
    counts = recount(served)[day]
    chosen = max(counts, key=lambda name: (counts[name], name))
    page.goto(console_url + "/predictions")
    page.select_option("#day", day)
    page.select_option("#class", chosen)
    page.click("#apply")
    page.wait_for_url(re.compile(r"class=" + chosen))
    cards = page.locator("#grid li.card")
    assert cards.count() == counts[chosen] == int(page.locator("#total").inner_text())
    assert set(cards.evaluate_all("cs => cs.map(c => c.dataset.class)")) == {chosen}
    page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every(i => i.complete)")
    assert all(w > 0 for w in page.locator("#grid img").evaluate_all("is => is.map(i => i.naturalWidth)"))
    assert all("model v1" in text for text in cards.all_inner_texts())
    page.screenshot(path=str(screenshots / "predictions.png"), full_page=True)

    # Paging through the day, 8 a page: every prediction once.
    page.goto(console_url + f"/predictions?day={day}&per_page=8")
    seen: list[str] = []
    for number in (1, 2, 3):
        assert f"21 prediction(s) on {day}; page {number} of 3" in page.locator("#summary").inner_text()
        seen += page.locator("#grid li.card .key").all_inner_texts()
        if number < 3:
            page.click("#next")
            page.wait_for_url(re.compile(f"page={number + 1}"))
    assert len(seen) == len(set(seen)) == 21 and page.locator("#next").count() == 0

    # The review queue: confidence below a threshold, lowest first.
    page.fill("#below", "0.999")
    page.click("#apply")
    page.wait_for_url(re.compile(r"below=0.999"))
    shown = [float(c) for c in page.locator("#grid li.card").evaluate_all("cs => cs.map(c => c.dataset.confidence)")]
    assert shown == sorted(shown) and all(c < 0.999 for c in shown)


def test_models_page_unknown_run_and_a_stopped_stack(served: Any, console_url: str, page: Any) -> None:
    page.goto(console_url + "/models")
    row = page.locator('#models tr[data-version="v1"]')
    assert "serving" in row.inner_text()

    response = page.goto(console_url + "/runs/no-such-run")
    assert response.status == 404
    assert "unknown run id 'no-such-run'" in page.locator("#error").inner_text()
    page.click("text=Back to the runs")
    assert page.url == console_url + "/"

    served.stop()  # the stack goes away under an open console
    response = page.goto(console_url + "/")
    assert response.status == 503
    text = page.locator("#error").inner_text()
    assert "The stack cannot be read" in text and "batchinfer local serve" in text
    assert "Traceback" not in page.content()


def _first_day(engine: Any) -> str:
    return sorted(recount(engine))[0]


def test_retraining_run_from_the_console(served: Any, console_url: str, page: Any) -> None:
    from demo import digits
    from tests.workflow.test_retrain import upload_labelled

    upload_labelled(served, digits.split()[0][:80])
    page.goto(console_url + "/")
    page.click("#start-retrain")
    assert "Start a retraining run" in page.locator("h1").inner_text()
    page.click("#confirm")
    page.wait_for_url(re.compile(r"/runs/retrain-"))
    assert _wait_for_end(page) == "SUCCEEDED"
    assert page.locator("#mode").inner_text() == "retrain"

    outcome = page.locator("#outcome").inner_text()
    assert outcome in ("promoted", "rejected")
    for name in ("CollectTrainingData", "EnoughNewLabels", "TrainingHook", "EvaluateCandidate", "PromoteIfBetter"):
        assert _state(page, name) == "succeeded", name
    assert _state(page, "ListNewVersions") == "not-run" and _state(page, "SkipTraining") == "not-run"
    versions = page.locator("#versions tbody tr")
    assert versions.count() == 2
    before, candidate = (row.split("\t") for row in versions.all_inner_texts())
    assert before[0] == "v1" and 0.0 <= float(before[2]) <= 1.0 and 0.0 <= float(candidate[2]) <= 1.0
    assert ("serving now" in candidate[1]) == (outcome == "promoted")
    assert re.search(r"labels used: \d+ to train, \d+ held out, 80 new", page.locator("#labels-used").inner_text())

    page.goto(console_url + "/models")
    serving = page.locator("#models tr:has(.serving)").get_attribute("data-version")
    assert serving == (candidate[0] if outcome == "promoted" else "v1")
    assert page.locator(f'#models tr[data-version="{candidate[0]}"]').count() == 1


def test_approve_a_pending_version_serve_it_and_roll_back(served: Any, console_url: str, page: Any,
                                                         demo_model: Any, held_out_digits: list[Any],
                                                         screenshots: Path) -> None:
    from demo import digits
    from lambdas.model_registry import ModelRegistry
    from operate.operations import start_run

    registry = ModelRegistry(served.config.model_registry, s3_client=served.client("s3"))
    registry.publish("v2", demo_model[0], digits.LABELS, demo_model[1])
    registry.record("published", "v2", by="ci")
    registry.request_approval("v2", by="ci")

    page.goto(console_url + "/models")
    pending = page.locator('#models tr[data-version="v2"]')
    assert pending.locator("td.approval").inner_text() == "pending"
    assert pending.locator("button.promote").count() == 0  # pending: nothing to promote yet
    pending.locator("button.approve").click()
    page.wait_for_url(re.compile(r"/models\?done="))
    assert page.locator("#done").inner_text() == "digits/v2 approved by local"
    approved = page.locator('#models tr[data-version="v2"]')
    assert approved.locator("td.approval").inner_text() == "approved"
    assert approved.locator("button.promote").inner_text() == "Promote"
    approved.locator("button.promote").click()
    page.wait_for_url(re.compile(r"/models\?done="))
    assert page.locator("#models tr:has(.serving)").get_attribute("data-version") == "v2"

    # It serves: a run scores with it.
    upload(served, "incoming/approved/one.png", held_out_digits[0].png)
    run_id = start_run(served.target(), "score", prefix="incoming/approved/")
    assert served.wait(run_id, timeout=300)["status"] == "SUCCEEDED"
    assert {row["model_version"] for row in prediction_rows(served)} == {"v2"}

    # Roll back to v1 from its row, then reject v2 with a reason.
    page.goto(console_url + "/models")
    earlier = page.locator('#models tr[data-version="v1"]')
    assert earlier.locator("button.promote").inner_text() == "Roll back to it"
    earlier.locator("button.promote").click()
    page.wait_for_url(re.compile(r"/models\?done="))
    assert page.locator("#done").inner_text() == "digits/v1 rolled back by local"
    assert page.locator("#models tr:has(.serving)").get_attribute("data-version") == "v1"
    page.screenshot(path=str(screenshots / "models.png"), full_page=True)
    rejected = page.locator('#models tr[data-version="v2"]')
    rejected.locator("input.reason").fill("misreads sevens")
    rejected.locator("button.reject").click()
    page.wait_for_url(re.compile(r"/models\?done="))
    assert page.locator('#models tr[data-version="v2"] td.approval').inner_text() == "rejected"
    assert page.locator('#models tr[data-version="v2"] button').count() == 0

    # The history, newest first, says who did what.
    events = page.locator("#history tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.event, r.dataset.version, r.cells[4].textContent])")
    assert events == [["rejected", "v2", "local"], ["rolled back", "v1", "local"], ["promoted", "v2", "local"],
                      ["approved", "v2", "local"], ["pending", "v2", "ci"], ["published", "v2", "ci"],
                      ["promoted", "v1", "system"]]
    assert "misreads sevens" in page.locator('#history tr[data-event="rejected"]').inner_text()
