"""Run the benchmark suite: ``python -m bench [options]`` (see ``--help`` and the README).

Every (implementation, backend, mode, workload) runs in a fresh child process (``child.py``)
on a fresh database (a SQLite file, or a new PostgreSQL schema dropped afterwards). For each run
it records the workload's figures (throughput, p50/p99), CPU seconds and peak RSS of every
process involved and, on PostgreSQL, the write transactions per orchestration (transaction ids
assigned between GO and RESULT) and commits per second. ``--compare PYTHON`` runs the same
in-process workloads with another interpreter's ``duroxide`` (e.g. the reference SDK in its own
virtual environment), alternating with ours, and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import pg, procstat, report

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "child.py"
WORKLOADS = ("hello", "chain10", "fanout", "timer", "latency", "history")
SIZES = {
    "full": {"hello": 2000, "chain10": 300, "fanout": 1000, "timer": 500, "latency": 200,
             "history": 20},
    "small": {"hello": 200, "chain10": 30, "fanout": 200, "timer": 50, "latency": 30,
              "history": 5},
}  # fmt: skip
PER_ORCHESTRATION = {"hello": 1, "chain10": 1, "fanout": None, "timer": 1, "latency": 1}


@dataclass
class Config:
    python: str
    impl: str
    backend: str
    mode: str
    workload: str
    n: int
    pg_url: str
    orchestrators: int
    workers: int
    orchestration_concurrency: int
    worker_concurrency: int
    timeout_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_one(cfg: Config) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="duroxide-bench-") as tmp:
        schema = None
        if cfg.backend == "postgres":
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            url = cfg.pg_url
        else:
            url = f"sqlite:{Path(tmp) / 'bench.db'}"
        cluster = None
        try:
            if cfg.mode == "cluster":
                cluster = _start_cluster(cfg, url, schema, Path(tmp))
            row = _drive_child(cfg, url, schema, cluster)
        finally:
            if cluster is not None:
                cluster.stop()
            if schema is not None:
                pg.drop_schema(cfg.pg_url, schema)
    return row


def _drive_child(cfg: Config, url: str, schema: str | None, cluster: Any) -> dict[str, Any]:
    cmd = [cfg.python, str(CHILD), "--workload", cfg.workload, "--url", url, "--n", str(cfg.n),
           "--runtime", "none" if cluster else "inproc",
           "--orchestration-concurrency", str(cfg.orchestration_concurrency),
           "--worker-concurrency", str(cfg.worker_concurrency)]  # fmt: skip
    if schema:
        cmd += ["--schema", schema]
    env = {**os.environ, "DUROXIDE_LOG_LEVEL": "error"}
    if cfg.impl != "duroxide-py":  # the other interpreter must not see our checkout
        env.pop("PYTHONPATH", None)
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env=env, cwd=tempfile.gettempdir() if cfg.impl != "duroxide-py"
                             else str(ROOT))  # fmt: skip
    try:
        _expect(child, "READY")
        if cluster is not None:
            cluster.wait_ready()
        procs = [child.pid, *(cluster.pids() if cluster else [])]
        cpu0 = procstat.cpu_seconds(procs)
        db0 = pg.counters(cfg.pg_url) if cfg.backend == "postgres" else None
        assert child.stdin is not None
        child.stdin.write("GO\n")
        child.stdin.flush()
        line = _expect(child, "RESULT ", timeout_s=cfg.timeout_s)
        db1 = pg.counters(cfg.pg_url) if cfg.backend == "postgres" else None
        cpu1 = procstat.cpu_seconds(procs)
        rss = procstat.peak_rss_mb(procs)
        result: dict[str, Any] = json.loads(line[len("RESULT ") :])
        child.stdin.write("EXIT\n")
        child.stdin.flush()
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
    row = {"impl": cfg.impl, "backend": cfg.backend, "mode": cfg.mode,
           "workload": cfg.workload, "n": cfg.n, **result}  # fmt: skip
    row["cpu_s_all_processes"] = round(sum(cpu1.values()) - sum(cpu0.values()), 2)
    row["peak_rss_mb_by_process"] = {str(k): v for k, v in rss.items()}
    row["peak_rss_mb_max"] = max(rss.values(), default=result.get("rss_mb"))
    if db0 is not None and db1 is not None:
        writes = db1["xid"] - db0["xid"]
        row["write_transactions"] = writes
        row["commits_per_s"] = (db1["commits"] - db0["commits"]) / result["elapsed_s"]
        per = PER_ORCHESTRATION.get(cfg.workload)
        if per:
            row["write_transactions_per_orchestration"] = writes / (cfg.n * per)
    return row


def _expect(child: subprocess.Popen[str], prefix: str, timeout_s: float = 300) -> str:
    """The child's next line starting with ``prefix``; kills it after ``timeout_s``."""
    assert child.stdout is not None
    timer = threading.Timer(timeout_s, child.kill)
    timer.start()
    try:
        while True:
            line = child.stdout.readline()
            if not line:
                code = child.wait()
                why = f"timed out after {timeout_s:.0f} s" if code == -9 else f"exited ({code})"
                raise RuntimeError(f"benchmark child {why} before {prefix.strip()}")
            if line.startswith(prefix):
                return line.rstrip("\n")
    finally:
        timer.cancel()


