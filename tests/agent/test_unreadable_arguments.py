"""An unreadable path given on the command line is that path's ``permission-denied``, and the
other arguments are still scanned (it used to be a usage error that scanned nothing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certfactory import make_cert

CERTESCROW = Path(sys.executable).with_name("certescrow")

pytestmark = pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="running as root (reads everything) and setpriv is missing to drop privileges")


@pytest.fixture
def world_traversable_dir() -> Iterator[Path]:
    """pytest's tmp dirs are 0700 root; the unprivileged scan needs to reach the files."""
    directory = Path(tempfile.mkdtemp(prefix="certescrow-args-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def _scan_as_unprivileged(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env.update(HOME=str(home), CERTESCROW_TESTONLY_NOW="2026-03-01T00:00:00Z")
    argv = [str(CERTESCROW), "scan", *args]
    if os.geteuid() == 0:  # root reads a 0000 file anyway: drop to nobody
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                          check=False, cwd=home)


def test_unreadable_file_and_directory_arguments_are_per_file_errors(
    world_traversable_dir: Path,
) -> None:
    base = world_traversable_dir
    readable = base / "ok.pem"
    readable.write_bytes(make_cert(sans=("ok.example",)).pem)
    readable.chmod(0o644)
    locked_file = base / "locked.pem"
    locked_file.write_bytes(make_cert(sans=("locked.example",)).pem)
    locked_file.chmod(0o000)
    locked_dir = base / "locked-dir"
    locked_dir.mkdir(mode=0o700)
    (locked_dir / "inside.pem").write_bytes(make_cert(sans=("inside.example",)).pem)
    locked_dir.chmod(0o000)
    try:
        done = _scan_as_unprivileged("--json", str(locked_file), str(locked_dir),
                                     str(readable), home=base)
    finally:
        locked_dir.chmod(0o700)
    assert done.returncode != 2 or "Usage" not in done.stderr, done.stderr
    objects = json.loads(done.stdout)
    errors = {o["path"]: o["error"]["code"] for o in objects if o["kind"] == "error"}
    assert errors == {str(locked_file): "permission-denied", str(locked_dir): "permission-denied"}
    certificates = [o for o in objects if o["kind"] == "certificate"]
    assert [o["sans"] for o in certificates] == [["ok.example"]]
