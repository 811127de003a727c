"""`make bench`: the fp32 and int8 forward-pass ceilings, ClassifyBatch and the whole workflow on the
served form and on fp32, the seed's way, cold start, image sizes, memory and cost, measured side by
side in one run; prints a table (with the CPU's vector features) and writes JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import cold_start, cost, image_size, memory, plan_check, scale
from benchmarks.workload import FULL, LABELS, SMOKE, PhotoMaker, Workload, save_model

# Fractions of the compute ceiling measured in the same run: ClassifyBatch's own work (the photos in
# memory, decoded, resized and passed forward in the served form) with no store and no engine.
CLASSIFY_CEILING_TARGET = 0.80  # ClassifyBatch, served form, at the ceiling batch
WORKFLOW_CEILING_TARGET = 0.60  # the whole workflow
COST_TARGET_USD = 2.50  # per million images, ResNet-50, served form, EXPRESS children
MANY_CLASSES_COST_TARGET = 1.5  # the 1,000-class head against the 3-class one
HEAD_CLASSES = (3, 10, 1000)  # the heads whose items are measured
COMPUTE_BATCHES = {False: 3, True: 2}  # ceiling batches per compute-ceiling figure (full, smoke)
IMAGE_SIZE_TARGET = 0.25  # ClassifyBatch's installed packages against the TensorFlow image's
COLD_START_TARGET = 0.5
BENCH_WALL_TARGET_SECONDS = 900  # `make bench` as a whole, on a 2-core machine
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_vector_features() -> list[str]:
    """The CPU's vector features, from /proc/cpuinfo: int8's speed-up depends on VNNI (or AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in VECTOR_FLAGS if flag in flags]
    except OSError:
        pass
    return []


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_load() -> dict[str, Any]:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"loadavg": [round(v, 2) for v in os.getloadavg()], "uptime": uptime}


def rate(images: int, seconds: float) -> float:
    return round(images / seconds, 3) if seconds > 0 else 0.0


def throughput(forward: Callable[[np.ndarray], Any], batch: np.ndarray, min_seconds: float) -> float:
    """Images per second of `forward` on `batch`, after one warm-up call, over at least
    `min_seconds` and at least two calls."""
    forward(batch)
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < min_seconds:
        forward(batch)
        calls += 1
    return rate(calls * len(batch), time.perf_counter() - started)


# -- 1. the ceiling: the forward pass alone ----------------------------------------------------
def ceiling(workload: Workload, model_file: Path, forms: Any, inputs: np.ndarray) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from inference_image.classifier import LiteRTForward, available_cpus

    model = keras.models.load_model(model_file, compile=False)
    size = workload.input_size
    signature = [tf.TensorSpec(shape=(None, size, size, 3), dtype=tf.float32)]
    tf_forward = tf.function(lambda x: model(x, training=False), input_signature=signature)
    forwards: dict[str, Callable[[np.ndarray], Any]] = {
        "tf_function": lambda b: tf_forward(b).numpy(),
        "litert_fp32": LiteRTForward(forms.fp32, available_cpus()),
    }
    if forms.int8 is not None:
        forwards["litert_int8"] = LiteRTForward(forms.int8, available_cpus())

    figures: dict[str, dict[str, float]] = {name: {} for name in forwards}
    for batch_size in workload.batch_sizes:
        batch = inputs[:batch_size].astype(np.float32)
        for name, forward in forwards.items():
            figures[name][str(batch_size)] = throughput(forward, batch, workload.min_seconds)
        log(f"ceiling at batch {batch_size}: "
            + ", ".join(f"{name} {f[str(batch_size)]} img/s" for name, f in figures.items()))
    reference = inputs[: workload.ceiling_batch].astype(np.float32)
    return {**figures, "keras_outputs": tf_forward(reference).numpy(), "forwards": forwards}


def agreement(reference: np.ndarray, served: np.ndarray) -> dict[str, Any]:
    return {
        "images": len(reference),
        "top1_agreement": round(float((reference.argmax(1) == served.argmax(1)).mean()), 4),
        "max_abs_difference": float(np.abs(reference - served).max()),
    }


def demo_agreement() -> dict[str, Any] | None:
    """The demo model's served form against Keras and fp32, on the demo's held-out digits."""
    import keras

    from demo import digits
    from inference_image.classifier import Classifier
    from lambdas.model_registry import ModelVersion

    model_file, _ = digits.trained_demo_model()
    with contextlib.redirect_stdout(sys.stderr):
        forms = digits.demo_model_forms(model_file)
    _, held_out = digits.split()
    x, y = digits.to_arrays(held_out)
    keras_probabilities = keras.models.load_model(model_file, compile=False).predict(x, verbose=0)
    served_file = model_file.with_name("model.int8.tflite" if forms.serving["form"] == "int8" else "model.tflite")
    served = Classifier.load(ModelVersion("demo", served_file, digits.LABELS, {}))
    served_probabilities = served.predict(x.astype(np.uint8))
    figures = agreement(keras_probabilities, served_probabilities)
    figures["keras_accuracy"] = round(float((keras_probabilities.argmax(1) == y).mean()), 4)
    figures["served_accuracy"] = round(float((served_probabilities.argmax(1) == y).mean()), 4)
    figures["served_runtime"] = served.runtime
    figures["serving_decision"] = forms.serving
    return figures


# -- the compute ceiling: ClassifyBatch's own work, with no store and no engine ---------------------
class ComputeCeiling:
    """The same photos held in memory, read, decoded, resized and passed forward by ClassifyBatch's own
    code (`read_and_predict`, its threads and sub-batches) in a loaded form: no S3, no DynamoDB, no
    engine. What ClassifyBatch could reach on this CPU if its reads and writes cost nothing."""

    def __init__(self, photos: list[bytes], settings: Any):
        from lambdas.fakes import InMemoryImageSource

        self.source = InMemoryImageSource()
        self.items = [self.source.put("bench", f"ceiling/{n:05d}.jpg", p) for n, p in enumerate(photos)]
        self.settings = settings

    def seconds(self, classifier: Any, start: int, count: int) -> float:
        from inference_image.classify import read_and_predict

        batch = [self.items[(start + n) % len(self.items)] for n in range(count)]
        started = time.perf_counter()
        done = read_and_predict(batch, self.settings, classifier, self.source)
        took = time.perf_counter() - started
        if done.failures:
            raise RuntimeError(f"the compute ceiling failed on {done.failures[0]}")
        return took

    def rate(self, classifier: Any, batch_size: int, batches: int) -> float:
        """Images per second over `batches` batches, after one unmeasured batch."""
        self.seconds(classifier, 0, batch_size)
        took = sum(self.seconds(classifier, n * batch_size, batch_size) for n in range(batches))
        return rate(batch_size * batches, took)


