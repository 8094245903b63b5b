"""Flags, their ``DUROXIDE_*`` fallbacks, and what each child process is made of."""

from __future__ import annotations

import pytest

from cluster.config import ClusterConfig, parse_config
from cluster.roles import ORCHESTRATOR, POOL, WORKER, ChildSpec, plan_children, runtime_options
from cluster.supervisor import child_drain_ms, redact_url, restart_delay
from duroxide.types import TagFilter

PG = "postgresql://app:secret@db.internal:5432/app"
BASE = ["--app", "myapp:setup", "--database-url", PG]


def parse(argv: list[str], env: dict[str, str] | None = None) -> ClusterConfig:
    return parse_config(argv, env or {})


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str],
                env: dict[str, str] | None = None) -> str:  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        parse(argv, env)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_defaults() -> None:
    config = parse(BASE)
    assert (config.app, config.database_url, config.schema) == ("myapp:setup", PG, None)
    assert (config.orchestrators, config.workers, config.pools) == (1, 1, ())
    assert (config.orchestration_concurrency, config.worker_concurrency) == (64, 64)
    assert (config.http_port, config.drain_timeout_s) == (9464, 30.0)
    assert (config.log_format, config.log_level) == ("json", "info")
    assert (config.restart_delay_s, config.restart_delay_max_s) == (1.0, 60.0)
    assert config.worker_node_id  # the hostname


def test_every_flag() -> None:
    config = parse([
        *BASE, "--schema", "tenant_a", "--orchestrators", "0", "--workers", "3",
        "--pool", "gpu=1", "--pool", "io=2", "--orchestration-concurrency", "16",
        "--worker-concurrency", "2", "--worker-node-id", "pod-7", "--max-sessions", "0",
        "--max-attempts", "50", "--poll-interval-ms", "25",
        "--orchestrator-lock-timeout-ms", "2000", "--worker-lock-timeout-ms", "9000",
        "--http-host", "127.0.0.1", "--http-port", "0",
        "--drain-timeout", "2.5", "--restart-delay", "0.5", "--restart-delay-max", "4",
        "--log-format", "console", "--log-level", "DEBUG",
    ])  # fmt: skip
    assert config == ClusterConfig(
        app="myapp:setup", database_url=PG, schema="tenant_a", orchestrators=0, workers=3,
        pools=(("gpu", 1), ("io", 2)), orchestration_concurrency=16, worker_concurrency=2,
        worker_node_id="pod-7", max_sessions=0, max_attempts=50, poll_interval_ms=25,
        orchestrator_lock_timeout_ms=2000, worker_lock_timeout_ms=9000, http_host="127.0.0.1",
        http_port=0, drain_timeout_s=2.5, restart_delay_s=0.5, restart_delay_max_s=4.0,
        log_format="console", log_level="debug",
    )  # fmt: skip


def test_environment_fallbacks() -> None:
    config = parse([], {
        "DUROXIDE_APP": "pkg.mod:setup", "DUROXIDE_DATABASE_URL": "sqlite:/tmp/x.db",
        "DUROXIDE_ORCHESTRATORS": "2", "DUROXIDE_WORKERS": "0", "DUROXIDE_POOLS": "gpu=1,io=2",
        "DUROXIDE_HTTP_PORT": "8080", "DUROXIDE_DRAIN_TIMEOUT": "10",
        "DUROXIDE_LOG_FORMAT": "console", "DUROXIDE_WORKER_NODE_ID": "n1",
    })  # fmt: skip
    assert (config.app, config.database_url) == ("pkg.mod:setup", "sqlite:/tmp/x.db")
    assert (config.orchestrators, config.workers) == (2, 0)
    assert config.pools == (("gpu", 1), ("io", 2))
    assert (config.http_port, config.drain_timeout_s, config.log_format) == (8080, 10.0, "console")


def test_a_flag_wins_over_its_variable() -> None:
    env = {"DUROXIDE_WORKERS": "5", "DUROXIDE_POOLS": "gpu=3", "DUROXIDE_HTTP_PORT": "1"}
    config = parse([*BASE, "--workers", "2", "--pool", "io=1", "--http-port", "2"], env)
    assert (config.workers, config.pools, config.http_port) == (2, (("io", 1),), 2)


