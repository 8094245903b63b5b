"""The container image: the Dockerfile's structure, its build context, and an install like it.

There is no Docker engine here, so the image is not built. Instead the Dockerfile is parsed and
checked, the build context is assembled by the rules of ``.dockerignore``, and the build stage's
steps are replayed: the ``COPY`` sources are copied, a wheel is built from them and installed with
the Dockerfile's extras into a fresh virtual environment, whose entry points must work — including
the supervisor running an application mounted in its working directory, probed by the image's own
``HEALTHCHECK`` command, and an application installed on top of the image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


# --- a small Dockerfile reader -------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def one(self, keyword: str) -> str:
        (args,) = self.all(keyword)
        return args


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        (stage,) = [s for s in self.stages if s.name == name]
        return stage

    def args_of(self, stage: Stage) -> dict[str, str]:
        """The ARG defaults visible in a stage."""
        out = dict(self.global_args)
        for arg in stage.all("ARG"):
            key, _, default = arg.partition("=")
            out[key] = default
        return out


def parse_dockerfile(text: str) -> Dockerfile:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append((keyword, args))
    return Dockerfile(global_args, stages)


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], value)


def copy_args(args: str) -> tuple[list[str], list[str]]:
    """``(flags, paths)`` of a COPY; exec (JSON) form or shell form."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    return flags, [w for w in words if not w.startswith("--")]


def env_pairs(args: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(args))


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