def compute_at_threads(load: Callable[[], Any], ceiling: ComputeCeiling, batch_size: int,
                       batches: int) -> dict[int, float]:
    """Seconds per image of the compute ceiling with one vCPU and with two, as Lambda gives 1,769 MB and
    3,008 MB: the measuring thread (and so the decoding threads it starts) pinned to that many cores,
    and a classifier loaded there (LiteRT takes a thread per core it may use)."""
    cpus = sorted(os.sched_getaffinity(0))
    seconds: dict[int, float] = {}
    for threads in (1, 2):
        os.sched_setaffinity(0, cpus[:threads])
        try:
            seconds[threads] = round(1 / ceiling.rate(load(), batch_size, batches), 5)
        finally:
            os.sched_setaffinity(0, cpus)
        log(f"compute at {threads} vCPU: {seconds[threads] * 1000:.1f} ms an image")
    return seconds


# -- the embedded engine -------------------------------------------------------------------------
def upload(s3: Any, bucket: str, prefix: str, photos: list[bytes]) -> list[dict[str, Any]]:
    for n, body in enumerate(photos):
        s3.put_object(Bucket=bucket, Key=f"{prefix}{n:05d}.jpg", Body=body, ContentType="image/jpeg")
    items = []
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            items.append({"bucket": bucket, "key": v["Key"], "version_id": v["VersionId"],
                          "last_modified": v["LastModified"].isoformat(), "size": v["Size"]})
    return sorted(items, key=lambda item: item["key"])


class _Turns:
    """Stands in for ClassifyBatch's classifier cache: serves whichever loaded form has the turn."""

    def __init__(self, loaded: dict[str, Any]):
        self.loaded = loaded
        self.turn = next(iter(loaded))

    def current(self) -> Any:
        return self.loaded[self.turn]


