"""Cold start, ours and the seed's way, each in a fresh Python process so that imports are real:
import, model load and the first prediction on one camera photo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

# What a new ClassifyBatch container does before its first answer: import the handler, load the
# current model version from the registry, decode an image and run it through the model.
OURS = """
import json, sys, time
t0 = time.perf_counter()
import inference_image.handler
from inference_image.classifier import ClassifierCache
from lambdas.model_registry import ModelRegistry
from inference_image.preprocess import decode_image
t1 = time.perf_counter()
classifier = ClassifierCache(ModelRegistry(sys.argv[1]), 30.0).current()
t2 = time.perf_counter()
image = decode_image(open(sys.argv[2], "rb").read(), classifier.input_size, classifier.channels)
classifier.predict(image[None])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_prediction": t3 - t2, "total": t3 - t0,
                  "runtime": classifier.runtime, "imports_tensorflow": "tensorflow" in sys.modules}))
"""

# The seed's container: its module imports TensorFlow and loads the model at import time.
SEED = """
import json, sys, time
t0 = time.perf_counter()
import tensorflow
t1 = time.perf_counter()
import benchmarks.seed_way as seed_way
t2 = time.perf_counter()
seed_way.classify_image(open(sys.argv[2], "rb").read())
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_prediction": t3 - t2, "total": t3 - t0,
                  "runtime": "keras", "imports_tensorflow": True}))
"""


def _environment(model_file: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "SEED_MODEL_PATH": str(model_file),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
    )
    return env


def measure_once(which: str, registry: Path, model_file: Path, photo: Path) -> dict[str, Any]:
    code = OURS if which == "ours" else SEED
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-c", code, str(registry), str(photo)],
        env=_environment(model_file), capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"cold start of {which} failed:\n{completed.stderr[-3000:]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    figures["process_wall"] = wall  # with the interpreter's own start
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def measure(registry: Path, model_file: Path, photo: Path, repeats: int) -> dict[str, Any]:
    """The best of `repeats` fresh processes for each side, taken in turns so load hits both."""
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "seed": []}
    for _ in range(repeats):
        for which in ("ours", "seed"):
            runs[which].append(measure_once(which, registry, model_file, photo))
    result: dict[str, Any] = {}
    for which, figures in runs.items():
        best = min(figures, key=lambda f: f["total"])
        result[which] = {**best, "all_totals": [f["total"] for f in figures]}
    result["ratio"] = round(result["ours"]["total"] / result["seed"]["total"], 3)
    return result
