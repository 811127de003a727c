"""Failure reasons fit for a table row and a log line: printable, one line, and short."""

from __future__ import annotations

import re

MAX_REASON_CHARS = 500
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]+")
_SPACES = re.compile(r"\s+")


def sanitise_reason(text: object, limit: int = MAX_REASON_CHARS) -> str:
    """Control characters and stray bytes out, whitespace folded, cut at `limit` characters.

    An error message can carry anything (a decoder's view of the bytes, a long stack of causes);
    a reason is read by a person and stored per image, so it keeps only its readable start.
    """
    cleaned = _UNPRINTABLE.sub("?", _SPACES.sub(" ", str(text))).strip()
    if len(cleaned) <= limit:
        return cleaned
    return cleaned[: limit - 22].rstrip() + f" … ({len(cleaned)} chars)"
