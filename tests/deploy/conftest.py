"""Fixtures for the deployment tests (the helpers are in helmtools.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .helmtools import VALUES_DIR, Rendered, helm_path, render


@pytest.fixture(scope="session")
def helm() -> str:
    return helm_path()


@pytest.fixture(scope="session")
def render_file() -> Callable[[str], Rendered]:
    """``render_file("keda-pools.yaml")``: that values file rendered (cached per session)."""
    cached: dict[str, Rendered] = {}

    def get(name: str) -> Rendered:
        if name not in cached:
            cached[name] = render([VALUES_DIR / name])
        return cached[name]

    return get
