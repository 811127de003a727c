"""S3: the request rates of a prefix, when the engine's quotas turn them on (fix 19).

19. A prefix's request rates (`--quota s3`, engine/throttling.py): S3 serves at least 3,500 PUT/COPY/POST/DELETE
    and 5,500 GET/HEAD requests a second per partitioned prefix, and answers `503 SlowDown` above that until it
    has partitioned further (which takes it minutes). The engine takes an object's prefix to be its key up to the
    last `/` (a new bucket's prefixes, before S3 has split any), and each prefix and kind of request is a token
    bucket (scaled by the time scale). Object requests past it are answered as S3 does: HTTP 503, code
    `SlowDown`, "Please reduce your request rate.", which the SDKs retry with backoff. Bucket requests (listings)
    are not throttled.
"""

from __future__ import annotations

from typing import Any

from engine import throttling

_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
              b"<Message>Please reduce your request rate.</Message><RequestId>local</RequestId></Error>")
_WRITES = {"PUT", "POST", "DELETE"}
_READS = {"GET", "HEAD"}


def prefix_request_rates() -> None:
    """Fix 19: SlowDown (503) past a prefix's 3,500 writes or 5,500 reads a second."""
    from moto.s3.responses import S3Response

    if getattr(S3Response._key_response, "_throttled", False):
        return
    key_response = S3Response._key_response

    def throttled(self: Any, request: Any, full_url: str) -> Any:
        quotas = throttling.state.quotas
        method = str(request.method).upper()
        if quotas.s3 and method in _WRITES | _READS:
            bucket = self.parse_bucket_name_from_url(request, full_url)
            prefix = self.parse_key_name().rpartition("/")[0]
            kind, rate = ("write", quotas.s3_prefix_writes) if method in _WRITES else ("read", quotas.s3_prefix_reads)
            if not all(throttling.state.admit([(("s3", bucket, prefix, kind), rate, 1.0)])):
                throttling.state.count("s3", f"{bucket}/{prefix}")
                return 503, {"Content-Type": "application/xml", "x-amz-request-id": "local"}, _SLOW_DOWN
        return key_response(self, request, full_url)

    throttled._throttled = True  # type: ignore[attr-defined]
    S3Response._key_response = throttled  # type: ignore[method-assign]
