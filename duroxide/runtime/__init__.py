"""The runtime: orchestration dispatcher and activity worker in background threads."""

from duroxide.runtime.metrics import MetricsSnapshot
from duroxide.runtime.runtime import Runtime

__all__ = ["MetricsSnapshot", "Runtime"]
