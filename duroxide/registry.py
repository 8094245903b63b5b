"""Registered orchestrations (by name and semver version) and activities (by name)."""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Callable
from typing import Any

from duroxide.serialization import check_name

DEFAULT_VERSION = "1.0.0"
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:[-+][0-9A-Za-z.-]+)?$")

Orchestrator = Callable[[Any, Any], Any]
Activity = Callable[[Any, Any], Any]


def parse_version(version: str) -> tuple[int, int, int]:
    match = _SEMVER.match(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"version must be a semantic version like '1.2.3', got {version!r}")
    return int(match[1]), int(match[2]), int(match[3])


class Registry:
    """Thread-safe; the orchestration lookup is what the replay engine calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orchestrations: dict[str, dict[str, Orchestrator]] = {}
        self._latest: dict[str, str] = {}
        self._activities: dict[str, Activity] = {}

    def add_orchestration(
        self, name: str, fn: Orchestrator, version: str = DEFAULT_VERSION
    ) -> None:
        check_name(name, "orchestration name")
        key = parse_version(version)
        if not callable(fn):
            raise TypeError(f"orchestration {name!r} must be callable, got {type(fn).__name__}")
        if inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"orchestration {name!r} is an async generator; orchestrations are plain "
                "generators (def + yield)"
            )
        with self._lock:
            versions = self._orchestrations.setdefault(name, {})
            if version in versions and versions[version] is not fn:
                raise ValueError(f"orchestration {name!r} version {version} is already registered")
            versions[version] = fn
            latest = self._latest.get(name)
            if latest is None or parse_version(latest) < key:
                self._latest[name] = version

    def add_activity(self, name: str, fn: Activity) -> None:
        check_name(name, "activity name")
        if not callable(fn):
            raise TypeError(f"activity {name!r} must be callable, got {type(fn).__name__}")
        with self._lock:
            existing = self._activities.get(name)
            if existing is not None and existing is not fn:
                raise ValueError(f"activity {name!r} is already registered")
            self._activities[name] = fn

    def resolve_orchestration(
        self, name: str, version: str | None
    ) -> tuple[str, Orchestrator] | None:
        versions = self._orchestrations.get(name)
        if not versions:
            return None
        if version is None:
            version = self._latest[name]
        fn = versions.get(version)
        return None if fn is None else (version, fn)

    def activity(self, name: str) -> Activity | None:
        return self._activities.get(name)

    def orchestration_names(self) -> list[str]:
        return sorted(self._orchestrations)

    def activity_names(self) -> list[str]:
        return sorted(self._activities)
