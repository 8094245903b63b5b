"""``python -m cluster`` / ``duroxide-cluster``: parse the flags, start the supervisor.

Exit codes: 0 after a clean drain; 1 when the cluster cannot start (database unreachable, port
taken) or was stopped by a second signal; 2 for invalid flags or an ``--app`` that does not load.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import duroxide
from cluster.app import AppLoadError, load_setup
from cluster.config import ClusterConfig, parse_config
from cluster.endpoints import Endpoints
from cluster.metrics import ClusterCollector, render
from cluster.roles import plan_children
from cluster.signals import dump_stacks_on, on_signals
from cluster.supervisor import Supervisor, child_drain_ms, multiproc_dir, redact_url
from duroxide.observability.logging import configure_logging, get_logger

EXIT_FAILED, EXIT_USAGE = 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    # children inherit these; the runtime's configure_logging reads them first
    os.environ["DUROXIDE_LOG_LEVEL"] = config.log_level
    os.environ["DUROXIDE_LOG_FORMAT"] = config.log_format
    configure_logging(config.log_level, config.log_format)
    log = get_logger("cluster")
    try:
        load_setup(config.app)  # fail fast, before any child tries
    except AppLoadError as exc:
        log.error("cluster.bad_app", error=str(exc))
        print(f"duroxide-cluster: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with multiproc_dir() as metrics_dir:
        return _serve(config, log, metrics_dir)


def _serve(config: ClusterConfig, log: Any, metrics_dir: str) -> int:
    from duroxide import Client
    from duroxide.providers import open_provider

    try:
        provider = open_provider(config.database_url, config.schema)
    except Exception as exc:
        log.error("cluster.start_failed", reason="database",
                  database=redact_url(config.database_url), error=str(exc))  # fmt: skip
        return EXIT_FAILED
    try:
        supervisor = Supervisor(config, log=log, multiproc_dir=metrics_dir)
        collector = ClusterCollector(Client(provider).get_queue_depths, supervisor.counts,
                                     duroxide.__version__, log,
                                     tags=[tag for tag, _ in config.pools])  # fmt: skip
        try:
            endpoints = Endpoints(config.http_host, config.http_port, live=supervisor.liveness,
                                  ready=supervisor.readiness,
                                  metrics=lambda: render(metrics_dir, collector),
                                  log=log)  # fmt: skip
        except OSError as exc:
            log.error("cluster.start_failed", reason="http", host=config.http_host,
                      port=config.http_port, error=str(exc))  # fmt: skip
            return EXIT_FAILED
        # SIGTERM / SIGINT: the first drains, a second stops at once; SIGUSR1: thread stacks
        on_signals((signal.SIGTERM, signal.SIGINT), lambda _signum: supervisor.request_stop())
        dump_stacks_on(signal.SIGUSR1)
        endpoints.start()
        log.info("http.listening", host=config.http_host, port=endpoints.port)
        log.info(
            "cluster.started", version=duroxide.__version__, app=config.app,
            database=redact_url(config.database_url), schema=config.schema,
            children=[s.name for s in plan_children(config)], http_port=endpoints.port,
            drain_timeout_s=config.drain_timeout_s,
            child_drain_ms=child_drain_ms(config.drain_timeout_s),
        )  # fmt: skip
        try:
            return supervisor.run()
        finally:
            endpoints.stop()
    finally:
        provider.close()
