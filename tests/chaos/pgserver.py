"""A private, throwaway PostgreSQL server (``initdb`` + ``pg_ctl`` in a temporary directory, on a
free port), so a scenario can restart its database without touching anyone else's.

PostgreSQL refuses to run as root: as root, its commands run as the ``postgres`` OS user
(``runuser -u postgres --``), which owns the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

OS_USER = "postgres"


class Unavailable(RuntimeError):
    """No private server can be run here (no binaries, or no user to run them as)."""


def bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``."""
    candidates = []
    with suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=True, timeout=10)  # fmt: skip
        candidates.append(Path(out.stdout.strip()))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: int(p.parent.name),
                         reverse=True)  # fmt: skip
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise Unavailable("no initdb/pg_ctl (pg_config --bindir, /usr/lib/postgresql/*/bin)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrivateServer:
    bin: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout_s: float = 60.0) -> None:
        prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
        # output to a file, never a pipe: a postmaster started by pg_ctl inherits it
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(
                [*prefix, *args], check=False, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, timeout=timeout_s, cwd=self.root,
            )  # fmt: skip
            out.seek(0)
            output = out.read().decode(errors="replace")
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): "
                               f"{output[-500:]}")  # fmt: skip

    def pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200 -c fsync=off -c full_page_writes=off")  # fmt: skip
        self.pg_ctl("-l", str(self.root / "server.log"), "-o", options, "start")

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m fast|immediate`` (immediate: crash recovery at start)."""
        self.pg_ctl("-l", str(self.root / "server.log"), "-m", mode, "restart")


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    """Initialise and start a server; stop it and delete everything at the end."""
    binaries = bindir()
    root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam(OS_USER)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise Unavailable(f"running as root and there is no {OS_USER!r} user") from None
        os.chown(root, user.pw_uid, user.pw_gid)
    server = PrivateServer(binaries, root, free_port())
    try:
        server._run(str(binaries / "initdb"), "-D", str(server.data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        server.start()
        yield server
    finally:
        with suppress(Exception):
            server.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