def _start_cluster(cfg: Config, url: str, schema: str | None, tmp: Path) -> Any:
    from bench.cluster import Cluster

    return Cluster.start(
        url=url, schema=schema, orchestrators=cfg.orchestrators, workers=cfg.workers,
        orchestration_concurrency=cfg.orchestration_concurrency,
        worker_concurrency=cfg.worker_concurrency, tmp=tmp,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--modes", default="inproc,cluster")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--n", type=int, help="override every workload's size")
    parser.add_argument("--pg-url", default=os.environ.get(
        "DUROXIDE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))  # fmt: skip
    parser.add_argument(
        "--compare",
        metavar="PYTHON",
        help="another interpreter whose duroxide runs the in-process workloads",
    )
    parser.add_argument("--orchestrators", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--orchestration-concurrency", type=int, default=64)
    parser.add_argument("--worker-concurrency", type=int, default=64)
    parser.add_argument("--pgbench", action="store_true", help="measure the physical limit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)

    rows: list[dict[str, Any]] = []
    limit = pg.pgbench_limit(args.pg_url) if args.pgbench else None
    impls = [("duroxide-py", sys.executable)]
    if args.compare:
        impls.append(("reference", args.compare))
    for backend in args.backends.split(","):
        for mode in args.modes.split(","):
            for workload in args.workloads.split(","):
                n = args.n or SIZES[args.size][workload]
                for impl, python in impls:
                    if impl != "duroxide-py" and mode == "cluster":
                        continue  # the cluster is ours only
                    cfg = Config(python, impl, backend, mode, workload, n, args.pg_url,
                                 args.orchestrators, args.workers,
                                 args.orchestration_concurrency,
                                 args.worker_concurrency, args.timeout)  # fmt: skip
                    print(f"-> {impl} {backend} {mode} {workload} n={n}", file=sys.stderr,
                          flush=True)  # fmt: skip
                    try:
                        row = run_one(cfg)
                    except Exception as exc:  # one failed run must not lose the others
                        row = {"impl": impl, "backend": backend, "mode": mode,
                               "workload": workload, "n": n, "error": str(exc)}  # fmt: skip
                    rows.append(row)
                    print(report.one_line(row), file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = {"machine": procstat.machine(), "pgbench": limit, "rows": rows}
    (out / f"{stamp}.json").write_text(json.dumps(data, indent=2))
    table = report.markdown(data)
    (out / f"{stamp}.md").write_text(table)
    print(table)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
