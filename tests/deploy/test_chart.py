"""The Helm chart: lint, render every values file, and check the objects it produces.

Each file under values/ is rendered with ``helm template``; the YAML is parsed and checked
against what that file asks for (``EXPECTED``): which Deployments exist, what each one runs (the
supervisor's own flag parser reads the rendered environment), probes, ports, Secret references,
the migration hook, and that no Deployment has two autoscalers.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .helmtools import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUES_DIR,
    Rendered,
    helm_template,
    render,
    run_helm,
)

FULLNAME = f"{RELEASE}-duroxide"


@dataclass(frozen=True)
class Role:
    """What one Deployment must run, and how it must scale."""

    kind: str  # orchestrator | worker | pool
    processes: int
    concurrency: int
    tag: str | None = None
    replicas: int | None = None  # None: autoscaled (no replicas field)
    autoscaler: str | None = None  # None | "hpa" | "keda"
    min_replicas: int | None = None
    max_replicas: int | None = None
    target: int | None = None  # KEDA backlog per replica
    activation: int = 0
    drain: float = 30
    grace: int = 45
    max_sessions: int | None = None


@dataclass(frozen=True)
class Expect:
    roles: dict[str, Role]  # component -> Role
    secret: tuple[str, str] = ("duroxide-database", "url")
    migration_secret: tuple[str, str] = ("duroxide-database", "url")
    schema: str = "duroxide"
    port: int = 9464
    image: str = "duroxide:0.1.0"


EXPECTED: dict[str, Expect] = {
    "defaults.yaml": Expect(
        roles={
            "orchestrator": Role("orchestrator", 1, 64, replicas=2),
            "worker": Role("worker", 2, 64, replicas=2),
        }
    ),
    "keda-pools.yaml": Expect(
        roles={
            "orchestrator": Role("orchestrator", 2, 6, autoscaler="keda", min_replicas=1,
                                 max_replicas=8, target=12),
            "worker": Role("worker", 3, 10, autoscaler="keda", min_replicas=1, max_replicas=8,
                           target=30, max_sessions=0),
            "pool-gpu": Role("pool", 1, 2, tag="gpu", autoscaler="keda", min_replicas=0,
                             max_replicas=4, target=2, drain=120, grace=150),
            "pool-io-bound": Role("pool", 4, 16, tag="io_bound", autoscaler="keda",
                                  min_replicas=1, max_replicas=8, target=100, activation=5),
            "pool-legacy": Role("pool", 1, 64, tag="legacy.batch", replicas=1),
        },
        secret=("media-db-dml", "dsn"),
        migration_secret=("media-db-ddl", "dsn"),
        schema="media",
        image="registry.example/media/duroxide-app:1.4.2",
    ),
    "keda-prometheus.yaml": Expect(
        roles={
            "orchestrator": Role("orchestrator", 1, 64, autoscaler="keda", min_replicas=1,
                                 max_replicas=10, target=64),
            "worker": Role("worker", 2, 64, autoscaler="keda", min_replicas=1, max_replicas=10,
                           target=128),
            "pool-gpu": Role("pool", 1, 2, tag="gpu", autoscaler="keda", min_replicas=1,
                             max_replicas=10, target=2),
        }
    ),
    "hpa.yaml": Expect(
        roles={
            "orchestrator": Role("orchestrator", 1, 64, autoscaler="hpa", min_replicas=2,
                                 max_replicas=6),
            "worker": Role("worker", 2, 64, replicas=3),
            "pool-gpu": Role("pool", 1, 64, tag="gpu", autoscaler="keda", min_replicas=0,
                             max_replicas=6, target=64),
            "pool-reports": Role("pool", 1, 64, tag="reports", autoscaler="hpa", min_replicas=2,
                                 max_replicas=6),
        }
    ),
    "servicemonitor.yaml": Expect(
        roles={
            "orchestrator": Role("orchestrator", 1, 64, replicas=2, drain=20, grace=30),
            "worker": Role("worker", 2, 64, replicas=2, drain=20, grace=30),
        },
        port=9100,
    ),
    "tls.yaml": Expect(
        roles={
            "orchestrator": Role("orchestrator", 1, 64, replicas=2),
            "worker": Role("worker", 2, 64, replicas=2),
            "pool-gpu": Role("pool", 1, 64, tag="gpu", replicas=1),
        },
        secret=("pg-app", "url"),
        migration_secret=("pg-owner", "owner-url"),
    ),
}  # fmt: skip

VALUES_FILES = sorted(EXPECTED)

STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)

#: user:password@ in a URL: must never appear in rendered objects.
LITERAL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^@\s'\"]+@", re.IGNORECASE)


# --- helpers -------------------------------------------------------------------------------------


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one supervisor container per pod"
    return containers[0]


def env_of(ctr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Env entries by name; a name given twice fails (the later one would silently win)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in ctr.get("env", []):
        assert entry["name"] not in out, f"env {entry['name']} set twice"
        out[entry["name"]] = entry
    return out


def literal_env(ctr: dict[str, Any]) -> dict[str, str]:
    return {k: v["value"] for k, v in env_of(ctr).items() if "value" in v}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def deployments(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """Deployments by component."""
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in rendered.of_kind("Deployment")
    }


def autoscalers_of(rendered: Rendered, name: str) -> list[str]:
    return [
        obj["kind"]
        for obj in rendered.docs
        if obj["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
        and obj["spec"]["scaleTargetRef"]["name"] == name
    ]


def secret_ref(entry: dict[str, Any]) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


# --- lint and render -----------------------------------------------------------------------------


def test_lint_defaults_is_clean(helm: str) -> None:
    proc = run_helm(["lint", "--strict", str(CHART)])
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_lint_with_values_is_clean(helm: str, values_file: str) -> None:
    proc = run_helm(["lint", "--strict", str(CHART), "-f", str(VALUES_DIR / values_file)])
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout
    assert "Fail:" not in proc.stderr, proc.stderr


def test_every_values_file_is_checked() -> None:
    assert sorted(p.name for p in VALUES_DIR.glob("*.yaml")) == VALUES_FILES


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_objects_are_well_formed(render_file: Callable[[str], Rendered], values_file: str) -> None:
    rendered = render_file(values_file)
    seen: set[tuple[str, str]] = set()
    for obj in rendered.docs:
        assert {"apiVersion", "kind", "metadata"} <= obj.keys(), obj
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        assert len(obj["metadata"]["name"]) <= 63
        labels = obj["metadata"].get("labels", {})
        for label in STANDARD_LABELS:
            assert label in labels, f"{key} lacks label {label}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert not LITERAL_CREDENTIALS.search(rendered.text), "a password in the rendered objects"


# --- Deployments ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_one_deployment_per_role(render_file: Callable[[str], Rendered], values_file: str) -> None:
    rendered, expect = render_file(values_file), EXPECTED[values_file]
    assert set(deployments(rendered)) == set(expect.roles)
    for component, dep in deployments(rendered).items():
        assert dep["metadata"]["name"] == f"{FULLNAME}-{component}"


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_selectors_are_disjoint(render_file: Callable[[str], Rendered], values_file: str) -> None:
    deps = list(deployments(render_file(values_file)).values())
    for dep in deps:
        selector = dep["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(dep)), "a Deployment must select its own pods"
        for other in deps:
            if other is not dep:
                assert not selects(selector, pod_labels(other)), (
                    f"{dep['metadata']['name']} selects the pods of {other['metadata']['name']}"
                )


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_supervisor_reads_the_rendered_environment(
    render_file: Callable[[str], Rendered], values_file: str
) -> None:
    """The supervisor's own parser, given each pod's environment, runs exactly that role."""
    from cluster.config import parse_config

    rendered, expect = render_file(values_file), EXPECTED[values_file]
    for component, dep in deployments(rendered).items():
        role = expect.roles[component]
        ctr = container(dep)
        env = literal_env(ctr)
        # every role variable is explicit: an image's own DUROXIDE_POOLS etc. cannot leak in
        assert {"DUROXIDE_ORCHESTRATORS", "DUROXIDE_WORKERS", "DUROXIDE_POOLS"} <= env.keys()
        env["DUROXIDE_DATABASE_URL"] = "postgresql://app@db:5432/app"  # from the Secret
        env.setdefault("DUROXIDE_APP", "myapp.workflows:setup")  # else: the image's
        config = parse_config(ctr.get("args", []), env)
        assert config.schema == expect.schema
        assert config.http_port == expect.port
        assert config.drain_timeout_s == role.drain
        if role.kind == "orchestrator":
            assert (config.orchestrators, config.workers, config.pools) == (role.processes, 0, ())
            assert config.orchestration_concurrency == role.concurrency
        elif role.kind == "worker":
            assert (config.orchestrators, config.workers, config.pools) == (0, role.processes, ())
            assert config.worker_concurrency == role.concurrency
        else:
            assert (config.orchestrators, config.workers) == (0, 0)
            assert config.pools == ((role.tag, role.processes),)
            assert config.worker_concurrency == role.concurrency
        if role.max_sessions is not None:
            assert config.max_sessions == role.max_sessions
        assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == role.grace
        assert role.grace > config.drain_timeout_s


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_database_comes_from_secrets(
    render_file: Callable[[str], Rendered], values_file: str
) -> None:
    rendered, expect = render_file(values_file), EXPECTED[values_file]
    for dep in rendered.of_kind("Deployment"):
        env = env_of(container(dep))
        assert secret_ref(env["DUROXIDE_DATABASE_URL"]) == expect.secret
        assert env["DUROXIDE_PG_MIGRATE"]["value"] == "0", "pods must never migrate"
        assert env["DUROXIDE_SCHEMA"]["value"] == expect.schema
    for obj in rendered.docs:
        for ctr in _containers(obj):
            for entry in ctr.get("env", []):
                assert "://" not in entry.get("value", ""), f"literal URL in {entry['name']}"


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_ports_and_probes(render_file: Callable[[str], Rendered], values_file: str) -> None:
    rendered, expect = render_file(values_file), EXPECTED[values_file]
    values = rendered.values
    for dep in rendered.of_kind("Deployment"):
        ctr = container(dep)
        assert ctr["image"] == expect.image
        assert ctr["ports"] == [{"name": "http", "containerPort": expect.port, "protocol": "TCP"}]
        assert ctr["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert ctr["startupProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        if "httpGet" in values["readinessProbe"]:
            assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        else:  # overridden in the values: rendered as given
            assert ctr["readinessProbe"] == values["readinessProbe"]
        annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
        if values["metrics"]["scrapeAnnotations"]:
            assert annotations["prometheus.io/scrape"] == "true"
            assert annotations["prometheus.io/port"] == str(expect.port)
            assert annotations["prometheus.io/path"] == "/metrics"
        else:
            assert not any(k.startswith("prometheus.io/") for k in annotations)


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_security_context(render_file: Callable[[str], Rendered], values_file: str) -> None:
    rendered = render_file(values_file)
    sa_create = rendered.values["serviceAccount"]["create"]
    for workload in [*rendered.of_kind("Deployment"), *rendered.of_kind("Job")]:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        ctr = pod["containers"][0]
        assert ctr["securityContext"]["readOnlyRootFilesystem"] is True
        assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
        assert ctr["securityContext"]["capabilities"]["drop"] == ["ALL"]
        # the root filesystem is read-only: /tmp (the metrics directory) is an emptyDir
        mounts = {m["mountPath"]: m["name"] for m in ctr["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert isinstance(volumes[mounts["/tmp"]]["emptyDir"], dict)
    sa_names = rendered.names("ServiceAccount")
    for dep in rendered.of_kind("Deployment"):
        name = dep["spec"]["template"]["spec"]["serviceAccountName"]
        if sa_create:
            assert name in sa_names
        else:
            assert name == rendered.values["serviceAccount"]["name"]
            assert not sa_names


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_scheduling_and_extra_env(render_file: Callable[[str], Rendered], values_file: str) -> None:
    """Per-Deployment nodeSelector/tolerations/resources and the shared extraEnv land."""
    rendered = render_file(values_file)
    values = rendered.values
    own_values = {"orchestrator": values["orchestrator"], "worker": values["worker"]}
    for tag, entry in values["pools"].items():
        own_values[f"pool-{_slug(tag, values)}"] = entry or {}
    for component, dep in deployments(rendered).items():
        own = own_values[component]
        pod = dep["spec"]["template"]["spec"]
        assert pod.get("nodeSelector", {}) == (own.get("nodeSelector") or values["nodeSelector"])
        assert pod.get("tolerations", []) == (own.get("tolerations") or values["tolerations"])
        assert container(dep).get("resources", {}) == (own.get("resources") or {})
        env = env_of(container(dep))
        for entry in values["extraEnv"]:
            assert env[entry["name"]] == entry


def _slug(tag: str, values: dict[str, Any]) -> str:
    entry = values["pools"][tag] or {}
    return entry.get("name") or tag.lower().replace("_", "-").replace(".", "-")


# --- autoscaling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_at_most_one_autoscaler_per_deployment(
    render_file: Callable[[str], Rendered], values_file: str
) -> None:
    rendered, expect = render_file(values_file), EXPECTED[values_file]
    names = rendered.names("Deployment")
    for obj in [*rendered.of_kind("HorizontalPodAutoscaler"), *rendered.of_kind("ScaledObject")]:
        target = obj["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert target["name"] in names, f"{obj['kind']} targets a Deployment not rendered"
    for component, dep in deployments(rendered).items():
        role = expect.roles[component]
        kinds = autoscalers_of(rendered, dep["metadata"]["name"])
        want = {None: [], "hpa": ["HorizontalPodAutoscaler"], "keda": ["ScaledObject"]}
        assert kinds == want[role.autoscaler], component
        if role.autoscaler:
            assert "replicas" not in dep["spec"], "an autoscaled Deployment must not set replicas"
        else:
            assert dep["spec"]["replicas"] == role.replicas


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_autoscaler_bounds(render_file: Callable[[str], Rendered], values_file: str) -> None:
    rendered, expect = render_file(values_file), EXPECTED[values_file]
    for component, role in expect.roles.items():
        name = f"{FULLNAME}-{component}"
        if role.autoscaler == "hpa":
            hpa = rendered.one("HorizontalPodAutoscaler", name)
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
                role.min_replicas,
                role.max_replicas,
            )
            assert hpa["spec"]["metrics"], "an HPA needs a metric"
        elif role.autoscaler == "keda":
            so = rendered.one("ScaledObject", name)
            assert so["apiVersion"] == "keda.sh/v1alpha1"
            assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (
                role.min_replicas,
                role.max_replicas,
            )
            (trigger,) = so["spec"]["triggers"]
            meta = trigger["metadata"]
            if trigger["type"] == "postgresql":
                assert meta["targetQueryValue"] == str(role.target)
                assert meta["activationTargetQueryValue"] == str(role.activation)
            else:
                assert meta["threshold"] == str(role.target)
                assert meta["activationThreshold"] == str(role.activation)


def test_keda_postgresql_trigger_queries_the_backlog_function(
    render_file: Callable[[str], Rendered],
) -> None:
    rendered = render_file("keda-pools.yaml")
    queries = {
        so["metadata"]["name"]: so["spec"]["triggers"][0] for so in rendered.of_kind("ScaledObject")
    }
    assert {name: t["metadata"]["query"] for name, t in queries.items()} == {
        f"{FULLNAME}-orchestrator": "SELECT media.duroxide_backlog('orchestrator', NULL)",
        f"{FULLNAME}-worker": "SELECT media.duroxide_backlog('worker', NULL)",
        f"{FULLNAME}-pool-gpu": "SELECT media.duroxide_backlog('worker', 'gpu')",
        f"{FULLNAME}-pool-io-bound": "SELECT media.duroxide_backlog('worker', 'io_bound')",
    }
    (auth,) = rendered.of_kind("TriggerAuthentication")
    assert auth["spec"] == {
        "secretTargetRef": [{"parameter": "connection", "name": "media-db-scaler", "key": "url"}]
    }
    for trigger in queries.values():
        assert trigger["type"] == "postgresql"
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert not {"password", "connection", "host"} & trigger["metadata"].keys()


def test_keda_postgresql_trigger_defaults_to_the_database_secret(
    render_file: Callable[[str], Rendered],
) -> None:
    (auth,) = render_file("hpa.yaml").of_kind("TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "duroxide-database", "key": "url"}
    ]


def test_keda_prometheus_trigger_reads_the_queue_gauges(
    render_file: Callable[[str], Rendered],
) -> None:
    rendered = render_file("keda-prometheus.yaml")
    assert not rendered.of_kind("TriggerAuthentication"), "no database access needed"
    selector = f'namespace="{NAMESPACE}",service="{FULLNAME}-metrics"'
    want = {
        f"{FULLNAME}-orchestrator": f"max(duroxide_orchestrator_queue_depth{{{selector}}})",
        f"{FULLNAME}-worker": f'max(duroxide_worker_queue_depth{{{selector},tag=""}})',
        f"{FULLNAME}-pool-gpu": f'max(duroxide_worker_queue_depth{{{selector},tag="gpu"}})',
    }
    got = {}
    for so in rendered.of_kind("ScaledObject"):
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["serverAddress"] == (
            "http://prometheus-operated.monitoring.svc:9090"
        )
        got[so["metadata"]["name"]] = trigger["metadata"]["query"]
    assert got == want
    # the metric names are the ones the cluster exports (docs/cluster.md)
    reference = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    for name in ("duroxide_orchestrator_queue_depth", "duroxide_worker_queue_depth"):
        assert f"`{name}`" in reference


def test_hpa_metrics_and_behavior(render_file: Callable[[str], Rendered]) -> None:
    rendered = render_file("hpa.yaml")
    orch = rendered.one("HorizontalPodAutoscaler", f"{FULLNAME}-orchestrator")
    assert orch["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    assert orch["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    reports = rendered.one("HorizontalPodAutoscaler", f"{FULLNAME}-pool-reports")
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in reports["spec"]["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 60},
        "memory": {"type": "Utilization", "averageUtilization": 75},
    }


def test_no_autoscaler_by_default(render_file: Callable[[str], Rendered]) -> None:
    rendered = render_file("defaults.yaml")
    assert not rendered.of_kind("ScaledObject")
    assert not rendered.of_kind("HorizontalPodAutoscaler")
    assert not rendered.of_kind("TriggerAuthentication")


# --- migration hook ------------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_migration_job_is_a_pre_install_hook(
    render_file: Callable[[str], Rendered], values_file: str
) -> None:
    rendered, expect = render_file(values_file), EXPECTED[values_file]
    (job,) = rendered.of_kind("Job")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    ctr = pod["containers"][0]
    assert [*ctr["command"], *ctr["args"]] == ["duroxide", "migrate"]
    env = env_of(ctr)
    assert secret_ref(env["DUROXIDE_DATABASE_URL"]) == expect.migration_secret
    assert env["DUROXIDE_SCHEMA"]["value"] == expect.schema
    assert "DUROXIDE_PG_MIGRATE" not in env
    # the hook runs before the chart's ServiceAccount exists: it must not depend on it
    if rendered.values["serviceAccount"]["create"]:
        assert pod.get("serviceAccountName") not in rendered.names("ServiceAccount")
    else:
        assert pod["serviceAccountName"] == rendered.values["serviceAccount"]["name"]
    # the Job's pod is not a supervisor: the metrics Service must not select it
    (service,) = rendered.of_kind("Service")
    assert not selects(service["spec"]["selector"], pod_labels(job))


def test_migration_can_be_disabled(helm: str) -> None:
    rendered = render(sets=["migration.enabled=false"])
    assert not rendered.of_kind("Job")
    for dep in rendered.of_kind("Deployment"):
        assert "DUROXIDE_PG_MIGRATE" not in env_of(container(dep))


def test_tmp_volume_without_size_limit(helm: str) -> None:
    rendered = render(sets=["tmpVolume.sizeLimit=null"])
    for workload in [*rendered.of_kind("Deployment"), *rendered.of_kind("Job")]:
        (tmp,) = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == "tmp"]
        assert tmp == {"name": "tmp", "emptyDir": {}}


# --- TLS -----------------------------------------------------------------------------------------


def test_tls_root_certificate_from_a_secret(render_file: Callable[[str], Rendered]) -> None:
    rendered = render_file("tls.yaml")
    for workload in [*rendered.of_kind("Deployment"), *rendered.of_kind("Job")]:
        pod = workload["spec"]["template"]["spec"]
        ctr = pod["containers"][0]
        env = literal_env(ctr)
        assert env["PGSSLMODE"] == "verify-full"
        assert env["PGSSLROOTCERT"] == "/etc/duroxide/tls/root.crt"
        (mount,) = [m for m in ctr["volumeMounts"] if m["mountPath"] == "/etc/duroxide/tls"]
        assert mount["readOnly"] is True
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "pg-ca"
        assert volume["secret"]["items"] == [{"key": "root.crt", "path": "root.crt"}]


def test_no_tls_settings_without_tls(render_file: Callable[[str], Rendered]) -> None:
    rendered = render_file("defaults.yaml")
    assert "PGSSLROOTCERT" not in rendered.text and "PGSSLMODE" not in rendered.text


# --- Service, ServiceMonitor, NetworkPolicy, PDB -------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_metrics_service_selects_every_supervisor(
    render_file: Callable[[str], Rendered], values_file: str
) -> None:
    rendered, expect = render_file(values_file), EXPECTED[values_file]
    service = rendered.one("Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": expect.port, "targetPort": "http", "protocol": "TCP"}
    ]
    for dep in rendered.of_kind("Deployment"):
        assert selects(service["spec"]["selector"], pod_labels(dep))


def test_service_monitor(render_file: Callable[[str], Rendered]) -> None:
    rendered = render_file("servicemonitor.yaml")
    (monitor,) = rendered.of_kind("ServiceMonitor")
    (service,) = rendered.of_kind("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    for other in VALUES_FILES:
        if other != "servicemonitor.yaml":
            assert not render_file(other).of_kind("ServiceMonitor")


def test_network_policy_admits_only_prometheus(render_file: Callable[[str], Rendered]) -> None:
    rendered = render_file("servicemonitor.yaml")
    (policy,) = rendered.of_kind("NetworkPolicy")
    spec = policy["spec"]
    for dep in rendered.of_kind("Deployment"):
        assert selects(spec["podSelector"]["matchLabels"], pod_labels(dep))
    assert "Ingress" in spec["policyTypes"]
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == rendered.values["networkPolicy"]["metricsFrom"]
    assert not render_file("defaults.yaml").of_kind("NetworkPolicy")


def test_network_policy_without_peers_denies_all(helm: str) -> None:
    rendered = render(sets=["networkPolicy.enabled=true", "networkPolicy.metricsFrom=null"])
    (policy,) = rendered.of_kind("NetworkPolicy")
    assert policy["spec"]["ingress"] == []


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_one_disruption_budget_per_deployment(
    render_file: Callable[[str], Rendered], values_file: str
) -> None:
    rendered = render_file(values_file)
    budgets = {p["metadata"]["name"]: p for p in rendered.of_kind("PodDisruptionBudget")}
    assert set(budgets) == rendered.names("Deployment")
    for dep in rendered.of_kind("Deployment"):
        budget = budgets[dep["metadata"]["name"]]
        assert budget["spec"]["selector"] == dep["spec"]["selector"]
        pdb_values = rendered.values["podDisruptionBudget"]
        if pdb_values.get("minAvailable") is not None:
            assert budget["spec"]["minAvailable"] == pdb_values["minAvailable"]
            assert "maxUnavailable" not in budget["spec"]
        else:
            assert budget["spec"]["maxUnavailable"] == 1


# --- values that must be refused -----------------------------------------------------------------

REFUSED = {
    "a password in values": (["database.password=hunter2"], "password"),
    "a URL in values": (["database.url=postgresql://app:pw@db/app"], "url"),
    "no database Secret": (["database.existingSecret="], "existingSecret"),
    "grace period not above the drain": (["terminationGracePeriodSeconds=30"], "drain timeout"),
    "a pool whose drain outlasts its grace": (
        ["pools.gpu.drainTimeout=90", "pools.gpu.terminationGracePeriodSeconds=60"],
        "drain timeout",
    ),
    "two autoscalers at once": (["autoscaling.mode=both"], "autoscaling.mode"),
    "a tag that is no name": (["pools.a/b.replicas=1"], "pools"),
    "an unknown pool key": (["pools.gpu.replica=1"], "replica"),
    "prometheus without a server": (
        ["autoscaling.mode=keda", "autoscaling.keda.trigger=prometheus"],
        "serverAddress",
    ),
    "an HPA at zero": (["autoscaling.mode=hpa", "autoscaling.minReplicas=0"], "zero"),
    "nothing to run": (["orchestrator.enabled=false", "worker.enabled=false"], "nothing"),
    "a reserved schema": (["schema=pg_catalog"], "schema"),
    "TLS without its Secret": (["database.tls.enabled=true"], "tls"),
    "overriding a selector label": (["podLabels.app\\.kubernetes\\.io/component=x"], "podLabels"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_values(helm: str, case: str) -> None:
    sets, needle = REFUSED[case]
    proc = helm_template(sets=sets, check=False)
    assert proc.returncode != 0, f"{case}: rendered anyway"
    assert needle.lower() in proc.stderr.lower(), proc.stderr


# --- NOTES.txt, schema and README coverage -------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_notes_render(helm: str, tmp_path: Path, values_file: str) -> None:
    """NOTES.txt renders (``helm template`` skips it: it is rendered here inside a ConfigMap)."""
    chart = tmp_path / "duroxide"
    shutil.copytree(CHART, chart)
    (chart / "notes-under-test.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes-under-test.txt") . | toJson }}\n'
    )
    proc = helm_template(
        [VALUES_DIR / values_file], chart=chart, extra=["--show-only", "templates/zz-notes.yaml"]
    )
    notes = yaml.safe_load(proc.stdout)["data"]["notes"]
    for component in EXPECTED[values_file].roles:
        assert f"{FULLNAME}-{component}:" in notes
    assert f"-n {NAMESPACE}" in notes


def _leaves(values: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every value; empty maps, lists and the pools map are leaves."""
    if isinstance(values, dict) and values and prefix != "pools":
        out: list[str] = []
        for key, value in values.items():
            out += _leaves(value, f"{prefix}.{key}" if prefix else key)
        return out
    return [prefix]


def test_schema_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: schema allows any key"
            assert set(value) <= set(node["properties"]), (
                f"{path}: {set(value) - set(node['properties'])}"
            )
            for key, sub in value.items():
                walk(node["properties"][key], sub, f"{path}.{key}")

    walk(schema, values, "")
    assert set(schema["properties"]) - {"global"} == set(values)


def test_chart_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    roles = ("orchestrator.", "worker.", "poolDefaults.")
    missing = []
    for leaf in _leaves(values):
        # the per-Deployment table lists orchestrator.x, worker.x and poolDefaults.x as <D>.x
        path = "<D>." + leaf.split(".", 1)[1] if leaf.startswith(roles) else leaf
        if f"`{path}`" not in readme:
            missing.append(path)
    assert not missing, f"chart README does not list: {missing}"
    assert "`pools.<tag>.name`" in readme
