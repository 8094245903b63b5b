"""Structured logs: structlog on top of the stdlib ``duroxide`` logger.

duroxide never calls ``structlog.configure()`` (that would clobber the application's setup): each
logger is wrapped with its own processor chain and rendered by a handler on the stdlib
``duroxide`` logger. ``configure_logging`` installs that handler (stderr by default) unless the
application already attached one; ``init_tracing`` sends the logs to a file instead.

Event names are stable dotted strings (``orchestration.completed``, ``activity.failed`` …) and
records carry the correlation fields ``instance_id, execution_id, orchestration_name,
orchestration_version, activity_name, activity_id, worker_id`` where they apply, and every
record carries the ``pid`` of the process that wrote it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

import structlog

ROOT = "duroxide"
_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL, "off": logging.CRITICAL + 10}  # fmt: skip
_lock = threading.Lock()
_HANDLER_MARK = "_duroxide_handler"


def _level(name: str) -> int:
    try:
        return _LEVELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {name!r}; use one of {sorted(_LEVELS)}") from None


_STAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)


def _add_pid(_logger: Any, _method: str, event_dict: Any) -> Any:
    """Every record names the process that wrote it (a cluster's children share one stderr)."""
    event_dict.setdefault("pid", os.getpid())
    return event_dict


def _formatter(fmt: str) -> logging.Formatter:
    last: list[Any]
    if fmt == "json":
        last = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        last = [structlog.dev.ConsoleRenderer(colors=False)]
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _add_pid, *last],
        # records from plain stdlib loggers under "duroxide" get the same fields
        foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           _STAMP],
    )  # fmt: skip


def _install(handler: logging.Handler, level: str, fmt: str, *, replace: bool) -> None:
    root = logging.getLogger(ROOT)
    with _lock:
        ours = [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]
        if ours and not replace:
            return
        if not replace and root.handlers:
            return  # the application configured logging itself
        for h in ours:
            root.removeHandler(h)
            h.close()
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(_formatter(fmt))
        root.addHandler(handler)
        root.setLevel(_level(level))
        root.propagate = False


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Install the default stderr handler once (``DUROXIDE_LOG_LEVEL``/``DUROXIDE_LOG_FORMAT``
    override the runtime options)."""
    level = os.environ.get("DUROXIDE_LOG_LEVEL") or level or "info"
    fmt = os.environ.get("DUROXIDE_LOG_FORMAT") or fmt or "pretty"
    _install(logging.StreamHandler(sys.stderr), level, "json" if fmt == "json" else "console",
             replace=False)  # fmt: skip


def init_tracing(path: str, log_level: str = "info", log_format: str = "pretty") -> None:
    """Route duroxide's logs to the file at ``path`` (appending)."""
    _level(log_level)
    try:
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(f"Failed to open log file {path!r}: {exc}") from exc
    _install(handler, log_level, "json" if log_format == "json" else "console", replace=True)


def get_logger(name: str, **bound: Any) -> Any:
    """A structlog logger over ``duroxide.<name>`` with ``bound`` fields."""
    logger = structlog.wrap_logger(
        logging.getLogger(f"{ROOT}.{name}"),
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _STAMP,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger.bind(**bound) if bound else logger


class LazyLog:
    """A structlog logger whose fields are bound lazily: ``bind`` only merges a dict, and a
    call below the level builds nothing. The runtime binds per turn and per activity on hot
    paths, where an eager ``structlog`` bind costs more than the rest of the logging."""

    __slots__ = ("_base", "_fields", "_std")

    def __init__(self, base: Any, std: logging.Logger, fields: dict[str, Any]) -> None:
        self._base = base
        self._std = std
        self._fields = fields

    def bind(self, **fields: Any) -> LazyLog:
        return LazyLog(self._base, self._std, {**self._fields, **fields})

    def debug(self, event: str, **kw: Any) -> None:
        if self._std.isEnabledFor(logging.DEBUG):
            self._base.debug(event, **self._fields, **kw)

    def info(self, event: str, **kw: Any) -> None:
        if self._std.isEnabledFor(logging.INFO):
            self._base.info(event, **self._fields, **kw)

    def warning(self, event: str, **kw: Any) -> None:
        if self._std.isEnabledFor(logging.WARNING):
            self._base.warning(event, **self._fields, **kw)

    def error(self, event: str, **kw: Any) -> None:
        if self._std.isEnabledFor(logging.ERROR):
            self._base.error(event, **self._fields, **kw)

    def exception(self, event: str, **kw: Any) -> None:
        self._base.exception(event, **self._fields, **kw)


def get_lazy_logger(name: str, **bound: Any) -> LazyLog:
    """Like :func:`get_logger`, with lazily bound fields (see :class:`LazyLog`)."""
    return LazyLog(get_logger(name), logging.getLogger(f"{ROOT}.{name}"), bound)
