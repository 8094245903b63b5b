"""The supervisor's HTTP endpoints (stdlib ``ThreadingHTTPServer`` on a daemon thread).

* ``/livez``: 200 while the supervisor's loop is alive, 503 if it stalled.
* ``/readyz``: 200 when the cluster is not draining and every child is up, else 503 with why.
* ``/metrics``: Prometheus text, every child aggregated (see ``cluster.metrics``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

#: (healthy, reason) for a probe.
Probe = Callable[[], tuple[bool, str]]


class Endpoints:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        live: Probe,
        ready: Probe,
        metrics: Callable[[], bytes],
        log: Any,
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/livez": lambda: _probe(live),
            "/readyz": lambda: _probe(ready),
            "/metrics": lambda: (200, CONTENT_TYPE_LATEST, metrics()),
        }
        self._server = ThreadingHTTPServer((host, port), _handler(routes, log))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the chosen one when started with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="cluster-http",
                                        kwargs={"poll_interval": 0.2}, daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _probe(check: Probe) -> tuple[int, str, bytes]:
    ok, reason = check()
    return (200 if ok else 503), "text/plain; charset=utf-8", f"{reason}\n".encode()


def _handler(routes: dict[str, Callable[[], tuple[int, str, bytes]]], log: Any) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "duroxide-cluster"

        def do_GET(self) -> None:
            self._respond(send_body=True)

        def do_HEAD(self) -> None:
            self._respond(send_body=False)

        def _respond(self, *, send_body: bool) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                status, ctype, body = 404, "text/plain; charset=utf-8", b"not found\n"
            else:
                try:
                    status, ctype, body = route()
                except Exception as exc:  # an endpoint failure is a 500, never a dead server
                    log.exception("http.request_failed", path=self.path)
                    status, ctype = 500, "text/plain; charset=utf-8"
                    body = f"{type(exc).__name__}: {exc}\n".encode()
            self.send_response(HTTPStatus(status))
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http.request", request=format % args)

    return Handler
