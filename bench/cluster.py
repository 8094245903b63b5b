"""Start and stop a real cluster (``python -m cluster``) for the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench import procstat

ROOT = Path(__file__).resolve().parent.parent


class Cluster:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    def start(
        cls,
        *,
        url: str,
        schema: str | None,
        orchestrators: int,
        workers: int,
        orchestration_concurrency: int,
        worker_concurrency: int,
        tmp: Path,
    ) -> Cluster:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-m", "cluster", "--app", "bench.cluster_app:setup",
               "--database-url", url, "--orchestrators", str(orchestrators),
               "--workers", str(workers), "--orchestration-concurrency",
               str(orchestration_concurrency), "--worker-concurrency", str(worker_concurrency),
               "--http-host", "127.0.0.1", "--http-port", str(port),
               "--log-level", "error", "--drain-timeout", "10"]  # fmt: skip
        if schema:
            cmd += ["--schema", schema]
        env = {**os.environ, "TMPDIR": str(tmp)}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        return cls(proc, port)

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cluster exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("cluster not ready in time")

    def pids(self) -> list[int]:
        return [self.proc.pid, *procstat.children_of(self.proc.pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
