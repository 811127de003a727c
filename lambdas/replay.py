"""BuildReplayManifest: the failed items of an earlier run, as a manifest for the same Classify step."""

from __future__ import annotations

from contract.settings import Settings
from lambdas.manifests import write_manifest
from lambdas.observability import logger
from lambdas.records import ImageVersion
from lambdas.steps import BuildReplayManifestRequest, BuildReplayManifestResult
from lambdas.stores import COUNTED, FailureStore, ImageSource, PredictionStore


def _latest_version(source: ImageSource, image: ImageVersion) -> ImageVersion | None:
    """The newest version of the failed item's key, if it is not the failed one (a fixed upload)."""
    latest = source.head(image.bucket, image.key)
    if latest is None or not latest.version_id or latest.version_id == image.version_id:
        return None
    return latest


def build_replay_manifest(
    request: BuildReplayManifestRequest,
    settings: Settings,
    source: ImageSource,
    predictions: PredictionStore,
    failures: FailureStore,
) -> BuildReplayManifestResult:
    """Every failed item of the run, once. Where the key has since had a newer upload, that
    version (the fix) is scored instead of the broken one."""
    failed = [ImageVersion.from_dict(row["image"]) for row in failures.for_run(request.replay_of)]
    notes: list[str] = []
    if not failed:
        notes.append(f"run {request.replay_of} has no recorded failures: nothing to replay")
    candidates: dict[str, ImageVersion] = {}
    for image in failed:
        newer = _latest_version(source, image)
        if newer is not None:
            notes.append(f"{image.image_id}: replaced by the newer upload {newer.version_id}")
            image = newer
        candidates.setdefault(image.image_id, image)
    ledger = predictions.ledger(list(candidates))
    todo = [image for image_id, image in candidates.items() if COUNTED not in ledger.get(image_id, set())]
    manifest = write_manifest(request.run_id, todo, settings, source)
    logger.info("replay manifest built",
                extra={"run_id": request.run_id, "replay_of": request.replay_of, "items": len(todo)})
    return BuildReplayManifestResult(**manifest, already_done=len(candidates) - len(todo), checkpoint=None,
                                     notes=notes)
