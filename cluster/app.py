"""Loading the application's ``setup(runtime)`` from ``MODULE:ATTR``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any


class AppLoadError(RuntimeError):
    """``--app`` names something that cannot be imported or is not a function."""


def load_setup(spec: str) -> Callable[[Any], Any]:
    """Import ``MODULE`` and return its ``ATTR`` (dotted attributes allowed).

    The current directory is searched first (as ``python -m`` does), so ``--app myapp:setup``
    works from the project's directory with the console script too.
    """
    module_name, _, attr = spec.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppLoadError(f"--app {spec}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(
                f"--app {spec}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if not callable(target):
        raise AppLoadError(
            f"--app {spec}: {attr!r} is a {type(target).__name__}, not a function setup(runtime)"
        )
    return target  # type: ignore[no-any-return]
