"""What each child process is: its role, its stable node id and its runtime options.

* ``orchestrator``: orchestration turns only (``worker_concurrency=0``).
* ``worker``: untagged activities only (``orchestration_concurrency=0``, ``default_only``).
* ``pool`` TAG: activities tagged TAG only (``TagFilter.tags([TAG])``).

A child's ``worker_node_id`` is ``<node>-<role>-<index>`` (``<node>-pool-<tag>-<index>`` for a
pool): stable across restarts, so a restarted worker takes its sessions back, and different for
every process, so two processes never share in-memory session state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.config import ClusterConfig
from duroxide.types import RuntimeOptions, TagFilter

ORCHESTRATOR = "orchestrator"
WORKER = "worker"
POOL = "pool"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """One slot of the cluster; the supervisor keeps one process alive per slot."""

    role: str
    index: int
    tag: str | None = None

    @property
    def name(self) -> str:
        """``orchestrator-0``, ``worker-1``, ``pool-gpu-0``."""
        if self.role == POOL:
            return f"{POOL}-{self.tag}-{self.index}"
        return f"{self.role}-{self.index}"

    @property
    def kind(self) -> str:
        """The slot kind the runtime reports for this role."""
        return "orchestration" if self.role == ORCHESTRATOR else "activity"


def plan_children(config: ClusterConfig) -> list[ChildSpec]:
    """Every child process the configuration asks for, in start order."""
    specs = [ChildSpec(role=ORCHESTRATOR, index=i) for i in range(config.orchestrators)]
    specs += [ChildSpec(role=WORKER, index=i) for i in range(config.workers)]
    for tag, count in config.pools:
        specs += [ChildSpec(role=POOL, index=i, tag=tag) for i in range(count)]
    return specs


def node_id(config: ClusterConfig, spec: ChildSpec) -> str:
    return f"{config.worker_node_id}-{spec.name}"


def runtime_options(config: ClusterConfig, spec: ChildSpec) -> RuntimeOptions:
    """The ``RuntimeOptions`` of the child that fills ``spec``."""
    common: dict[str, Any] = {
        "dispatcher_poll_interval_ms": config.poll_interval_ms,
        "orchestrator_lock_timeout_ms": config.orchestrator_lock_timeout_ms,
        "worker_lock_timeout_ms": config.worker_lock_timeout_ms,
        "max_sessions_per_runtime": config.max_sessions,
        "max_attempts": config.max_attempts,
        "worker_node_id": node_id(config, spec),
        "log_level": config.log_level,
        "log_format": config.log_format,
        "service_name": "duroxide-cluster",
    }
    if spec.role == ORCHESTRATOR:
        return RuntimeOptions(orchestration_concurrency=config.orchestration_concurrency,
                              worker_concurrency=0, **common)  # fmt: skip
    if spec.role == WORKER:
        return RuntimeOptions(orchestration_concurrency=0,
                              worker_concurrency=config.worker_concurrency,
                              worker_tag_filter=TagFilter.DEFAULT_ONLY, **common)  # fmt: skip
    if spec.role == POOL and spec.tag:
        return RuntimeOptions(orchestration_concurrency=0,
                              worker_concurrency=config.worker_concurrency,
                              worker_tag_filter=TagFilter.tags([spec.tag]), **common)  # fmt: skip
    raise ValueError(f"unknown child role {spec.role!r}")
