"""Reads the run console needs beyond the CLI's: what a run added to the counts, a page of predictions."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from operate.targets import Target, TargetError

# Presigned thumbnails live as long as a page is likely to stay open.
THUMBNAIL_LINK_SECONDS = 3600


def image_link(target: Target, bucket: str, key: str, version_id: str | None,
               expires: int = THUMBNAIL_LINK_SECONDS) -> str:
    """A presigned GET of one image version: on AWS a SigV4 link, locally one on the local endpoint.

    The bucket stays private either way; the link names the exact version and expires.
    """
    from botocore.config import Config

    params = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        params["VersionId"] = version_id
    s3 = target.client("s3", config=Config(signature_version="s3v4"))
    return str(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=expires))


def run_dates(target: Target, run_id: str) -> list[str]:
    """The capture days a run's batches wrote predictions for."""
    from lambdas.stores import RunStateStore

    state = RunStateStore(target.client("dynamodb"), target.state_table)
    return sorted({d for r in state.batch_results(run_id) for d in r.get("dates", [])})


def run_added_counts(target: Target, run_id: str) -> dict[str, dict[str, int]]:
    """{date: {class: n}}: the image versions this run entered into the daily counts.

    The run's output carries each day's totals after it; this is the run's own share: the counted
    predictions of its days that it wrote (a counted prediction is its COUNTED item, naming its run).
    """
    from operate.operations import prediction_store

    store = prediction_store(target)
    added: dict[str, dict[str, int]] = {}
    for date in run_dates(target, run_id):
        for row in store.predictions_on(date):
            if row.get("run_id") == run_id:
                day = added.setdefault(date, {})
                day[str(row["predicted_class"])] = day.get(str(row["predicted_class"]), 0) + 1
    return {d: dict(sorted(c.items())) for d, c in sorted(added.items())}


def prediction_days(target: Target) -> dict[str, dict[str, int]]:
    """Every day with predictions and its totals by class, oldest first."""
    from operate.operations import prediction_store

    return prediction_store(target).rollups()


def predictions_page(target: Target, date: str, predicted_class: str | None = None,
                     below: float | None = None, page: int = 1, per_page: int = 24) -> dict[str, Any]:
    """One page of a day's predictions, lowest confidence first when filtering by a threshold.

    Filters: the predicted class, and confidence below a threshold (the review queue for labelling).
    Each row has a presigned link to its image version.
    """
    from operate.operations import prediction_store, probabilities_kept

    try:
        datetime.strptime(date, "%Y-%m-%d")
    except ValueError:
        raise TargetError(f"the day must be YYYY-MM-DD, got {date!r}") from None
    if below is not None and not 0.0 <= below <= 1.0:
        raise TargetError(f"the confidence threshold must be between 0 and 1, got {below}")
    rows = [r for r in prediction_store(target).predictions_on(date)
            if predicted_class is None or str(r["predicted_class"]) == predicted_class]
    if below is not None:
        rows = [r for r in rows if float(r["confidence"]) < below]
        rows.sort(key=lambda r: (float(r["confidence"]), r["image_id"]))
    else:
        rows.sort(key=lambda r: (r.get("captured_at", ""), r["image_id"]), reverse=True)
    pages = max(1, math.ceil(len(rows) / per_page))
    page = min(max(1, page), pages)
    shown = rows[(page - 1) * per_page: page * per_page]
    return {
        "date": date,
        "class": predicted_class,
        "below": below,
        "page": page,
        "pages": pages,
        "total": len(rows),
        "rows": [{
            "image": r["image_uri"],
            "key": r["key"],
            "version_id": r["version_id"],
            "class": str(r["predicted_class"]),
            "confidence": float(r["confidence"]),
            "captured_at": r["captured_at"],
            "model_version": r["model_version"],
            "run_id": r["run_id"],
            "kept": probabilities_kept(r),
            "probabilities": r.get("probabilities") or {},
            "link": image_link(target, r["bucket"], r["key"], r["version_id"]),
        } for r in shown],
    }
