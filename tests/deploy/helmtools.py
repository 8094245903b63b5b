"""Helm for the deployment tests: finding the binary, rendering the chart, reading the output.

Helm is found through ``DUROXIDE_HELM`` (a path) or ``PATH``. Without it the chart tests are
skipped with the reason, unless ``DUROXIDE_REQUIRE_HELM=1`` (CI sets it), where they fail: the
chart half of the suite must never pass by not running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "duroxide"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "dx"
NAMESPACE = "jobs"


@cache
def _find_helm() -> tuple[str | None, str]:
    """``(path, reason)``: the Helm 3 binary, or None and why there is none."""
    configured = os.environ.get("DUROXIDE_HELM", "").strip()
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            return None, f"DUROXIDE_HELM={configured!r} is not an executable file"
        path = configured
    else:
        found = shutil.which("helm")
        if found is None:
            return None, "no Helm: set DUROXIDE_HELM or put helm on PATH (.ci/run installs it)"
        path = found
    try:
        out = subprocess.run(
            [path, "version", "--short"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{path} version failed: {exc}"
    if not out.startswith("v3."):
        return None, f"{path} is not Helm 3 ({out})"
    return path, out


def helm_path() -> str:
    """The Helm binary; skips the test without one (fails under DUROXIDE_REQUIRE_HELM=1)."""
    path, reason = _find_helm()
    if path is None:
        if os.environ.get("DUROXIDE_REQUIRE_HELM") == "1":
            pytest.fail(f"DUROXIDE_REQUIRE_HELM=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@dataclass
class Rendered:
    """The objects one ``helm template`` produced."""

    docs: list[dict[str, Any]]
    text: str
    values: dict[str, Any] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of_kind(kind)}


def run_helm(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``helm ARGS``; fails the test on a non-zero exit when ``check``."""
    cmd = [helm_path(), *[str(a) for a in args]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}", pytrace=False)
    return proc


def helm_template(
    values_files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    *,
    check: bool = True,
    chart: Path = CHART,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    args: list[str] = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, *extra]
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return run_helm(args, check=check)


def merged_values(values_files: Sequence[Path]) -> dict[str, Any]:
    """The chart's defaults with the files laid over them (Helm's deep merge, no nulls)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for key, value in over.items():
                out[key] = merge(base.get(key), value) if key in base else value
            return out
        return over

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in values_files:
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    return values


def render(values_files: Sequence[Path] = (), sets: Sequence[str] = ()) -> Rendered:
    proc = helm_template(values_files, sets)
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return Rendered(docs=docs, text=proc.stdout, values=merged_values(values_files))
