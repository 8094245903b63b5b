"""The benchmark handlers as a cluster application (``--app bench.cluster_app:setup``)."""

from bench.child import setup

__all__ = ["setup"]
