"""A private PostgreSQL cluster for fault tests that stop and crash the database.

tests/pgdb.py gives each test a schema on the machine's shared server; a test that restarts
PostgreSQL cannot use that one (other test runs are connected to it). This makes a cluster of
its own: ``initdb`` into a temporary directory, a free port on 127.0.0.1 and a socket directory
inside the temporary directory, trust authentication, started and stopped with ``pg_ctl``.
PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user and
every command runs through ``runuser -u postgres --``.

Without the server binaries the test skips with the reason, except under
``CERTESCROW_REQUIRE_POSTGRES=1`` (``.ci/run``), where it fails.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pgdb import REQUIRE_ENV

__all__ = ["PgCluster", "private_cluster"]


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    bindir: Path
    root: Path
    port: int
    user: str | None
    """The OS user the server runs as (``postgres`` when we are root), else ourselves."""

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.root)
        if done.returncode != 0:
            raise AssertionError(f"{argv[0]} failed ({done.returncode}): "
                                 f"{done.stdout}{done.stderr}")

    def initdb(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        # fsync off: the faults here kill the server's processes, not the machine, and the
        # operating system keeps what was written; it spares the shared machine's disk.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=50")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean) or ``immediate`` (a crash: recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"a private PostgreSQL cluster is required ({REQUIRE_ENV}=1) but {reason}")
    pytest.skip(f"no private PostgreSQL cluster: {reason}")


@contextmanager
def private_cluster() -> Iterator[PgCluster]:
    """A started cluster of our own; stopped and removed afterwards."""
    bindir = _bindir()
    if bindir is None:
        _unavailable("initdb is not installed (/usr/lib/postgresql/*/bin)")
        raise AssertionError("unreachable")
    user: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no postgres user to run the server")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="certescrow-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        cluster = PgCluster(bindir=bindir, root=root, port=_free_port(), user=user)
        cluster.initdb()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
