"""The ``duroxide`` command: argument parsing, dispatch, and turning failures into exit codes.

Exit codes: 0 success; 1 operational error (unknown instance, bad JSON, unreachable database,
wait timeout, unhealthy), printed as one ``error: …`` line on stderr; 2 usage error. No
traceback is shown unless ``--debug`` is given.

Every global flag can come from the environment (``DUROXIDE_*``), and may be written before
or after the subcommand: ``duroxide --output json queues`` = ``duroxide queues --output json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from duroxide.cli import instances_read, instances_write, system
from duroxide.cli.common import CliError, Session, UsageError, one_line
from duroxide.cli.output import Printer

PROG = "duroxide"
OUTPUTS = ("table", "json")

EPILOG = """\
environment:
  DUROXIDE_DATABASE_URL   --database-url (sqlite:PATH or postgresql://user@host/db)
  DUROXIDE_SCHEMA         --schema (PostgreSQL schema, default duroxide)
  DUROXIDE_OUTPUT         --output (table or json)
  DUROXIDE_DEBUG=1        --debug
  DUROXIDE_HEALTHCHECK_TIMEOUT  healthcheck --timeout (seconds, default 5)
  DUROXIDE_PG_*           PostgreSQL pool and timeout options (see the provider docs)

times: ISO-8601 (2024-05-01T12:00:00Z; UTC when no offset), epoch milliseconds, 'now', or an
age such as 30d, 12h, 15m (that long ago).

exit codes: 0 ok, 1 operational error (one 'error: ...' line on stderr), 2 usage error."""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _global_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The global flags; with ``defaults`` false they are SUPPRESSed, so a subcommand's copy
    overrides the main parser's value only when given."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--database-url",
        metavar="URL",
        default=default(os.environ.get("DUROXIDE_DATABASE_URL")),
        help="database URL [DUROXIDE_DATABASE_URL]",
    )
    group.add_argument(
        "--schema",
        metavar="NAME",
        default=default(os.environ.get("DUROXIDE_SCHEMA")),
        help="PostgreSQL schema (default duroxide) [DUROXIDE_SCHEMA]",
    )
    group.add_argument(
        "--output",
        "-o",
        choices=OUTPUTS,
        default=default(os.environ.get("DUROXIDE_OUTPUT") or "table"),
        help="table (default) or json [DUROXIDE_OUTPUT]",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=default(_env_flag("DUROXIDE_DEBUG")),
        help="show tracebacks and debug logs [DUROXIDE_DEBUG]",
    )


def build_parser() -> argparse.ArgumentParser:
    from duroxide import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operate duroxide: inspect, signal and clean up instances; queues, "
        "metrics, schema migrations and health checks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _global_flags(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_flags(common, defaults=False)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    group = commands.add_parser(
        "instances", parents=[common], help="list, inspect, signal and delete instances"
    )
    verbs = group.add_subparsers(dest="verb", metavar="VERB", required=True)
    instances_read.register(verbs, common)
    instances_write.register(verbs, common)
    system.register(commands, common)
    return parser


def _configure_logging(debug: bool) -> None:
    from duroxide.observability.logging import configure_logging

    configure_logging(level="debug" if debug else "error")
    if not debug:  # keep driver warnings (pool reconnects …) out of the output
        logging.getLogger("psycopg").addHandler(logging.NullHandler())
        logging.getLogger("psycopg").propagate = False


def _message(exc: BaseException) -> str:
    """One line for a failure the user can act on."""
    from duroxide.errors import DuroxideError, ProviderError

    if isinstance(exc, ProviderError):
        if exc.retryable:  # connection refused or lost, timeouts, server shutting down
            return f"database unavailable: {one_line(exc.message)}"
        if exc.operation in ("verify_schema", "ensure_schema", "schema_version"):
            return one_line(exc.message)
        return f"database error in {exc.operation}: {one_line(exc.message)}"
    if isinstance(exc, DuroxideError | ValueError | TypeError | LookupError):
        return one_line(str(exc)) or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {one_line(str(exc))} (rerun with --debug)"


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    err = stderr if stderr is not None else sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors
    if args.output not in OUTPUTS:  # from DUROXIDE_OUTPUT, which argparse does not check
        parser.error(f"invalid output {args.output!r} (DUROXIDE_OUTPUT?): use table or json")
    _configure_logging(args.debug)
    session = Session(args.database_url, args.schema, Printer(args.output, stdout, err))
    try:
        return int(args.handler(args, session))
    except UsageError as exc:
        parser.print_usage(err)
        err.write(f"{PROG}: error: {exc}\n")
        return exc.exit_code
    except CliError as exc:
        _report(err, str(exc), args.debug)
        return exc.exit_code
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130
    except BrokenPipeError:  # `duroxide instances list | head`
        _silence_stdout()
        return 0
    except Exception as exc:  # the last line of defence: one line, never a traceback
        _report(err, _message(exc), args.debug)
        return 1
    finally:
        try:
            session.close()
        except Exception as exc:  # closing must not hide the result
            if args.debug:
                traceback.print_exception(exc, file=err)


def _report(err: TextIO, message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc(file=err)
    err.write(f"error: {message}\n")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