# --- .dockerignore -------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str], str]]:
    """``(negated, regex, pattern)`` in file order, as the Docker CLI reads them."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = os.path.normpath(pattern.strip("/")).replace(os.sep, "/")
        rules.append((negated, _pattern_regex(pattern), pattern))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Whether the build context leaves ``path`` (relative, '/'-separated) out: the last rule
    matching the path or one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, regex, _ in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            result = not negated
    return result


def build_context(rules: list[tuple[bool, re.Pattern[str], str]]) -> list[str]:
    """Every file of the work tree the build context would contain."""
    negations = [pattern for negated, _, pattern in rules if negated]
    files: list[str] = []
    for root, dirs, names in os.walk(REPO):
        rel_root = os.path.relpath(root, REPO).replace(os.sep, "/")
        rel_root = "" if rel_root == "." else rel_root + "/"
        # prune directories that are excluded and that no '!' rule reaches into
        dirs[:] = [
            d
            for d in dirs
            if not (
                excluded(rel_root + d, rules)
                and not any(n.startswith(rel_root + d + "/") for n in negations)
            )
        ]
        files += [rel_root + n for n in names if not excluded(rel_root + n, rules)]
    return sorted(files)


@pytest.fixture(scope="module")
def context_files() -> list[str]:
    return build_context(dockerignore_rules())


# --- static checks -------------------------------------------------------------------------------


def test_multi_stage_on_a_slim_python_311(dockerfile: Dockerfile) -> None:
    assert len(dockerfile.stages) >= 2
    for stage in dockerfile.stages:
        base = expand(stage.base, dockerfile.global_args)
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*", base), base
    assert dockerfile.stages[0].name == "build"


def test_build_stage_installs_a_wheel_not_the_tree(dockerfile: Dockerfile) -> None:
    build = dockerfile.stage("build")
    run = " ".join(build.all("RUN"))
    assert "pip wheel" in run
    installs = [part for part in run.split("&&") if "pip install" in part]
    assert len(installs) == 1, installs
    assert "/wheels/duroxide_py-" in installs[0] and "[${DUROXIDE_EXTRAS}]" in installs[0]
    assert "pip install -e" not in run and "pip install ." not in run
    assert "cluster" in dockerfile.args_of(build)["DUROXIDE_EXTRAS"].split(",")
    for args in build.all("COPY"):
        _, paths = copy_args(args)
        assert "." not in paths[:-1], "the build copies the package sources, not the whole tree"


def test_runtime_stage(dockerfile: Dockerfile) -> None:
    final = dockerfile.stages[-1]
    variables = dockerfile.args_of(final)
    # only the built virtual environment comes in: no sources
    for args in final.all("COPY"):
        flags, paths = copy_args(args)
        assert "--from=build" in flags, f"the runtime stage copies from the context: {args}"
        assert paths == ["/opt/duroxide", "/opt/duroxide"]
    # a non-root numeric user (so Kubernetes' runAsNonRoot can verify it)
    user = expand(final.one("USER"), variables)
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert final.one("WORKDIR") == "/app"
    # the entry point is the supervisor, in exec form
    assert json.loads(final.one("ENTRYPOINT")) == ["duroxide-cluster"]
    # the HTTP port: exposed, in the environment, and the chart's default
    env: dict[str, str] = {}
    for args in final.all("ENV"):
        env.update(env_pairs(args))
    chart_values = yaml.safe_load((REPO / "charts" / "duroxide" / "values.yaml").read_text())
    port = str(chart_values["cluster"]["httpPort"])
    assert final.one("EXPOSE") == port
    assert env["DUROXIDE_HTTP_PORT"] == port
    assert env["PATH"].startswith("/opt/duroxide/bin:")
    assert str(chart_values["podSecurityContext"]["runAsUser"]) == uid
    # the health check asks /livez
    healthcheck = final.one("HEALTHCHECK")
    assert "/livez" in healthcheck
    assert healthcheck_command(dockerfile)[0] == "python"


def healthcheck_command(dockerfile: Dockerfile) -> list[str]:
    healthcheck = dockerfile.stages[-1].one("HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    argv = json.loads(command.strip())
    assert isinstance(argv, list), "HEALTHCHECK CMD in exec form"
    return argv


def test_dockerignore_keeps_the_context_to_the_package(context_files: list[str]) -> None:
    tops = {path.split("/")[0] for path in context_files}
    assert tops == {"pyproject.toml", "README.md", "duroxide", "cluster"}, tops
    assert not [p for p in context_files if "__pycache__" in p or p.endswith((".pyc", ".db"))]
    tracked = subprocess.run(
        ["git", "ls-files", "duroxide", "cluster"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked and set(tracked) <= set(context_files), "a package file is left out"


def test_dockerignore_matcher() -> None:
    """The reader of .dockerignore itself, on rules like the real ones."""
    rules = [(n, _pattern_regex(p), p) for n, p in [
        (False, "*"), (True, "duroxide"), (False, "**/__pycache__"), (False, "**/*.db"),
    ]]  # fmt: skip
    assert excluded(".git/config", rules)
    assert excluded("tests/test_x.py", rules)
    assert not excluded("duroxide/client.py", rules)
    assert excluded("duroxide/providers/__pycache__/x.pyc", rules)
    assert excluded("duroxide/app.db", rules)


# --- the build, replayed -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(
    cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, check=False, env=env, cwd=cwd
    )
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


APP_PACKAGE = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "installedapp"
version = "1.0"

[tool.setuptools]
packages = ["installedapp"]
"""

APP_MODULE = """
def setup(runtime):
    @runtime.register_activity("Hello")
    def hello(ctx, name):
        return "hello " + name
"""


