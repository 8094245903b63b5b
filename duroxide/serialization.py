"""Payload encoding and input validation.

Inputs, outputs, event data and queue data are JSON-encoded exactly once on the way in and decoded
exactly once before they reach user code. Everything stored is a ``str``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from duroxide.errors import PayloadTooLargeError, describe_exception

#: Largest encoded payload (input, output, event or queue data) accepted, in bytes; set
#: ``DUROXIDE_MAX_PAYLOAD_BYTES`` (read at import) to change it for every process of a cluster.
MAX_PAYLOAD_BYTES = int(os.environ.get("DUROXIDE_MAX_PAYLOAD_BYTES") or 16 * 1024 * 1024)
#: Longest instance id, orchestration/activity name, event/queue name or key, in UTF-8 bytes
#: (bytes, not characters: database index entries are limited in bytes).
MAX_NAME_LENGTH = 1024


def encode(value: Any, *, what: str = "payload") -> str:
    """Encode ``value`` as JSON text; raise ``TypeError`` when JSON cannot represent it."""
    try:
        # ensure_ascii: lone surrogates and NULs become escapes, so any str stores safely.
        text = json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except Exception as exc:  # user objects can fail in any way while being encoded
        raise TypeError(f"{what} is not JSON-serializable: {describe_exception(exc)}") from None
    _check_size(text, what)
    return text


def decode(text: str | None) -> Any:
    """Decode a stored payload; ``None`` (nothing stored) decodes to ``None``.

    Text that is not JSON is returned as it is, as the reference SDK does: a ``*_typed`` call
    given a ``str`` stores it raw, and the receiving side gets that string back.
    """
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def encode_typed(value: Any, *, what: str = "payload") -> str:
    """Encoding used by the context's ``*_typed`` calls: a ``str`` is taken as already-encoded
    JSON and passed through unchanged (decoded on arrival, or delivered as the string itself if
    it is not JSON); anything else is encoded like :func:`encode`."""
    if isinstance(value, str):
        return check_str_payload(value, what)
    return encode(value, what=what)


def _check_size(text: str, what: str) -> None:
    # A character is at most 4 UTF-8 bytes, so short strings skip the encode.
    if len(text) * 4 <= MAX_PAYLOAD_BYTES:
        return
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"{what} is {size} bytes encoded, over the limit of {MAX_PAYLOAD_BYTES} bytes"
        )


def check_name(value: Any, what: str, *, allow_empty: bool = False) -> str:
    """Validate an id or name: a ``str`` of valid Unicode, no NUL, at most MAX_NAME_LENGTH chars.

    Quotes, SQL metacharacters and any other printable text are fine: values are always bound
    parameters, never spliced into SQL.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{what} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (lone surrogate)") from None
    if size > MAX_NAME_LENGTH:
        raise ValueError(f"{what} is {size} bytes long in UTF-8; the limit is {MAX_NAME_LENGTH}")
    return value


def check_optional_name(value: Any, what: str) -> str | None:
    return None if value is None else check_name(value, what)


def check_str_payload(value: Any, what: str) -> str:
    """Validate a raw string payload (KV values, custom status): valid Unicode, no NUL."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode (lone surrogate)") from None
    _check_size(value, what)
    return value


#: Longest duration accepted for timers and waits: 100 years, in milliseconds.
MAX_DURATION_MS = 100 * 365 * 24 * 3600 * 1000


def check_non_negative_ms(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of milliseconds, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{what} must be finite")
    if value < 0:
        raise ValueError(f"{what} must not be negative")
    if value > MAX_DURATION_MS:
        raise ValueError(f"{what} of {value} ms is over the limit of {MAX_DURATION_MS} ms")
    return int(value)
