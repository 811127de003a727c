"""AggregateDailyCounts: close a run, roll its days' counter shards into per-day totals."""

from __future__ import annotations

from lambdas.results import result_links
from lambdas.steps import AggregateDailyCountsRequest, AggregateDailyCountsResult
from lambdas.stores import FailureStore, PredictionStore, RunStateStore
from lambdas.throttles import total


def aggregate_daily_counts(
    request: AggregateDailyCountsRequest,
    predictions: PredictionStore,
    failures: FailureStore,
    state: RunStateStore,
    bucket: str = "",
) -> AggregateDailyCountsResult:
    run_id = request.run_id
    results = state.batch_results(run_id)
    dates = sorted({d for r in results for d in r.get("dates", [])})
    days = {}
    for date in dates:
        counts = predictions.day_counts(date)
        predictions.write_rollup(date, counts)
        days[date] = counts
    failed = len(failures.for_run(run_id))
    # `checkpoint` is no longer set: the nightly listing drains the ingest ledger, which needs none.
    return AggregateDailyCountsResult(
        run_id=run_id,
        mode=request.mode,
        slices=request.slices,
        continued_in=request.continued_in,
        batches=len(results),
        images_scored=sum(int(r.get("counted", 0)) for r in results),
        predictions_written=sum(int(r.get("written", 0)) for r in results),
        # Found done while listing, or found done by another run while classifying; a retried
        # batch's own earlier writes are this run's work and count as scored above.
        already_scored=request.already_done + sum(
            int(r.get("duplicates", 0)) - max(0, int(r.get("counted", 0)) - int(r.get("written", 0)))
            for r in results
        ),
        images_failed=failed,
        daily_counts=days,
        notes=list(request.notes),
        replay=f"batchinfer replay {run_id}" if failed else "",
        results=result_links(bucket, run_id) if bucket and results else {},
        throttled=total(results),
    )
