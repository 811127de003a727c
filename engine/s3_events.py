"""The EventBridge event S3 sends for an upload, whole, as AWS shapes it and the Powertools parser expects it."""

from __future__ import annotations

import json
from typing import Any


def object_created(bucket: str, key: str, version: str | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, "size": 3, "etag": "d41d8cd98f00b204e9800998ecf8427e",
                           "sequencer": "0062E99A88DC407460"}
    if version:
        obj["version-id"] = version
    return {"version": "0", "id": "2d4eba74-fd51-3966-4bfa-b013c9da8ff1", "detail-type": "Object Created",
            "source": "aws.s3", "account": "123456789012", "time": "2026-11-25T16:00:00Z",
            "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj,
                       "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012",
                       "source-ip-address": "1.2.3.4", "reason": "PutObject"}}


def sqs_record(event: dict[str, Any]) -> dict[str, Any]:
    """An SQS record holding the event, as the pipe delivers it."""
    return {"messageId": "m", "body": json.dumps(event)}
