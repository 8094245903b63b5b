"""``python -m tests.chaos [--full] [--only 1,5,9]``: run the fault scenarios in number order
against ``DUROXIDE_TEST_PG_URL`` / ``DATABASE_URL`` (default: the local server), one line
each; exit 1 if any guarantee did not hold."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from duroxide.observability.logging import configure_logging
from tests.chaos.result import ChaosEnv
from tests.chaos.runner import database_url, discover, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--full", action="store_true", help="full sizes (default: small)")
    parser.add_argument("--only", default="", help="comma-separated scenario numbers")
    parser.add_argument(
        "--verbose", action="store_true", help="show this process's warnings (reconnects…)"
    )
    args = parser.parse_args(argv)
    if not args.verbose:  # the faults make this process's providers warn by design
        configure_logging("error")
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    only = {int(n) for n in args.only.split(",") if n.strip()} or None
    scenarios = discover(only)
    if not scenarios:
        print("no scenario matches", file=sys.stderr)
        return 2
    failed = 0
    with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
        env = ChaosEnv(database_url(), Path(workdir), "full" if args.full else "small")
        for scenario in scenarios:
            result = run(scenario, env)
            print(result.line(), flush=True)
            failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
