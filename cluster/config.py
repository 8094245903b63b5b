"""The supervisor's settings: command-line flags, each with a ``DUROXIDE_*`` fallback.

A flag wins over its environment variable, which wins over the default. Every value is checked
here, before any process starts; a bad one ends the program with exit code 2 and a message that
names the flag or the variable it came from.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from duroxide.types import TagFilter

LOG_FORMATS = ("json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Everything the supervisor and its children need; picklable (it is sent to children)."""

    app: str
    database_url: str
    schema: str | None = None
    orchestrators: int = 1
    workers: int = 1
    pools: tuple[tuple[str, int], ...] = ()
    orchestration_concurrency: int = 64
    worker_concurrency: int = 64
    worker_node_id: str = "node"
    max_sessions: int = 10
    max_attempts: int = 10
    poll_interval_ms: int = 100
    orchestrator_lock_timeout_ms: int = 5_000
    worker_lock_timeout_ms: int = 30_000
    http_host: str = "0.0.0.0"
    http_port: int = 9464
    drain_timeout_s: float = 30.0
    restart_delay_s: float = 1.0
    restart_delay_max_s: float = 60.0
    log_format: str = "json"
    log_level: str = "info"

    @property
    def process_count(self) -> int:
        return self.orchestrators + self.workers + sum(n for _, n in self.pools)


class ConfigError(ValueError):
    """A flag or variable with a value the cluster cannot use."""


# --- converters: str -> value, raising ConfigError with what was expected ----------------------


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError("expected a whole number >= 0") from None
    if value < 0:
        raise ConfigError("expected a whole number >= 0")
    return value


def _positive(raw: str) -> int:
    value = _count(raw)
    if value < 1:
        raise ConfigError("expected a whole number >= 1")
    return value


