"""The records a run passes around: image versions, predictions, failures, and their ids."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

_PREDICTION_NAMESPACE = uuid.UUID("6f1c2f8e-4b8a-4d55-9a57-0f3d1c6b2a10")

# A model with more classes than this keeps only its TOP_PROBABILITIES most probable classes in each
# prediction: 1,000 probabilities make a ~20 KB item (20 write units a write), the top 5 keep it under 1 KB.
ALL_PROBABILITIES_UP_TO = 16
TOP_PROBABILITIES = 5


def probabilities_kept(classes: int) -> dict[str, Any]:
    """What a prediction of a model with `classes` classes keeps of its probabilities (in its metrics)."""
    if classes <= ALL_PROBABILITIES_UP_TO:
        return {"kept": "all", "classes": classes}
    return {"kept": "top", "top": TOP_PROBABILITIES, "classes": classes}


def kept_probabilities(probabilities: dict[str, float]) -> tuple[dict[str, float], str | None]:
    """The probabilities a prediction row keeps, and a note of what was left out (None: all kept)."""
    if len(probabilities) <= ALL_PROBABILITIES_UP_TO:
        return probabilities, None
    top = sorted(probabilities.items(), key=lambda kv: kv[1], reverse=True)[:TOP_PROBABILITIES]
    return dict(top), f"top {TOP_PROBABILITIES} of {len(probabilities)}"


class BadRecord(ValueError):
    """An event or manifest item lacks a field or has a malformed one."""


@dataclass(frozen=True)
class ImageVersion:
    """One version of one object: the unit that is scored exactly once per model version."""

    bucket: str
    key: str
    version_id: str
    last_modified: str  # ISO 8601, UTC, as S3 reports it
    size: int = 0

    @property
    def image_id(self) -> str:
        """An s3:// URI naming the exact version; unique, and a link a user can resolve."""
        return f"s3://{self.bucket}/{quote(self.key, safe='/')}?versionId={quote(self.version_id, safe='')}"

    def captured_at(self) -> datetime:
        return parse_timestamp(self.last_modified)

    def capture_date(self, zone: ZoneInfo) -> str:
        return self.captured_at().astimezone(zone).date().isoformat()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, item: Any) -> ImageVersion:
        if not isinstance(item, dict):
            raise BadRecord(f"an image version must be an object, got {type(item).__name__}")
        missing = [name for name in ("bucket", "key", "version_id", "last_modified") if not item.get(name)]
        if missing:
            raise BadRecord(f"image version {item!r} lacks {', '.join(missing)}")
        try:
            parse_timestamp(str(item["last_modified"]))
            size = int(item.get("size") or 0)
        except (TypeError, ValueError) as error:
            raise BadRecord(f"image version {item!r} is malformed: {error}") from None
        return cls(
            bucket=str(item["bucket"]),
            key=str(item["key"]),
            version_id=str(item["version_id"]),
            last_modified=str(item["last_modified"]),
            size=size,
        )


def parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Prediction:
    image: ImageVersion
    predicted_class: str
    confidence: float
    probabilities: dict[str, float]
    model_version: str
    run_id: str
    batch_id: str
    date: str
    runtime: str = ""  # what ran the forward pass: litert-int8, litert-fp32 or keras

    @property
    def prediction_id(self) -> str:
        """Deterministic, so a retried batch writes the same id and the conditional put holds."""
        return str(uuid.uuid5(_PREDICTION_NAMESPACE, f"{self.image.image_id}|{self.model_version}"))


@dataclass(frozen=True)
class Failure:
    image: ImageVersion
    stage: str  # read, decode, classify, write, batch
    reason: str
    error_type: str
    run_id: str
    batch_id: str
    recorded_at: str = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        # Reasons go to tables and logs: never a decoder's bytes or a megabyte of message.
        from lambdas.reasons import sanitise_reason

        object.__setattr__(self, "reason", sanitise_reason(self.reason))
        object.__setattr__(self, "error_type", sanitise_reason(self.error_type, 100))


@dataclass(frozen=True)
class Batch:
    batch_id: str
    items: list[ImageVersion]

    @classmethod
    def from_dict(cls, value: Any) -> Batch:
        if not isinstance(value, dict) or not isinstance(value.get("items"), list):
            raise BadRecord("a batch must be an object with an 'items' list")
        return cls(
            batch_id=str(value.get("batch_id") or "batch"),
            items=[ImageVersion.from_dict(item) for item in value["items"]],
        )

    def to_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "items": [item.to_dict() for item in self.items]}