def test_empty_variables_are_ignored() -> None:
    assert parse(BASE, {"DUROXIDE_WORKERS": " ", "DUROXIDE_POOLS": ""}).workers == 1


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "--app (or DUROXIDE_APP) is required"),
        (["--app", "x:y"], {}, "--database-url (or DUROXIDE_DATABASE_URL) is required"),
        ([*BASE, "--workers", "-1"], {}, "argument --workers='-1': expected a whole number >= 0"),
        (BASE, {"DUROXIDE_WORKERS": "many"}, "DUROXIDE_WORKERS='many': expected a whole number"),
        ([*BASE, "--worker-concurrency", "0"], {}, "expected a whole number >= 1"),
        (["--app", "nocolon", "--database-url", PG], {}, "expected MODULE:ATTR"),
        (["--app", "a:b", "--database-url", "mysql://x"], {}, "expected postgresql://"),
        (["--app", "a:b", "--database-url", "sqlite::memory:"], {}, "cannot be shared"),
        ([*BASE, "--pool", "gpu"], {}, "argument --pool: 'gpu': expected TAG=N"),
        ([*BASE, "--pool", "gpu=x"], {}, "process count must be a whole number"),
        (BASE, {"DUROXIDE_POOLS": "gpu=1,=2"}, "DUROXIDE_POOLS: '=2': expected TAG=N"),
        ([*BASE, "--pool", "gpu=1", "--pool", "gpu=2"], {}, "['gpu'] given more than once"),
        ([*BASE, "--orchestrators", "0", "--workers", "0"], {}, "nothing to run"),
        ([*BASE, "--http-port", "70000"], {}, "expected a port number"),
        ([*BASE, "--drain-timeout", "soon"], {}, "expected a number of seconds"),
        ([*BASE, "--drain-timeout", "nan"], {}, "finite number of seconds"),
        ([*BASE, "--log-format", "xml"], {}, "expected one of json, console"),
        ([*BASE, "--schema", "Bad-Name"], {}, "argument --schema='Bad-Name': use 1-63"),
        ([*BASE, "--restart-delay", "5", "--restart-delay-max", "1"], {}, "must be >="),
        (["--app", "a:b", "--database-url", "sqlite:x.db", "--schema", "s"], {},
         "--schema applies to PostgreSQL only"),
        ([*BASE, "--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    ],
)  # fmt: skip
def test_invalid_values_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str], message: str
) -> None:
    err = usage_error(capsys, argv, env)
    assert message in err
    assert err.startswith("usage: duroxide-cluster")


def test_help_names_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for variable in ("DUROXIDE_APP", "DUROXIDE_DATABASE_URL", "DUROXIDE_POOLS",
                     "DUROXIDE_HTTP_PORT", "DUROXIDE_DRAIN_TIMEOUT"):  # fmt: skip
        assert variable in out


def test_roles_become_runtime_options() -> None:
    config = parse([*BASE, "--orchestrators", "2", "--workers", "1", "--pool", "gpu=2",
                    "--worker-node-id", "pod-1", "--orchestration-concurrency", "6",
                    "--worker-concurrency", "3", "--max-attempts", "40"])  # fmt: skip
    specs = plan_children(config)
    assert [s.name for s in specs] == ["orchestrator-0", "orchestrator-1", "worker-0",
                                       "pool-gpu-0", "pool-gpu-1"]  # fmt: skip
    orch, worker, pool = (runtime_options(config, specs[i]) for i in (0, 2, 4))
    assert (orch.orchestration_concurrency, orch.worker_concurrency) == (6, 0)
    assert (worker.orchestration_concurrency, worker.worker_concurrency) == (0, 3)
    assert worker.worker_tag_filter == TagFilter.DEFAULT_ONLY
    assert pool.worker_tag_filter == TagFilter.tags(["gpu"])
    assert {orch.max_attempts, worker.max_attempts, pool.max_attempts} == {40}
    assert [runtime_options(config, s).worker_node_id for s in specs] == [
        "pod-1-orchestrator-0", "pod-1-orchestrator-1", "pod-1-worker-0", "pod-1-pool-gpu-0",
        "pod-1-pool-gpu-1",
    ]  # fmt: skip
    assert {s.role for s in specs} == {ORCHESTRATOR, WORKER, POOL}
    with pytest.raises(ValueError, match="unknown child role"):
        runtime_options(config, ChildSpec(role="other", index=0))


def test_restart_backoff_doubles_up_to_the_cap() -> None:
    config = parse([*BASE, "--restart-delay", "1", "--restart-delay-max", "60"])
    assert [restart_delay(config, n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_children_drain_within_the_supervisors_timeout() -> None:
    assert child_drain_ms(30) == 28_000
    assert child_drain_ms(4) == 3_200
    assert 0 < child_drain_ms(1) < 1_000
    assert child_drain_ms(0) == 0


def test_logged_database_urls_have_no_password() -> None:
    assert redact_url(PG) == "postgresql://app@db.internal:5432/app"
    assert redact_url("sqlite:/tmp/x.db") == "sqlite:/tmp/x.db"