def _port(raw: str) -> int:
    value = _count(raw)
    if value > 65535:
        raise ConfigError("expected a port number 0-65535 (0 picks a free port)")
    return value


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError("expected a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError("expected a finite number of seconds >= 0")
    return value


def _app(raw: str) -> str:
    module, sep, attr = raw.partition(":")
    if not sep or not module.strip() or not attr.strip():
        raise ConfigError("expected MODULE:ATTR, e.g. myapp.workflows:setup")
    return raw.strip()


def _database_url(raw: str) -> str:
    url = raw.strip()
    if url.startswith(("postgresql://", "postgres://")):
        return url
    if url.startswith("sqlite:"):
        if url in ("sqlite::memory:", "sqlite:") or "mode=memory" in url:
            raise ConfigError("an in-memory SQLite database cannot be shared by processes")
        return url
    raise ConfigError("expected postgresql://… or sqlite:path")


def _text(raw: str) -> str:
    if not raw.strip():
        raise ConfigError("must not be empty")
    return raw.strip()


def _schema(raw: str) -> str:
    from duroxide.providers.postgres.connection import validate_schema

    try:
        return validate_schema(raw.strip())
    except ValueError as exc:
        raise ConfigError(str(exc).removeprefix(f"invalid schema name {raw.strip()!r}: ")) from None


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        value = raw.strip().lower()
        if value == "warn":
            value = "warning"
        if value not in choices:
            raise ConfigError(f"expected one of {', '.join(choices)}")
        return value

    return convert


def _pool(raw: str) -> tuple[str, int]:
    tag, sep, count = raw.partition("=")
    tag = tag.strip()
    if not sep or not tag:
        raise ConfigError(f"{raw!r}: expected TAG=N, e.g. gpu=2")
    try:
        TagFilter.tags([tag])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{raw!r}: {exc}") from None
    try:
        return tag, _count(count.strip())
    except ConfigError:
        raise ConfigError(f"{raw!r}: the process count must be a whole number >= 0") from None


def _pools(raw: str) -> tuple[tuple[str, int], ...]:
    """``gpu=1,io=2`` (the variable's form)."""
    return tuple(_pool(part) for part in raw.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class _Option:
    flag: str
    env: str
    convert: Callable[[str], Any]
    help: str
    metavar: str = "N"


_OPTIONS: tuple[_Option, ...] = (
    _Option("--app", "DUROXIDE_APP", _app, "MODULE:ATTR of a function setup(runtime) that "
            "registers the orchestrations and activities (required)", "MODULE:ATTR"),
    _Option("--database-url", "DUROXIDE_DATABASE_URL", _database_url,
            "postgresql://… or sqlite:path (required)", "URL"),
    _Option("--schema", "DUROXIDE_SCHEMA", _schema, "PostgreSQL schema (default duroxide)", "NAME"),
    _Option("--orchestrators", "DUROXIDE_ORCHESTRATORS", _count,
            "orchestration dispatcher processes (default 1)"),
    _Option("--workers", "DUROXIDE_WORKERS", _count,
            "activity worker processes for untagged activities (default 1)"),
    _Option("--orchestration-concurrency", "DUROXIDE_ORCHESTRATION_CONCURRENCY", _positive,
            "turn slots per orchestrator process (default 64)"),
    _Option("--worker-concurrency", "DUROXIDE_WORKER_CONCURRENCY", _positive,
            "activity slots per worker process (default 64)"),
    _Option("--worker-node-id", "DUROXIDE_WORKER_NODE_ID", _text,
            "stable id of this node; each child's is <id>-<role>-<index> (default: hostname)",
            "ID"),
    _Option("--max-sessions", "DUROXIDE_MAX_SESSIONS", _count,
            "sessions per worker process (default 10; 0 disables sessions)"),
    _Option("--max-attempts", "DUROXIDE_MAX_ATTEMPTS", _positive,
            "fetches of one message before it is poison and fails its instance (default 10)"),
    _Option("--poll-interval-ms", "DUROXIDE_POLL_INTERVAL_MS", _positive,
            "dispatcher poll interval (default 100)", "MS"),
    _Option("--orchestrator-lock-timeout-ms", "DUROXIDE_ORCHESTRATOR_LOCK_TIMEOUT_MS", _positive,
            "lock of a turn in progress (default 5000)", "MS"),
    _Option("--worker-lock-timeout-ms", "DUROXIDE_WORKER_LOCK_TIMEOUT_MS", _positive,
            "lock of an activity in progress, renewed while it runs (default 30000)", "MS"),
    _Option("--http-host", "DUROXIDE_HTTP_HOST", _text,
            "address of /metrics, /livez, /readyz (default 0.0.0.0)", "HOST"),
    _Option("--http-port", "DUROXIDE_HTTP_PORT", _port, "port of /metrics, /livez, /readyz "
            "(default 9464; 0 picks a free one, logged as http.listening)", "PORT"),
    _Option("--drain-timeout", "DUROXIDE_DRAIN_TIMEOUT", _seconds,
            "on SIGTERM, how long in-flight work may finish before the cluster exits "
            "(default 30)", "SECONDS"),
    _Option("--restart-delay", "DUROXIDE_RESTART_DELAY", _seconds,
            "first delay before restarting a crashed child; doubles per crash (default 1)",
            "SECONDS"),
    _Option("--restart-delay-max", "DUROXIDE_RESTART_DELAY_MAX", _seconds,
            "longest delay before restarting a crashed child (default 60)", "SECONDS"),
    _Option("--log-format", "DUROXIDE_LOG_FORMAT", _choice(LOG_FORMATS),
            "json (default) or console", "FORMAT"),
    _Option("--log-level", "DUROXIDE_LOG_LEVEL", _choice(LOG_LEVELS),
            "debug, info (default), warning or error", "LEVEL"),
)  # fmt: skip

_POOLS_ENV = "DUROXIDE_POOLS"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Usage errors exit 2 with the usage line and the reason."""
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="duroxide-cluster",
        description="Run a duroxide application as supervised orchestrator and worker processes.",
        epilog="Every flag also reads the DUROXIDE_* variable shown in brackets.",
    )
    for opt in _OPTIONS:
        parser.add_argument(opt.flag, metavar=opt.metavar, help=f"{opt.help} [{opt.env}]")
    parser.add_argument(
        "--pool", action="append", metavar="TAG=N", default=None,
        help=f"N worker processes that take only activities tagged TAG; repeatable "
             f"[{_POOLS_ENV}, comma-separated: gpu=1,io=2]",
    )  # fmt: skip
    return parser


def parse_config(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> ClusterConfig:
    """The configuration from ``argv`` and ``environ``; exits 2 with a message when invalid."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for opt in _OPTIONS:
        dest = opt.flag[2:].replace("-", "_")
        raw, source = getattr(args, dest), f"argument {opt.flag}"
        if raw is None:
            raw, source = environ.get(opt.env), opt.env
            if raw is None or not raw.strip():
                continue
        try:
            values[dest] = opt.convert(raw)
        except ConfigError as exc:
            parser.error(f"{source}={raw!r}: {exc}")
    try:
        if args.pool is not None:
            pools = tuple(_pool(p) for p in args.pool)
        else:
            pools = _pools(environ.get(_POOLS_ENV, ""))
    except ConfigError as exc:
        source = "argument --pool" if args.pool is not None else _POOLS_ENV
        parser.error(f"{source}: {exc}")
    try:
        return _build(values, pools)
    except ConfigError as exc:
        parser.error(str(exc))


def _build(values: dict[str, Any], pools: tuple[tuple[str, int], ...]) -> ClusterConfig:
    for required, env in (("app", "DUROXIDE_APP"), ("database_url", "DUROXIDE_DATABASE_URL")):
        if required not in values:
            flag = "--" + required.replace("_", "-")
            raise ConfigError(f"{flag} (or {env}) is required")
    tags = [tag for tag, _ in pools]
    duplicates = sorted({t for t in tags if tags.count(t) > 1})
    if duplicates:
        raise ConfigError(f"pool tag(s) {duplicates} given more than once")
    rename = {"drain_timeout": "drain_timeout_s", "restart_delay": "restart_delay_s",
              "restart_delay_max": "restart_delay_max_s"}  # fmt: skip
    fields = {rename.get(k, k): v for k, v in values.items()}
    fields.setdefault("worker_node_id", socket.gethostname() or "node")
    config = ClusterConfig(pools=pools, **fields)
    if config.process_count == 0:
        raise ConfigError("nothing to run: --orchestrators, --workers and every --pool are 0")
    if config.restart_delay_max_s < config.restart_delay_s:
        raise ConfigError(
            f"--restart-delay-max ({config.restart_delay_max_s:g}) must be >= "
            f"--restart-delay ({config.restart_delay_s:g})"
        )
    if config.database_url.startswith("sqlite:") and config.schema is not None:
        raise ConfigError("--schema applies to PostgreSQL only")
    return config
