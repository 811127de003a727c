"""Request routing, for every service (S3 first): what the embedded engine changes in how moto finds a
request's handler (fix 16).

16. A request finds its handler without rebuilding moto's URL map. For every request moto rebuilt
    the service's whole map of URL patterns, and for S3 it reloaded the `moto.s3.urls` module twice
    (re-reading its source from disk) in case `MOTO_S3_CUSTOM_ENDPOINTS` had changed: about a
    millisecond of every S3 request (a GetObject of a 280 KB photo: 3.2 ms, 2.2 ms with the fix),
    paid by every image read, upload and HeadObject. The map is built once per service and set of
    URL bases, and the S3 module is reloaded only when that variable changes.
"""

from __future__ import annotations

import importlib
from typing import Any


def request_routing_stays_cheap() -> None:
    """Fix 16: each service's URL map is built once per set of URL bases; the S3 URL module is
    reloaded only when MOTO_S3_CUSTOM_ENDPOINTS changes."""
    from moto import settings
    from moto.core.base_backend import BaseBackend
    from moto.s3 import urls as s3_urls
    from moto.s3.models import S3Backend

    build = BaseBackend.__dict__["urls"].fget
    if getattr(build, "_built_once", False):
        return
    maps: dict[tuple[Any, ...], Any] = {}
    loaded: dict[str, tuple[str, ...] | None] = {"endpoints": None}  # None: reload on first use

    def s3_url_module(self: Any) -> Any:
        endpoints = tuple(settings.get_s3_custom_endpoints())
        if loaded["endpoints"] != endpoints:
            importlib.reload(s3_urls)
            loaded["endpoints"] = endpoints
        return s3_urls

    def urls(self: Any) -> Any:
        key = (type(self), tuple(self.url_bases), settings.enable_iso_regions())
        found = maps.get(key)
        if found is None:
            found = maps[key] = build(self)
        return found

    urls._built_once = True  # type: ignore[attr-defined]
    S3Backend._url_module = property(s3_url_module)  # type: ignore[assignment,method-assign]
    BaseBackend.urls = property(urls)  # type: ignore[assignment,method-assign]
