"""The ``duroxide`` operator command line (``python -m duroxide.cli``); see ``docs/cli.md``."""

from duroxide.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
