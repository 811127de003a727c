"""Installed size of each container image's Python packages: the requirements file's distributions
and everything they require, summed over the files each installed distribution records."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent
IMAGES = {
    "classify": REPO / "inference_image" / "requirements.txt",
    "training": REPO / "inference_image" / "requirements-training.txt",
}
# ClassifyBatch's image before LiteRT: TensorFlow for its TF-Lite interpreter (the requirements
# file as it was), to measure the new image against.
BEFORE = ["tensorflow-cpu>=2.21,<2.22", "numpy>=1.26,<3", "pillow>=10.4,<14", "aws-lambda-powertools>=3.0,<4",
          "tzdata>=2024.1,<2030"]
# The Lambda base image brings boto3 and its dependencies: they are in no image's own layer.
BASE_IMAGE = ["boto3"]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path) -> list[str]:
    lines: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            lines += read_requirements(path.parent / line[3:].strip())
        else:
            lines.append(line)
    return lines


def closure(requirements: list[str]) -> set[str]:
    """The installed distributions the requirements pull in (extras followed, markers evaluated)."""
    found: set[str] = set()
    pending = [Requirement(r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = _canonical(requirement.name)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in found:
            continue
        found.add(key)
        for text in distribution.requires or []:
            child = Requirement(text)
            environments = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if child.marker is None or any(child.marker.evaluate(env) for env in environments):
                pending.append(child)
    return {key.split("[", 1)[0] for key in found}


def installed_bytes(name: str) -> int:
    distribution = metadata.distribution(name)
    total = 0
    for file in distribution.files or []:
        path = Path(str(distribution.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def measure() -> dict[str, Any]:
    base = closure(BASE_IMAGE)
    result: dict[str, Any] = {}
    for image, requirements in (("classify_before", BEFORE),
                                *((name, read_requirements(path)) for name, path in IMAGES.items())):
        names = sorted(closure(requirements) - base)
        sizes = {name: installed_bytes(name) for name in names}
        largest = sorted(sizes.items(), key=lambda item: -item[1])[:5]
        result[image] = {"mb": round(sum(sizes.values()) / 1e6, 1), "distributions": len(names),
                         "largest_mb": {name: round(size / 1e6, 1) for name, size in largest}}
    result["classify_ratio_to_before"] = round(result["classify"]["mb"] / result["classify_before"]["mb"], 3)
    result["method"] = ("the files each installed distribution records (its RECORD), summed over the requirements "
                        "file's closure in this environment, less boto3's (the Lambda base image has it)")
    return result
