"""The seed's way, kept faithfully as the baseline: one image per invocation, `model.predict`
per image on a Keras-loaded model, and daily counts by scan-then-put.

Everything that the seed did at import time happens at import time here too: TensorFlow is
imported, the model is loaded, the clients are made, and the date is frozen.
"""

from __future__ import annotations

import io
import os
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import unquote_plus

import boto3
import numpy as np
import tensorflow as tf
from boto3.dynamodb.conditions import Attr
from PIL import Image

MODEL_PATH = os.environ.get("SEED_MODEL_PATH", "model.keras")
PREDICTIONS_TABLE = os.environ.get("SEED_PREDICTIONS_TABLE", "predictions")
COUNTS_TABLE = os.environ.get("SEED_COUNTS_TABLE", "daily_counts")
CLASS_NAMES = ["AAW", "ECLW", "FAW"]

model = tf.keras.models.load_model(MODEL_PATH, compile=False)
IMAGE_SIZE = (int(model.input_shape[2]), int(model.input_shape[1]))  # the seed hard-coded (224, 224)
s3 = boto3.client("s3")
dynamodb = boto3.resource("dynamodb")
predictions_table = dynamodb.Table(PREDICTIONS_TABLE)
counts_table = dynamodb.Table(COUNTS_TABLE)
# The seed's bug, kept: the date of every prediction is the day this container started.
TODAY = datetime.now().strftime("%Y-%m-%d")


def classify_image(data: bytes) -> tuple[str, float]:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize(IMAGE_SIZE)
    batch = np.expand_dims(np.array(image, dtype=np.float32), axis=0)
    probabilities = model.predict(batch, verbose=0)[0]
    best = int(np.argmax(probabilities))
    return CLASS_NAMES[best], float(probabilities[best])


def increment_count(date: str, label: str) -> None:
    # Read the current count with a scan, then write count + 1: two invocations doing this at
    # the same time both read n and both write n + 1.
    response = counts_table.scan(FilterExpression=Attr("date").eq(date) & Attr("class").eq(label))
    items = response.get("Items", [])
    count = int(items[0]["count"]) if items else 0
    counts_table.put_item(Item={"id": f"{date}#{label}", "date": date, "class": label, "count": count + 1})


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    results = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = unquote_plus(record["s3"]["object"]["key"])
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        label, confidence = classify_image(data)
        predictions_table.put_item(
            Item={
                "id": str(uuid.uuid4()),
                "date": TODAY,
                "class": label,
                "confidence": Decimal(str(round(confidence, 6))),
                "image_url": f"s3://{bucket}/{key}",
                "timestamp": datetime.now().isoformat(),
            }
        )
        increment_count(TODAY, label)
        results.append({"key": key, "class": label, "confidence": confidence})
    return {"statusCode": 200, "results": results}


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    """The S3 notification the seed's function was invoked with, for one object."""
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}