@pytest.mark.slow
def test_install_like_the_dockerfile(
    dockerfile: Dockerfile, context_files: list[str], tmp_path: Path
) -> None:
    build = dockerfile.stage("build")
    variables = dockerfile.args_of(build)

    # 1. the build context, then the build stage's COPY instructions into its WORKDIR
    context = tmp_path / "context"
    for rel in context_files:
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, context / rel)
    workdir = tmp_path / "src"
    workdir.mkdir()
    for args in build.all("COPY"):
        flags, paths = copy_args(args)
        assert not flags
        *sources, dest = paths
        for source in sources:  # Docker's rules: a directory's contents go into dest
            src = context / source.rstrip("/")
            assert src.exists(), f"COPY {source}: not in the build context"
            target = workdir / dest
            if src.is_dir():
                shutil.copytree(src, target, dirs_exist_ok=True)
            elif dest.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)

    # 2. RUN: a wheel, installed with the Dockerfile's extras into a fresh virtual environment
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(wheels),
          str(workdir)], env=pip_env)  # fmt: skip
    (wheel,) = wheels.glob("duroxide_py-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for sql in ("duroxide/providers/postgres/migrations/0001_initial.sql",
                "duroxide/providers/sqlite/schema.sql"):  # fmt: skip
        assert sql in names, f"{sql} missing from the wheel"
    assert not [n for n in names if n.startswith(("tests/", "examples/", "bench/"))]
    venv = tmp_path / "opt-duroxide"
    _run([sys.executable, "-m", "venv", str(venv)])
    extras = variables["DUROXIDE_EXTRAS"]
    _run([str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}[{extras}]"], env=pip_env)

    # the runtime stage's environment, PATH pointing at this virtual environment
    image_env: dict[str, str] = {}
    for args in dockerfile.stages[-1].all("ENV"):
        image_env.update(env_pairs(args))
    port = _free_port()
    image_env.update(
        PATH=f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        HOME=str(tmp_path),
        DUROXIDE_HTTP_PORT=str(port),
    )

    # 3. the entry points; the packages come from the environment, not the work tree
    app_dir = tmp_path / "app"  # the image's WORKDIR /app
    app_dir.mkdir()
    for command in (["duroxide-cluster", "--help"], ["duroxide", "--help"]):
        out = _run(command, env=image_env, cwd=app_dir).stdout
        assert out.startswith(f"usage: {command[0]}"), out
    where = _run(
        ["python", "-c", "import duroxide, cluster; print(duroxide.__file__, cluster.__file__)"],
        env=image_env,
        cwd=app_dir,
    ).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(venv), f"imported from {path}, not the install"

    # 4. the migration Job's command, then the supervisor with a mounted application
    database = f"sqlite:{tmp_path / 'app.db'}"
    _run(["duroxide", "--database-url", database, "migrate"], env=image_env, cwd=app_dir)
    shutil.copy2(REPO / "examples" / "cluster_app.py", app_dir / "mediaapp.py")
    cluster_env = {
        **image_env,
        "DUROXIDE_APP": "mediaapp:setup",
        "DUROXIDE_DATABASE_URL": database,
        "DUROXIDE_ORCHESTRATORS": "1",
        "DUROXIDE_WORKERS": "1",
        "DUROXIDE_DRAIN_TIMEOUT": "5",
    }
    probe = healthcheck_command(dockerfile)
    assert subprocess.run(probe, env=image_env, capture_output=True, check=False).returncode != 0
    log_path = tmp_path / "supervisor.log"
    with log_path.open("w") as log:
        supervisor = subprocess.Popen(
            ["duroxide-cluster"],
            env=cluster_env,
            cwd=app_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(probe, env=image_env, capture_output=True, check=False).returncode:
            assert supervisor.poll() is None, f"the supervisor exited:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"HEALTHCHECK never passed:\n{log_path.read_text()}"
            time.sleep(0.2)
        while _get(f"http://127.0.0.1:{port}/readyz") != 200:
            assert time.monotonic() < deadline, f"never ready:\n{log_path.read_text()}"
            time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert "duroxide_build_info" in response.read().decode()
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=15) == 0, log_path.read_text()
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
    assert subprocess.run(probe, env=image_env, capture_output=True, check=False).returncode != 0

    # 5. an application installed on top of the image, found from any working directory
    package = tmp_path / "installedapp-src"
    (package / "installedapp").mkdir(parents=True)
    (package / "pyproject.toml").write_text(APP_PACKAGE)
    (package / "installedapp" / "__init__.py").write_text("")
    (package / "installedapp" / "flows.py").write_text(APP_MODULE)
    _run(["pip", "install", "--quiet", str(package)], env={**pip_env, **image_env})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _run(["python", "-c", "from cluster.app import load_setup; "
          "assert callable(load_setup('installedapp.flows:setup'))"],
         env=image_env, cwd=elsewhere)  # fmt: skip
