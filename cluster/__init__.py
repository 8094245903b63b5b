"""duroxide cluster: one supervisor per pod running orchestration dispatchers and activity
worker pools as separate, supervised OS processes.

    python -m cluster --app myapp.workflows:setup \\
        --database-url postgresql://user@db/app --orchestrators 2 --workers 4 --pool gpu=1

See ``docs/cluster.md`` for the flags, the endpoints and the metrics.
"""

from __future__ import annotations

from cluster.config import ClusterConfig, parse_config

__all__ = ["ClusterConfig", "parse_config"]
