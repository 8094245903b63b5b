"""docs/deploy.md (the README's deploy section): its ``helm install`` is complete and works.

The command is taken from the document, its flags replayed through ``helm template``: it must
render, enable KEDA for every Deployment, and reference only the Secrets (and keys) that the
document's own ``kubectl create secret`` commands create.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from .helmtools import CHART, REPO, run_helm

DOC = REPO / "docs" / "deploy.md"


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """The block's commands, continuation lines joined, split like a shell would."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def doc_commands() -> list[list[str]]:
    return [cmd for block in code_blocks(DOC.read_text(), "bash") for cmd in commands(block)]


def helm_install() -> list[str]:
    installs = [c for c in doc_commands() if c[:2] == ["helm", "install"]]
    assert len(installs) == 1, f"expected one helm install in {DOC.name}, found {len(installs)}"
    return installs[0]


def created_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from ``kubectl [-n NS] create secret generic NAME --from-…=KEY=…``."""
    out: dict[str, set[str]] = {}
    text = DOC.read_text()
    inline = [shlex.split(m) for m in re.findall(r"`(kubectl [^`]*create secret[^`]*)`", text)]
    for cmd in [*doc_commands(), *inline]:
        if "create" not in cmd or "secret" not in cmd:
            continue
        name = cmd[cmd.index("generic") + 1]
        keys = {
            arg.split("=", 2)[1]
            for arg in cmd
            if arg.startswith(("--from-literal=", "--from-file="))
        }
        out[name] = keys
    return out


def render_install(extra_sets: list[str] | None = None) -> tuple[list[dict[str, Any]], str]:
    cmd = helm_install()
    release, chart = cmd[2], cmd[3]
    assert (REPO / chart).resolve() == CHART
    args = ["template", release, str(CHART)]
    rest = cmd[4:]
    namespace = "default"
    i = 0
    while i < len(rest):
        flag = rest[i]
        assert flag in ("--namespace", "-n", "--set", "--set-string", "--set-json"), (
            f"{flag}: the documented command must be self-contained (no values files)"
        )
        if flag in ("--namespace", "-n"):
            namespace = rest[i + 1]
        args += [flag, rest[i + 1]]
        i += 2
    for item in extra_sets or []:
        args += ["--set", item]
    proc = run_helm(args)
    return [d for d in yaml.safe_load_all(proc.stdout) if d], namespace


def test_helm_install_is_complete_with_keda(helm: str) -> None:
    docs, namespace = render_install()
    assert namespace == "media"
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Job", "ScaledObject", "TriggerAuthentication", "Service"} <= kinds
    assert "HorizontalPodAutoscaler" not in kinds
    deployments = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    scaled = [d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "ScaledObject"]
    assert sorted(scaled) == sorted(deployments)
    assert deployments == {
        "media-duroxide-orchestrator",
        "media-duroxide-worker",
        "media-duroxide-pool-gpu",
    }
    # the names the document promises are the ones rendered
    text = DOC.read_text()
    for name in deployments | {"media-duroxide-metrics", "media-duroxide-migrate"}:
        assert f"`{name}`" in text, name
    gpu = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-gpu")
    )
    limits = gpu["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": 1}


def test_helm_install_uses_only_documented_secrets(helm: str) -> None:
    secrets = created_secrets()
    docs, _ = render_install()
    referenced: set[tuple[str, str]] = set()
    for doc in docs:
        for ctr in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for entry in ctr.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add((ref["name"], ref["key"]))
        if doc["kind"] == "TriggerAuthentication":
            for ref in doc["spec"]["secretTargetRef"]:
                referenced.add((ref["name"], ref["key"]))
    assert referenced, "the chart references no Secret"
    for name, key in referenced:
        assert key in secrets.get(name, set()), f"Secret {name}/{key} is not created in the docs"
    # the TLS variant the document describes uses its documented CA Secret
    docs, _ = render_install(["database.tls.enabled=true", "database.tls.existingSecret=pg-ca"])
    volumes = [
        v["secret"]
        for d in docs
        for v in d.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
        if "secret" in v
    ]
    assert volumes and all(v["secretName"] == "pg-ca" for v in volumes)
    assert all(v["items"][0]["key"] in secrets["pg-ca"] for v in volumes)


def test_both_ways_to_add_the_application() -> None:
    text = DOC.read_text()
    assert "docker build" in text
    (derived,) = code_blocks(text, "dockerfile")
    assert re.search(r"^FROM duroxide:", derived, flags=re.MULTILINE)
    assert "pip install" in derived and re.search(r"^USER 10001$", derived, flags=re.MULTILINE)
    mounted = [c for c in doc_commands() if c[:2] == ["docker", "run"]]
    assert mounted and any(arg.endswith(":/app/media:ro") for arg in mounted[0])


def test_chart_readme_install_renders(helm: str, tmp_path: Path) -> None:
    """The chart README's own example command renders too."""
    text = (CHART / "README.md").read_text()
    (block,) = [b for b in code_blocks(text, "bash") if "helm install" in b]
    (cmd,) = [c for c in commands(block) if c[:2] == ["helm", "install"]]
    args = ["template", cmd[2], str(CHART), *cmd[4:]]
    docs = [d for d in yaml.safe_load_all(run_helm(args).stdout) if d]
    assert any(d["kind"] == "ScaledObject" for d in docs)
