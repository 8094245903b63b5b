"""Rendering: aligned tables and key/value blocks for people, JSON for scripts, a progress bar.

Times are epoch milliseconds everywhere in the library; here they become ISO-8601 in UTC
(``2024-05-01T12:00:00Z`` in tables, with milliseconds in JSON and timelines). Payloads are JSON
text in storage; JSON output embeds them as values, tables show them compactly and clipped.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

MISSING = "-"


def iso(ms: int | None, *, millis: bool = False) -> str | None:
    """``ms`` (epoch milliseconds) as ISO-8601 UTC with a ``Z``; None stays None."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    text = moment.isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z")


def clip(text: str, width: int = 80) -> str:
    """``text`` on one line, at most ``width`` characters (``…`` marks a cut)."""
    flat = " ".join(text.split()) if ("\n" in text or "\r" in text or "\t" in text) else text
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def payload(text: str | None) -> Any:
    """A stored JSON payload as a value for JSON output (text that is not JSON stays text)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def compact(text: str | None) -> str:
    """A stored JSON payload as compact one-line JSON for tables."""
    if text is None:
        return "null"
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text


class Printer:
    """Where a command's results go: ``table`` mode for people, ``json`` mode for scripts."""

    def __init__(self, mode: str, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.mode = mode
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr

    @property
    def json_mode(self) -> bool:
        return self.mode == "json"

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def note(self, text: str) -> None:
        """A remark for people (stderr), never mixed into the results."""
        self.err.write(text + "\n")

    def json(self, value: Any) -> None:
        self.out.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")

    def table(
        self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = ""
    ) -> None:
        """An aligned table: upper-case headers, columns two spaces apart."""
        cells = [[MISSING if v is None else str(v) for v in row] for row in rows]
        if not cells and empty:
            self.line(empty)
            return
        widths = [len(h) for h in headers]
        for row in cells:
            widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]
        for row in [[h.upper() for h in headers], *cells]:
            padded = [v.ljust(w) for v, w in zip(row, widths, strict=True)]
            self.line("  ".join(padded).rstrip())

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """A key/value block: keys aligned, ``-`` for missing values."""
        items = [(k, MISSING if v is None else str(v)) for k, v in pairs]
        width = max((len(k) for k, _ in items), default=0)
        for key, value in items:
            self.line(f"{key.ljust(width)}  {value}".rstrip())


class Progress:
    """A plain-text progress bar on a terminal (``\\r``-redrawn); silent when ``enabled`` is
    false, e.g. when stderr is not a TTY."""

    WIDTH = 30
    _INTERVAL_S = 0.1

    def __init__(self, label: str, total: int, stream: TextIO, *, enabled: bool) -> None:
        self._label, self._total, self._stream = label, max(total, 0), stream
        self._enabled = enabled and total > 0
        self._done = 0
        self._drawn: int | None = None  # the count last drawn
        self._drawn_at = 0.0

    @classmethod
    def for_stream(cls, label: str, total: int, stream: TextIO) -> Progress:
        isatty = getattr(stream, "isatty", None)
        return cls(label, total, stream, enabled=bool(isatty and isatty()))

    def advance(self, n: int) -> None:
        self._done = min(self._done + n, self._total)
        now = time.monotonic()
        if self._done >= self._total or now - self._drawn_at >= self._INTERVAL_S:
            self._draw()
            self._drawn_at = now

    def _draw(self) -> None:
        if not self._enabled or self._drawn == self._done:
            return
        self._drawn = self._done
        filled = self.WIDTH * self._done // self._total
        percent = 100 * self._done // self._total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self._done}/{self._total} ({percent}%)")
        self._stream.flush()

    def finish(self) -> None:
        if self._enabled:
            self._draw()
            self._stream.write("\n")
            self._stream.flush()
