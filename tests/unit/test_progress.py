"""A run's progress, from its latest slice's listing and its current Map Run's counts: slice k of about n,
batches done of those listed, and the time left."""

from __future__ import annotations

import pytest

from operate.operations import Progress, RunProgress

pytestmark = pytest.mark.unit


def test_progress_counts_the_earlier_slices_done_and_estimates_the_time_left() -> None:
    progress = RunProgress(target=None, run_id="r", clock=lambda: 1_000.0)  # type: ignore[arg-type]
    progress.started = 400.0  # 600 s ago
    # Slice 3 of about 5, 10 batches a slice: 20 done in the first two, 10 of this one's 10 running.
    listing = {"slice": 3, "slices": 5, "batches": 10, "run_batches": 30}
    now = progress._progress(listing, {"succeeded": 9, "failed": 1, "running": 0})
    assert (now.done, now.planned, now.slice, now.slices) == (30, 30, 3, 5)
    assert now.seconds_left == pytest.approx(400.0)  # 20 batches to come at 30 in 600 s
    assert now.describe() == "slice 3 of about 5, 30/30 batches, about 6 min 40 s left"
    last = progress._progress({**listing, "slice": 5}, {"succeeded": 4})
    assert last.describe().startswith("slice 5 of 5, ")  # the last slice is no longer "about"
    assert Progress().describe() == "" and progress._progress(
        {"batches": 2}, {}).describe() == "0/2 batches"  # one slice, nothing done yet: no estimate