def classify_runs(
    engine: Any, workload: Workload, photos: list[bytes], loaded: dict[str, Any],
    forwards: dict[str, Callable[[np.ndarray], Any]], ceilings: dict[str, dict[str, float]], inputs: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """ClassifyBatch through its Lambda handler, with real batch events, at each batch size, for each
    loaded form (path -> Classifier).

    The machine is shared and its speed drifts by tens of percent over minutes, so the forms take
    turns batch by batch (served, fp32, fp32, served, ...), each on image versions of its own: both
    are measured in the same seconds, on the same tables. Each form's forward pass is also measured
    right before each batch size, and its ratio is taken to that adjacent figure. At the ceiling batch,
    each ClassifyBatch call is followed by the compute ceiling on the same photos, so the two take turns too."""
    from contract.resource_spec import FUNCTION_LIMITS
    from engine.lambda_bridge import LambdaContext
    from inference_image import handler
    from lambdas.dependencies import stores

    s3, bucket = engine.client("s3"), engine.config.bucket
    function = engine.config.function_name("ClassifyBatch")
    turns = _Turns(loaded)

    def invoke(path: str, batch: list[dict[str, Any]], batch_id: str) -> tuple[dict[str, Any], float]:
        turns.turn = path
        context = LambdaContext(function, FUNCTION_LIMITS["ClassifyBatch"].memory_mb, "arn:aws:lambda:local", 900)
        event = {"run_id": "bench-classify", "batch": {"batch_id": f"{path}-{batch_id}", "items": batch}}
        started = time.perf_counter()
        result = dict(handler.handler(event, context))
        return result, time.perf_counter() - started

    figures: dict[str, dict[str, Any]] = {path: {} for path in loaded}
    cached = handler.classifiers
    # The handler runs as deployed; only the classifier its cache hands out is the one whose turn it is.
    handler.classifiers = lambda: turns  # type: ignore[assignment]
    try:
        for batch_size in workload.batch_sizes:
            count = workload.classify_images[batch_size]
            per_path = count + batch_size
            pool = [photos[n % len(photos)] for n in range(per_path * len(loaded))]
            items = upload(s3, bucket, f"bench/classify-{batch_size}/", pool)
            at_ceiling = batch_size == workload.ceiling_batch
            compute = ComputeCeiling(pool, stores().settings) if at_ceiling else None
            compute_seconds = dict.fromkeys(loaded, 0.0)
            mine = {path: items[n * per_path:(n + 1) * per_path] for n, path in enumerate(loaded)}
            runtimes = {path: invoke(path, mine[path][:batch_size], f"warm-{batch_size}")[0]["runtime"]
                        for path in loaded}  # warm: each interpreter sized for the batch
            batch = inputs[:batch_size].astype(np.float32)
            adjacent = {path: throughput(forwards[path], batch, workload.min_seconds) for path in loaded}
            results: dict[str, list[dict[str, Any]]] = {path: [] for path in loaded}
            seconds = dict.fromkeys(loaded, 0.0)
            for turn, n in enumerate(range(batch_size, per_path, batch_size)):
                for path in (list(loaded) if turn % 2 == 0 else list(loaded)[::-1]):
                    result, took = invoke(path, mine[path][n:n + batch_size], f"b{batch_size}-{n:04d}")
                    results[path].append(result)
                    seconds[path] += took
                    if compute is not None:
                        start = list(loaded).index(path) * per_path + n
                        compute_seconds[path] += compute.seconds(loaded[path], start, batch_size)
            for path in loaded:
                runs, scored = results[path], sum(r["scored"] for r in results[path])
                ips = rate(scored, seconds[path])
                means = {part: round(sum(r["seconds"][part] for r in runs) / len(runs), 4)
                         for part in ("read_decode", "inference", "total")}
                means["writes_and_rest"] = round(means["total"] - means["read_decode"] - means["inference"], 4)
                figures[path][str(batch_size)] = {
                    "runtime": runtimes[path],
                    "images": scored,
                    "invocations": len(runs),
                    "seconds": round(seconds[path], 3),
                    "images_per_second": ips,
                    "seconds_per_invocation": round(seconds[path] / len(runs), 4),
                    "ceiling_adjacent": adjacent[path],
                    "ratio_to_ceiling": round(ips / adjacent[path], 3),
                    "ratio_to_first_ceiling": round(ips / ceilings[path][str(batch_size)], 3),
                    "mean_seconds": means,
                }
                if compute is not None:
                    ceiling_ips = rate(scored, compute_seconds[path])
                    figures[path][str(batch_size)]["compute_ceiling"] = ceiling_ips
                    figures[path][str(batch_size)]["ratio_to_compute_ceiling"] = round(ips / ceiling_ips, 3)
            log(f"ClassifyBatch at batch {batch_size}, in turns: " + "; ".join(
                f"{path} ({runtimes[path]}) {figures[path][str(batch_size)]['images_per_second']} img/s = "
                f"{figures[path][str(batch_size)]['ratio_to_ceiling']} x ceiling"
                + (f", {figures[path][str(batch_size)]['ratio_to_compute_ceiling']} x compute ceiling"
                   if at_ceiling else "") for path in loaded))
    finally:
        handler.classifiers = cached  # type: ignore[method-assign]
    return figures


def whole_workflow(engine: Any, workload: Workload, photos: list[bytes]) -> dict[str, Any]:
    from lambdas.stores import COUNTED, PredictionStore, scan_all

    s3, bucket = engine.client("s3"), engine.config.bucket
    upload(s3, bucket, "incoming/", photos[: workload.workflow_images])
    started = time.perf_counter()
    description = engine.run({"mode": "score"})
    seconds = time.perf_counter() - started
    if description["status"] != "SUCCEEDED":
        raise RuntimeError(f"the workflow run ended {description['status']}: {description.get('cause')}")
    summary = json.loads(description["output"])
    dynamodb = engine.client("dynamodb")
    rows = list(scan_all(dynamodb, TableName=engine.predictions_table))
    counted = [r for r in rows if r["sk"] == COUNTED]
    expected: Counter[tuple[str, str]] = Counter((r["date"], r["predicted_class"]) for r in counted)
    store = PredictionStore(dynamodb, engine.predictions_table, engine.counts_table, 8)
    stored = {(date, label): n for date, day in store.rollups().items() for label, n in day.items()}
    by_batch: dict[str, set[str]] = {}
    for r in store.model_predictions():
        by_batch.setdefault(r["batch_id"], set()).add(r["predicted_class"])
    classes_per_batch = sum(len(v) for v in by_batch.values()) / max(1, len(by_batch))
    return {
        "images": int(summary.get("images_scored", len(counted))),
        "failed": int(summary.get("images_failed", 0)),
        "seconds": round(seconds, 3),
        "images_per_second": rate(int(summary.get("images_scored", len(counted))), seconds),
        "batch_size": engine.config.batch_size,
        "max_concurrency": engine.config.max_concurrency,
        "expected_counts": {f"{d}/{c}": n for (d, c), n in sorted(expected.items())},
        "stored_counts": {f"{d}/{c}": n for (d, c), n in sorted(stored.items())},
        "counts_exact": dict(expected) == stored and sum(expected.values()) == len(counted),
        "classes_per_batch": round(classes_per_batch, 2),
    }


# -- the items written, as DynamoDB bills them ----------------------------------------------------------
def head_outputs(workload: Workload, inputs: np.ndarray, rounds: int = 3) -> dict[int, dict[str, Any]]:
    """Each head's probabilities on one ceiling batch of the workload's photos (Keras, weights=None),
    and its forward time there: the heads differ only in their last layer. The heads are timed in turns,
    `rounds` times, and each keeps its fastest: a busy moment of the machine then falls on every head alike
    instead of on one."""
    import keras

    from benchmarks.workload import build_model

    batch = inputs[: workload.ceiling_batch].astype(np.float32)
    models = {classes: build_model(workload, classes) for classes in HEAD_CLASSES}
    heads: dict[int, dict[str, Any]] = {}
    for classes, model in models.items():  # traced and warm at this batch size
        heads[classes] = {"probabilities": model.predict(batch, batch_size=len(batch), verbose=0),
                          "forward_seconds": float("inf")}
    for _ in range(rounds):
        for classes, model in models.items():
            started = time.perf_counter()
            model.predict(batch, batch_size=len(batch), verbose=0)
            heads[classes]["forward_seconds"] = min(heads[classes]["forward_seconds"], time.perf_counter() - started)
    del models
    keras.backend.clear_session()
    return heads


def item_sizes(engine: Any, workload: Workload, heads: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The sizes of the items the served workflow wrote (3 classes: COUNTED items, fold markers, batch
    results), and of those the store writes for one batch of each head's predictions of new versions of
    the same photos (same run, same name lengths), read back from the tables."""
    from benchmarks.cost import item_bytes, write_units
    from lambdas.records import ImageVersion, Prediction
    from lambdas.stores import COUNTED, FOLD_PREFIX, PredictionStore, from_item, to_item

    client = engine.client("dynamodb")

    def scan(table: str) -> list[dict[str, Any]]:
        return [item for page in client.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]

    def sizes(items: list[dict[str, Any]]) -> dict[str, Any]:
        measured = [item_bytes(item) for item in items]
        return {"items": len(measured), "max_bytes": max(measured, default=0),
                "mean_bytes": round(sum(measured) / max(1, len(measured))),
                "write_units": write_units(max(measured, default=0))}

    counted = [i for i in scan(engine.predictions_table) if i["sk"]["S"] == COUNTED]
    markers = [i for i in scan(engine.counts_table) if i["pk"]["S"].startswith(FOLD_PREFIX)]
    results = [i for i in scan(engine.state_table) if i["sk"]["S"].startswith("batch#")]
    figures: dict[str, Any] = {"workflow": {"counted_item": sizes(counted), "fold_marker": sizes(markers),
                                            "batch_result": sizes(results)}, "heads": {}}
    store = PredictionStore(client, engine.predictions_table, engine.counts_table, 8)
    written = [from_item(i) for i in counted]
    for classes, head in heads.items():
        labels = [f"class-{k:04d}" for k in range(classes)] if classes != len(LABELS) else list(LABELS)
        predictions = []
        for n, row in enumerate(head["probabilities"]):
            src = written[n % len(written)]
            # A new version of the same key per head, its id as long as the workflow's.
            version_id = f"{classes:04d}{src['version_id'][::-1][4:]}"
            image = ImageVersion(src["bucket"], src["key"], version_id, src["captured_at"])
            best = int(row.argmax())
            predictions.append(Prediction(
                image, labels[best], float(row[best]), dict(zip(labels, map(float, row), strict=True)),
                src["model_version"], src["run_id"], f"{src['batch_id'][:-5]}9{classes:04d}", src["date"],
                src["runtime"]))
        store.write(predictions)
        items = [client.get_item(TableName=engine.predictions_table,
                                 Key=to_item({"image_id": p.image.image_id, "sk": COUNTED}))["Item"]
                 for p in predictions]
        batch_id = predictions[0].batch_id
        head_markers = [m for m in scan(engine.counts_table)
                        if m["pk"]["S"].startswith(FOLD_PREFIX) and m.get("batch_id", {}).get("S") == batch_id]
        figures["heads"][str(classes)] = {
            "counted_item": sizes(items), "fold_marker": sizes(head_markers),
            "classes_in_batch": len({p.predicted_class for p in predictions}),
            "kept": items and from_item(items[0]).get("probabilities_kept") or "all",
            "forward_seconds": round(head["forward_seconds"], 3),
        }
    return figures


# -- 4. the seed's way ---------------------------------------------------------------------------
def seed_way_runs(engine: Any, workload: Workload, model_file: Path) -> dict[str, Any]:
    dynamodb = engine.client("dynamodb")
    tables = {"sequential": ("seed-predictions", "seed-counts"),
              "concurrent": ("seed-predictions-concurrent", "seed-counts-concurrent")}
    for predictions, counts in tables.values():
        for name in (predictions, counts):
            dynamodb.create_table(TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                                  AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                                  BillingMode="PAY_PER_REQUEST")
    os.environ.update({"SEED_MODEL_PATH": str(model_file), "SEED_PREDICTIONS_TABLE": tables["sequential"][0],
                       "SEED_COUNTS_TABLE": tables["sequential"][1]})
    started = time.perf_counter()
    from benchmarks import seed_way

    import_seconds = time.perf_counter() - started
    bucket = engine.config.bucket
    keys = [f"incoming/{n:05d}.jpg" for n in range(workload.workflow_images)]
    # Warm, as our container is warm: the predict function is built on the first call.
    seed_way.classify_image(engine.client("s3").get_object(Bucket=bucket, Key=keys[-1])["Body"].read())

    def run(keys: list[str], threads: int) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(lambda key: seed_way.handler(seed_way.s3_event(bucket, key), None), keys))
        return time.perf_counter() - started

    figures: dict[str, Any] = {"import_seconds": round(import_seconds, 3)}
    for name, threads, count in (("sequential", 1, workload.seed_images),
                                 ("concurrent", workload.seed_threads, workload.seed_concurrent_images)):
        predictions, counts = tables[name]
        seed_way.predictions_table = seed_way.dynamodb.Table(predictions)
        seed_way.counts_table = seed_way.dynamodb.Table(counts)
        seconds = run(keys[:count], threads)
        expected = Counter(item["class"] for item in _scan(seed_way.predictions_table))
        stored = {item["class"]: int(item["count"]) for item in _scan(seed_way.counts_table)}
        figures[name] = {
            "threads": threads,
            "images": count,
            "seconds": round(seconds, 3),
            "images_per_second": rate(count, seconds),
            "seconds_per_invocation": round(seconds * threads / count, 4),
            "predictions": dict(expected),
            "stored_counts": stored,
            "lost_increments": sum(expected.values()) - sum(stored.values()),
            "counts_exact": dict(expected) == stored,
        }
        log(f"seed's way {name} ({threads} thread(s)): {figures[name]['images_per_second']} img/s, "
            f"lost increments {figures[name]['lost_increments']}")
    best = max(("sequential", "concurrent"), key=lambda n: figures[n]["images_per_second"])
    figures["best"] = {"mode": best, "images_per_second": figures[best]["images_per_second"]}
    figures["date_source"] = f"import time of the module ({seed_way.TODAY}), not the capture time"
    return figures


def _scan(table: Any) -> list[dict[str, Any]]:
    response = table.scan()
    items = list(response["Items"])
    while "LastEvaluatedKey" in response:
        response = table.scan(ExclusiveStartKey=response["LastEvaluatedKey"])
        items.extend(response["Items"])
    return items


# -- the run ----------------------------------------------------------------------------------------
def calibration_and_check(workload: Workload, photos: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The workload's own images: a sample to calibrate int8 on, and other photos to check it on."""
    from inference_image.preprocess import decode_image

    size = (workload.input_size, workload.input_size)
    calibration = np.stack([decode_image(p, size) for p in photos[: workload.calibration_images]])
    rest = photos[workload.calibration_images: workload.calibration_images + workload.check_images]
    return calibration, np.stack([decode_image(p, size) for p in rest])


@dataclass
class Prepared:
    """What every measurement shares: the model in its forms, registered locally, and the photos."""

    model_file: Path
    forms: Any  # inference_image.publishing.Forms: fp32, int8 and the serving decision
    fp32_only: Any  # the same fp32 form, published as the path before int8
    compile_seconds: float
    quantize_seconds: float
    local_registry: Any  # a folder ModelRegistry holding `version`
    photos: list[bytes]
    photo_files: list[Path]  # the first photos as files, for the subprocess measurements
    inputs: np.ndarray  # decoded photos at the model's input size, one ceiling batch


def run_meta(workload: Workload) -> dict[str, Any]:
    features = cpu_vector_features()
    return {
        "mode": "smoke" if workload.smoke else "full",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "processor": _processor(), "python": platform.python_version(),
                    "vector_features": features,
                    "int8_dot_product": any(f in features for f in ("avx512_vnni", "avx_vnni", "amx_int8"))},
        "load_at_start": machine_load(),
        "workload": {"model": "tiny CNN (smoke)" if workload.smoke else "ResNet-50, weights=None, 3 classes",
                     "input": [workload.input_size, workload.input_size, 3],
                     "photo": list(workload.photo_size), "jpeg_quality": 90, "labels": LABELS},
    }


def prepare(workload: Workload, scratch: Path, version: str) -> Prepared:
    from inference_image.preprocess import decode_image
    from inference_image.publishing import Forms, choose_form, compile_model, publish_forms, quantize_model
    from lambdas.model_registry import ModelRegistry

    model_file = save_model(workload, scratch)
    maker = PhotoMaker(workload.photo_size)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        photos = list(pool.map(lambda _: maker.photo(), range(workload.workflow_images)))
    photo_files = []
    for n in range(max(workload.batch_sizes)):
        photo_files.append(scratch / f"photo-{n}.jpg")
        photo_files[-1].write_bytes(photos[n])
    size = (workload.input_size, workload.input_size)
    inputs = np.stack([decode_image(photos[n % len(photos)], size) for n in range(workload.ceiling_batch)])

    log("0. the fp32 and int8 forms")
    calibration, check = calibration_and_check(workload, photos)
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints its export to stdout
        started = time.perf_counter()
        fp32 = compile_model(model_file)
        compile_seconds = time.perf_counter() - started
        started = time.perf_counter()
        int8 = quantize_model(model_file, calibration)
        quantize_seconds = time.perf_counter() - started
    # The workload's photos have no labels: int8 is checked by its agreement with fp32.
    forms = Forms(fp32, int8, choose_form(fp32, int8, check, None, len(calibration)))
    fp32_only = Forms(fp32, None, {"form": "fp32", "runtime": "litert", "reason": "the fp32 path, for comparison"})
    local_registry = ModelRegistry(str(scratch / "registry"))
    publish_forms(local_registry, version, model_file, LABELS, {}, forms)
    local_registry.promote(version)
    log(f"served form: {forms.serving['form']} ({forms.serving['reason']})")
    return Prepared(model_file, forms, fp32_only, compile_seconds, quantize_seconds, local_registry, photos,
                    photo_files, inputs)


def serving(workload: Workload, prepared: Prepared, version: str, keras_outputs: np.ndarray) -> dict[str, Any]:
    """The served form, why it serves, and how closely it agrees with Keras."""
    from inference_image.classifier import Classifier

    served = Classifier.load(prepared.local_registry.fetch(version))
    forms = prepared.forms
    return {
        "form": forms.serving["form"],
        "runtime": served.runtime,
        "decision": forms.serving,
        "compile_seconds": round(prepared.compile_seconds, 2),
        "quantize_seconds": round(prepared.quantize_seconds, 2),
        "fp32_bytes": len(forms.fp32),
        "int8_bytes": len(forms.int8 or b""),
        "agreement_workload": agreement(keras_outputs, served.predict(prepared.inputs)),
        "agreement_demo_digits": None if workload.smoke else demo_agreement(),
    }


def workflow_beside_ceiling(engine: Any, workload: Workload, prepared: Prepared,
                            forward: Callable[[np.ndarray], Any], classifier: Any) -> dict[str, Any]:
    """The whole workflow, with its form's forward pass and compute ceiling measured just before and
    just after it."""
    from lambdas.dependencies import stores

    batch = prepared.inputs[: workload.ceiling_batch].astype(np.float32)
    compute = ComputeCeiling(prepared.photos, stores().settings)
    batches = COMPUTE_BATCHES[workload.smoke]
    compute_before = compute.rate(classifier, workload.ceiling_batch, batches)
    before = throughput(forward, batch, workload.min_seconds)
    flow = whole_workflow(engine, workload, prepared.photos)
    after = throughput(forward, batch, workload.min_seconds)
    compute_after = compute.rate(classifier, workload.ceiling_batch, batches)
    flow["ceiling_adjacent"] = round((before + after) / 2, 3)
    flow["ceiling_before_after"] = [before, after]
    flow["ratio_to_ceiling"] = round(flow["images_per_second"] / flow["ceiling_adjacent"], 3)
    flow["compute_ceiling"] = round((compute_before + compute_after) / 2, 3)
    flow["compute_ceiling_before_after"] = [compute_before, compute_after]
    flow["ratio_to_compute_ceiling"] = round(flow["images_per_second"] / flow["compute_ceiling"], 3)
    return flow


def on_the_engine(workload: Workload, prepared: Prepared, version: str, figures: dict[str, Any],
                  forwards: dict[str, Callable[[np.ndarray], Any]], results: dict[str, Any]) -> None:
    """Stages 2 to 4, on the embedded engine: ClassifyBatch and the whole workflow, each on the
    served form and on fp32, and the seed's way."""
    from engine.local_engine import LocalConfig, LocalEngine
    from inference_image.classifier import load_version
    from inference_image.publishing import publish_forms
    from lambdas.dependencies import stores
    from lambdas.model_registry import ModelRegistry

    config = LocalConfig(name="batchinfer-bench", model_name="bench", batch_size=workload.ceiling_batch,
                         max_concurrency=2)
    results["meta"]["embedded_engine"] = (
        "moto with engine/moto_patches/dynamodb.py: a transaction backs up each table once, not once per action"
    )

    def publish(engine: Any, chosen: Any, name: str) -> None:
        registry = ModelRegistry(config.model_registry, s3_client=engine.client("s3"))
        publish_forms(registry, name, prepared.model_file, LABELS, {}, chosen)
        registry.promote(name)

    def runtime_of(chosen: Any) -> str:
        """The ceiling's name for the runtime a set of forms serves on."""
        return "litert_int8" if chosen.serving["form"] == "int8" else "litert_fp32"

    def forward_of(chosen: Any) -> Callable[[np.ndarray], Any]:
        return forwards[runtime_of(chosen)]

    paths = {"served": (prepared.forms, version), "fp32": (prepared.fp32_only, f"{version}-fp32")}
    with LocalEngine(config) as engine:
        for chosen, name in paths.values():
            publish(engine, chosen, name)
        registry = ModelRegistry(config.model_registry, s3_client=engine.client("s3"))
        loaded = {path: load_version(registry, name) for path, (_, name) in paths.items()}
        log("2. ClassifyBatch, the served form (" + prepared.forms.serving["form"] + ") and fp32 in turns")
        results["classify_batch"] = classify_runs(
            engine, workload, prepared.photos, loaded,
            {path: forward_of(chosen) for path, (chosen, _) in paths.items()},
            {path: figures[runtime_of(chosen)] for path, (chosen, _) in paths.items()},
            prepared.inputs)
        log("2b. the compute ceiling at one vCPU and at two (1,769 MB and 3,008 MB)")
        results["threads"] = {"served": compute_at_threads(
            lambda: load_version(registry, version), ComputeCeiling(prepared.photos, stores().settings),
            workload.ceiling_batch, COMPUTE_BATCHES[workload.smoke])}

    # The workflows get an engine each: moto's transactions still cost a little more as a table
    # grows (AWS's do not), so neither is measured behind the other's rows.
    results["workflow"] = {}
    for path, (chosen, name) in paths.items():
        with LocalEngine(config) as engine:
            publish(engine, chosen, name)
            log(f"3. the whole workflow on {workload.workflow_images} images, {path} ({chosen.serving['form']})")
            classifier = load_version(ModelRegistry(config.model_registry, s3_client=engine.client("s3")), name)
            flow = workflow_beside_ceiling(engine, workload, prepared, forward_of(chosen), classifier)
            flow["form"] = chosen.serving["form"]
            results["workflow"][path] = flow
            log(f"workflow ({path}): {flow['images_per_second']} img/s = {flow['ratio_to_ceiling']} x ceiling, "
                f"{flow['ratio_to_compute_ceiling']} x compute ceiling")
            if path == "served":
                log("3b. the items written, with heads of " + ", ".join(map(str, HEAD_CLASSES)) + " classes")
                results["items"] = item_sizes(engine, workload, head_outputs(workload, prepared.inputs))
                log("4. the seed's way")
                results["seed_way"] = seed_way_runs(engine, workload, prepared.model_file)
    results["seed_way"]["ours_workflow_speedup"] = round(
        results["workflow"]["served"]["images_per_second"] / results["seed_way"]["best"]["images_per_second"], 2
    )


def run(workload: Workload, out: Path) -> dict[str, Any]:
    wall = time.perf_counter()
    results: dict[str, Any] = {"meta": run_meta(workload)}
    log(f"CPU vector features: {' '.join(results['meta']['machine']['vector_features']) or 'none found'}")
    scratch = Path(tempfile.mkdtemp(prefix="batchinfer-bench-"))
    version = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        log("building the model and the photos")
        prepared = prepare(workload, scratch, version)
        photos = prepared.photos
        results["meta"]["workload"]["mean_jpeg_bytes"] = int(sum(map(len, photos)) / len(photos))

        log("1. ceiling")
        figures = ceiling(workload, prepared.model_file, prepared.forms, prepared.inputs)
        keras_outputs = figures.pop("keras_outputs")
        forwards = figures.pop("forwards")
        results["ceiling"] = figures
        results["serving"] = serving(workload, prepared, version, keras_outputs)

        on_the_engine(workload, prepared, version, figures, forwards, results)

        log("5. cold start")
        results["cold_start"] = cold_start.measure(scratch / "registry", prepared.model_file,
                                                   prepared.photo_files[0], workload.repeats)
        log("6. installed size of each image's packages")
        results["image_size"] = image_size.measure()
        log("7. memory")
        results["memory"] = {
            str(b): memory.measure(b, scratch / "registry", prepared.photo_files[:b]) for b in workload.batch_sizes
        }
        log("7. the listing at scale")
        results["scale"] = scale.measure(smoke=workload.smoke)
        log(f"8. the capacity plan against the engine, under {plan_check.BOUND_QUOTAS}")
        results["plan_check"] = plan_check.measure(smoke=workload.smoke)
        results["cost"] = cost_figures(workload, results)
        results["figures"] = figures_not_targets(workload, results)
        results["targets"] = (targets(workload, results) + scale.targets(results["scale"])
                              + [plan_check.target(results["plan_check"])])
        results["meta"]["load_at_end"] = machine_load()
        seconds = results["meta"]["seconds"] = round(time.perf_counter() - wall, 1)
        results["targets"].append({
            "target": f"the whole benchmark within {BENCH_WALL_TARGET_SECONDS} s on {os.cpu_count()} cores",
            "measured": f"{seconds:.0f} s (load {results['meta']['load_at_start']['loadavg']} -> "
                        f"{results['meta']['load_at_end']['loadavg']})",
            "holds": seconds <= BENCH_WALL_TARGET_SECONDS})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        cached = Path(tempfile.gettempdir()) / "batchinfer-models" / "batchinfer-bench-images" / "models" / "bench"
        for name in (version, f"{version}-fp32"):
            for folder in cached.glob(f"{name}@*"):  # one folder per stored model file
                shutil.rmtree(folder, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def cost_figures(workload: Workload, results: dict[str, Any]) -> dict[str, Any]:
    prices = cost.load_prices()
    batch = workload.ceiling_batch
    classify = results["classify_batch"]
    per_image = 1 / classify["served"][str(batch)]["images_per_second"]
    fp32_per_image = 1 / classify["fp32"][str(batch)]["images_per_second"]
    seed_per_image = results["seed_way"]["sequential"]["seconds_per_invocation"]
    seconds = cost.lambda_seconds(results["threads"]["served"], per_image)
    memory = cost.cheaper_memory(prices, seconds)
    chosen = memory["memory_mb"]
    items = results["items"]

    def writes(counted: dict[str, Any], marker: dict[str, Any]) -> dict[str, float]:
        result_row = items["workflow"]["batch_result"]["write_units"]
        return {"per_image": counted["write_units"], "per_batch": marker["write_units"] + result_row}

    flow = items["workflow"]
    heads = items["heads"]
    three = heads[str(min(HEAD_CLASSES))]["forward_seconds"]
    per_million = {
        "ours_express_children": cost.ours(prices, seconds[chosen], chosen, batch,
                                           writes(flow["counted_item"], flow["fold_marker"]), "EXPRESS"),
        "ours_fp32_express_children": cost.ours(prices, fp32_per_image * seconds[chosen] / per_image, chosen,
                                                batch, writes(flow["counted_item"], flow["fold_marker"]), "EXPRESS"),
        "ours_standard_children": cost.ours(prices, seconds[chosen], chosen, batch,
                                            writes(flow["counted_item"], flow["fold_marker"]), "STANDARD"),
    }
    for classes, head in heads.items():
        if int(classes) == min(HEAD_CLASSES):
            continue
        # The head's own forward time against the 3-class head's, both measured here on the same batch.
        per_million[f"ours_{classes}_classes_express_children"] = cost.ours(
            prices, seconds[chosen] * head["forward_seconds"] / three, chosen, batch,
            writes(head["counted_item"], head["fold_marker"]), "EXPRESS")
    per_million["seed_way"] = cost.seed(prices, seed_per_image, counts_rows=3)
    return {
        "prices": f"list prices as of {prices['as_of']}, {prices['region']} (benchmarks/prices.json)",
        "memory": memory,
        "assumptions": {
            "classify_memory_mb": chosen,
            "seed_memory_mb": cost.SEED_MEMORY_MB,
            "seconds_per_image_ours": round(seconds[chosen], 4),
            "seconds_per_image_ours_measured": round(per_image, 4),
            "seconds_per_image_ours_fp32": round(fp32_per_image, 4),
            "seconds_per_image_seed": round(seed_per_image, 4),
            "batch_size": batch,
            "note": "Lambda seconds at each memory size: the compute ceiling at its vCPUs plus ClassifyBatch's "
                    "time beyond its compute at two; writes from the items read back from the tables.",
        },
        "per_million_images": per_million,
    }


def figures_not_targets(workload: Workload, results: dict[str, Any]) -> dict[str, Any]:
    """Ratios that depend on the CPU (int8 against fp32, ours against the seed's way): printed, not held."""
    batch = str(workload.ceiling_batch)
    served, fp32 = results["classify_batch"]["served"][batch], results["classify_batch"]["fp32"][batch]
    flows = results["workflow"]
    return {
        "classify_served_over_fp32": round(served["images_per_second"] / fp32["images_per_second"], 2),
        "workflow_served_over_fp32": round(
            flows["served"]["images_per_second"] / flows["fp32"]["images_per_second"], 2),
        "ours_over_seed_way": results["seed_way"]["ours_workflow_speedup"],
        "fp32_classify_ratio_to_its_compute_ceiling": fp32["ratio_to_compute_ceiling"],
        "fp32_workflow_ratio_to_its_compute_ceiling": flows["fp32"]["ratio_to_compute_ceiling"],
        "int8_dot_product": results["meta"]["machine"]["int8_dot_product"],
    }


def targets(workload: Workload, results: dict[str, Any]) -> list[dict[str, Any]]:
    batch = str(workload.ceiling_batch)
    served = results["classify_batch"]["served"][batch]
    flow = results["workflow"]["served"]
    exact = all(f["counts_exact"] for f in results["workflow"].values())
    sizes = results["image_size"]
    cold = results["cold_start"]["ratio"]
    money = results["cost"]["per_million_images"]
    ours = money["ours_express_children"]
    many = money[f"ours_{max(HEAD_CLASSES)}_classes_express_children"]
    many_ratio = round(many["total_usd"] / ours["total_usd"], 2)
    breakdown = ", ".join(f"{k} {v:.2f}" for k, v in ours["usd"].items())
    return [
        {"target": f"ClassifyBatch (served form, batch {batch}) >= {CLASSIFY_CEILING_TARGET} x its compute ceiling",
         "measured": f"{served['ratio_to_compute_ceiling']} x ({served['runtime']} {served['images_per_second']} "
                     f"img/s against {served['compute_ceiling']} img/s, in turns)",
         "holds": served["ratio_to_compute_ceiling"] >= CLASSIFY_CEILING_TARGET},
        {"target": f"whole workflow >= {WORKFLOW_CEILING_TARGET} x its compute ceiling, counts exact",
         "measured": f"{flow['ratio_to_compute_ceiling']} x ({flow['images_per_second']} img/s against "
                     f"{flow['compute_ceiling']} img/s before and after); exact: {exact}",
         "holds": flow["ratio_to_compute_ceiling"] >= WORKFLOW_CEILING_TARGET and exact},
        {"target": f"cost <= ${COST_TARGET_USD:.2f} per 1M images, ResNet-50 served form, EXPRESS children",
         "measured": f"${ours['total_usd']:.2f} at {ours['memory_mb']} MB ({breakdown}; "
                     f"{ours['write_units_per_image']} WRU an image)",
         "holds": ours["total_usd"] <= COST_TARGET_USD},
        {"target": f"the {max(HEAD_CLASSES):,}-class head <= {MANY_CLASSES_COST_TARGET} x the 3-class cost",
         "measured": f"${many['total_usd']:.2f} = {many_ratio} x ${ours['total_usd']:.2f} "
                     f"({many['write_units_per_image']} WRU an image)",
         "holds": many_ratio <= MANY_CLASSES_COST_TARGET},
        {"target": f"ClassifyBatch's image <= {IMAGE_SIZE_TARGET} x the TensorFlow image's installed packages",
         "measured": f"{sizes['classify']['mb']} MB against {sizes['classify_before']['mb']} MB = "
                     f"{sizes['classify_ratio_to_before']} x",
         "holds": sizes["classify_ratio_to_before"] <= IMAGE_SIZE_TARGET},
        {"target": f"cold start <= {COLD_START_TARGET} x the seed's way", "measured": cold,
         "holds": cold <= COLD_START_TARGET},
    ]


def table(results: dict[str, Any]) -> str:
    lines: list[str] = []
    meta = results["meta"]
    lines.append(f"batchinfer benchmark ({meta['mode']}): {meta['workload']['model']}, "
                 f"{meta['workload']['photo'][0]}x{meta['workload']['photo'][1]} JPEG q90; "
                 f"{meta['machine']['cpus']} cores; load {meta['load_at_start']['loadavg']} -> "
                 f"{meta['load_at_end']['loadavg']}")
    lines.append(f"CPU: {meta['machine']['processor']}; vector features: "
                 f"{' '.join(meta['machine']['vector_features']) or 'none found'}")
    lines.append("")
    ceiling_figures = results["ceiling"]
    batches = list(ceiling_figures["tf_function"])
    lines.append(f"{'images/s':<44}" + "".join(f"{'batch ' + b:>12}" for b in batches))
    for name, label in (("tf_function", "ceiling: TF tf.function (fp32)"), ("litert_fp32", "ceiling: LiteRT fp32"),
                        ("litert_int8", "ceiling: LiteRT int8")):
        if name in ceiling_figures:
            lines.append(f"{label:<44}" + "".join(f"{v:>12.2f}" for v in ceiling_figures[name].values()))
    for path, runs in results["classify_batch"].items():
        runtime = next(iter(runs.values()))["runtime"]
        lines.append(f"{f'ClassifyBatch, {path} ({runtime})':<44}" + "".join(
            f"{v['images_per_second']:>12.2f}" for v in runs.values()))
        lines.append(f"{'  ratio to its ceiling':<44}" + "".join(
            f"{v['ratio_to_ceiling']:>12.3f}" for v in runs.values()))
    lines.append(f"{'  peak RSS MB (fresh process, served form)':<44}" + "".join(
        f"{v['peak_rss_mb']:>12.0f}" for v in results["memory"].values()))
    lines.append("")
    seed = results["seed_way"]
    for path, flow in results["workflow"].items():
        lines.append(f"whole workflow, {path} ({flow['form']}): {flow['images']} images in {flow['seconds']:.1f} s = "
                     f"{flow['images_per_second']:.2f} img/s = {flow['ratio_to_ceiling']:.3f} x its ceiling; "
                     f"counts exact: {flow['counts_exact']}")
    lines.append(f"seed's way, 1 at a time: {seed['sequential']['images_per_second']:.2f} img/s; "
                 f"{seed['concurrent']['threads']} concurrent: {seed['concurrent']['images_per_second']:.2f} img/s, "
                 f"lost {seed['concurrent']['lost_increments']} of {seed['concurrent']['images']} count increments")
    lines.append(f"ours / seed's way (best): {seed['ours_workflow_speedup']:.2f} x")
    ratios = results["figures"]
    lines.append(f"figures, not targets: ClassifyBatch served/fp32 {ratios['classify_served_over_fp32']} x, "
                 f"workflow served/fp32 {ratios['workflow_served_over_fp32']} x, ours/seed's way "
                 f"{ratios['ours_over_seed_way']} x; the fp32 path to its own compute ceiling: ClassifyBatch "
                 f"{ratios['fp32_classify_ratio_to_its_compute_ceiling']} x, workflow "
                 f"{ratios['fp32_workflow_ratio_to_its_compute_ceiling']} x")
    serving = results["serving"]
    decision = serving["decision"]
    lines.append(f"served form: {serving['form']} on {serving['runtime']} ({decision['reason']}); top-1 agreement "
                 f"with Keras {serving['agreement_workload']['top1_agreement']} on the workload")
    demo_digits = serving["agreement_demo_digits"]
    if demo_digits:
        d = demo_digits["serving_decision"]
        lines.append(f"demo digits ({d['held_out']} held out): serves {d['form']}; int8 agrees with fp32 on "
                     f"{d.get('int8_agreement')}, accuracy fp32 {d.get('fp32_accuracy')} int8 {d.get('int8_accuracy')} "
                     f"(drop {d.get('accuracy_drop_points')} points); served form vs Keras top-1 "
                     f"{demo_digits['top1_agreement']}")
    cold = results["cold_start"]
    lines.append(f"cold start (import + load + first prediction): ours {cold['ours']['total']:.2f} s "
                 f"({cold['ours']['runtime']}, TensorFlow imported: {cold['ours']['imports_tensorflow']}), "
                 f"seed's way {cold['seed']['total']:.2f} s, ratio {cold['ratio']:.3f}")
    sizes = results["image_size"]
    lines.append(f"installed packages: ClassifyBatch image {sizes['classify']['mb']} MB "
                 f"(TensorFlow image before: {sizes['classify_before']['mb']} MB), training image "
                 f"{sizes['training']['mb']} MB")
    lines.append("")
    items = results["items"]
    flow_items = items["workflow"]
    lines.append("items written (bytes as DynamoDB bills them, max; write units of a plain put): workflow "
                 + ", ".join(f"{name} {v['max_bytes']} B = {v['write_units']} WRU" for name, v in flow_items.items()))
    for classes, head in items["heads"].items():
        lines.append(f"  head of {classes:>4} classes: COUNTED item {head['counted_item']['max_bytes']} B = "
                     f"{head['counted_item']['write_units']} WRU (probabilities kept: {head['kept']}); fold marker "
                     f"{head['fold_marker']['max_bytes']} B = {head['fold_marker']['write_units']} WRU for "
                     f"{head['classes_in_batch']} classes in the batch; forward {head['forward_seconds']} s")
    memory = results["cost"]["memory"]
    lines.append(f"ClassifyBatch memory: {memory['memory_mb']} MB is cheaper (seconds an image "
                 f"{memory['seconds_per_image']}, compute $ per 1M {memory['usd_per_million']})")
    lines.append(f"cost per 1M images, {results['cost']['prices']}:")
    for name, figures in results["cost"]["per_million_images"].items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in figures["usd"].items())
        lines.append(f"  {name:<28} ${figures['total_usd']:>9.2f}   ({parts})")
    lines.append("")
    lines.extend(scale.table(results["scale"]))
    lines.append("")
    lines.append("targets:")
    for target in results["targets"]:
        lines.append(f"  [{'holds' if target['holds'] else 'does not hold'}] {target['target']}: {target['measured']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI: every figure, no meaning")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from lambdas.observability import logger

    logger.setLevel("WARNING")  # the functions run in this process: a line per batch would bury the table
    results = run(SMOKE if args.smoke else FULL, args.out)
    print(table(results))
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
