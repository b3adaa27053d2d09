"""No ``certescrow`` process can be dumped: a core holds the master key and plaintext keys.

The reviewer's reproduction: ``vault export --format p12`` waiting at its password prompt, sent
``SIGSEGV``, left a core holding the master key, the EC scalar and the PEM. ``main()`` now sets
``RLIMIT_CORE`` to 0 (soft and hard) and ``PR_SET_DUMPABLE`` to 0 before anything is read, for
every command. These tests start real processes from a parent whose core limit is raised as
``ulimit -c unlimited`` would, and look at them from outside.
"""

from __future__ import annotations

import ctypes
import os
import pty
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.test_daemon_process import Manager, config_text, observations
from tests.certfactory import make_cert
from tests.clirun import CERTESCROW, clean_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="/proc, prctl and core dumps as Linux has them")

_READER = """
import os, sys
try:
    os.close(os.open(f"/proc/{sys.argv[1]}/mem", os.O_RDONLY))
except PermissionError:
    sys.exit(3)
"""


def _drop_ptrace() -> None:
    """Run as a process without CAP_SYS_PTRACE (root's is dropped from the bounding set, so the
    exec'd program does not have it). Both the process looked at and the one looking drop it:
    the kernel then lets the looker open the other's /proc/PID/mem exactly when that process
    is dumpable, as for two processes of an ordinary user."""
    if os.geteuid() == 0:
        ctypes.CDLL(None).prctl(24, 19, 0, 0, 0)  # PR_CAPBSET_DROP, CAP_SYS_PTRACE


def _like_a_shell() -> None:
    """``ulimit -c unlimited`` (as far as the hard limit goes), without CAP_SYS_PTRACE."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    _drop_ptrace()


def _dumpable(pid: int, scratch: Path) -> bool:
    """Whether another process of the same user may open ``pid``'s memory, which
    ``PR_SET_DUMPABLE`` governs (with ptrace and a core dump)."""
    reader = scratch / "reader.py"
    reader.write_text(_READER)
    done = subprocess.run([sys.executable, str(reader), str(pid)], capture_output=True,
                          timeout=60, check=False, preexec_fn=_drop_ptrace)
    assert done.returncode in (0, 3), done.stderr
    return done.returncode == 0


def _sleeper(cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A process that forbids nothing, started as the command under test is."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=cwd,
                            preexec_fn=_like_a_shell)


def _core_limit(pid: int) -> tuple[str, str]:
    """Soft and hard ``Max core file size`` of ``pid``, as /proc/PID/limits shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line[len("Max core file size"):].split()[:2]
            return soft, hard
    raise AssertionError("no core limit in /proc/PID/limits")


def _read_until(fd: int, text: bytes, timeout: float = 60.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {text!r} on the terminal; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                raise AssertionError(f"the terminal closed; got {seen!r}") from None
            if not chunk:
                raise AssertionError(f"the terminal closed; got {seen!r}")
            seen += chunk
    return seen


class _Prompting:
    """``certescrow vault init`` with a passphrase source, waiting at its prompt on a pty."""

    def __init__(self, tmp_path: Path) -> None:
        self.cwd = tmp_path / "cwd"
        self.cwd.mkdir()
        config = tmp_path / "pp.toml"
        config.write_text('[vault]\nkey_source = "passphrase"\n')
        argv = [str(CERTESCROW), "--config", str(config), "vault", "init",
                "--vault", str(tmp_path / "v" / "vault.sqlite3")]
        env = clean_env(tmp_path)
        pid, self.master = pty.fork()
        if pid == 0:  # the child: a shell with `ulimit -c unlimited`, on a terminal
            try:
                os.chdir(self.cwd)
                _like_a_shell()
                os.execve(argv[0], argv, env)  # noqa: S606 - our own command, no shell
            finally:
                os._exit(127)
        self.pid = pid
        _read_until(self.master, b"Vault passphrase")

    def segfault(self) -> int:
        os.kill(self.pid, signal.SIGSEGV)
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        return status

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.master)


@pytest.fixture
def prompting(tmp_path: Path) -> Iterator[_Prompting]:
    process = _Prompting(tmp_path)
    try:
        yield process
    finally:
        process.close()


def test_a_command_at_its_password_prompt_has_no_core_limit_and_is_not_dumpable(
        prompting: _Prompting, tmp_path: Path) -> None:
    assert _core_limit(prompting.pid) == ("0", "0")
    assert not _dumpable(prompting.pid, tmp_path)
    # The same reader may look at a process that did not forbid it: it tells the two apart.
    control = _sleeper()
    try:
        time.sleep(0.5)  # exec'd
        assert _dumpable(control.pid, tmp_path)
    finally:
        control.kill()
        control.wait()


def test_a_command_killed_by_sigsegv_leaves_no_core(prompting: _Prompting,
                                                    tmp_path: Path) -> None:
    # A control in the same conditions proves this machine writes cores at all; where it does
    # not (core_pattern empty, a hard limit of 0), the limits and dumpable test above stands.
    control_cwd = tmp_path / "control"
    control_cwd.mkdir()
    control = _sleeper(control_cwd)
    time.sleep(0.5)
    control.send_signal(signal.SIGSEGV)
    control.wait()
    control_dumped = bool(list(control_cwd.iterdir()))
    for leftover in control_cwd.iterdir():
        leftover.unlink()

    status = prompting.segfault()
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGSEGV
    assert not os.WCOREDUMP(status)  # the kernel's own word: no core, piped or written
    assert list(prompting.cwd.iterdir()) == []
    if not control_dumped:
        pytest.skip("this machine writes no core files (core_pattern is a pipe or empty): "
                    "the kernel's WCOREDUMP above is the evidence")


def test_the_daemon_is_not_dumpable_and_still_runs_and_stops(tmp_path: Path) -> None:
    """The daemon holds the vault key for its whole life; its fork server and readers still
    work when it cannot be dumped."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "a.pem").write_bytes(make_cert(sans=("a.example.jp",)).pem)
    config = tmp_path / "config.toml"
    ledger = tmp_path / "state" / "ledger.sqlite3"
    config.write_text(config_text(ledger, store))
    manager = Manager(tmp_path / "notify.sock")
    env = clean_env(tmp_path, at="2026-02-01T12:00:00+09:00",
                    NOTIFY_SOCKET=str(manager.path))
    log = tmp_path / "daemon.log"
    with log.open("wb") as stderr:
        daemon = subprocess.Popen([str(CERTESCROW), "agent", "run", "--config", str(config)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=stderr,
                                  preexec_fn=_like_a_shell)
    try:
        manager.wait_for("READY=1", timeout=60)
        assert _core_limit(daemon.pid) == ("0", "0")
        assert not _dumpable(daemon.pid, tmp_path)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, log.read_text()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        manager.close()
    assert "Traceback" not in log.read_text()
    assert "observers stopped; ledger and vault closed" in log.read_text()
    assert [loc for loc, _, _ in observations(ledger)] == [str(store / "a.pem")]  # it read


def test_forbid_core_dumps_in_this_process_is_what_the_child_inherits() -> None:
    """The library call itself (``vault.bounded``'s child uses it too), in a throwaway child."""
    code = ("import ctypes, resource; from vault.nocore import forbid_core_dumps; "
            "forbid_core_dumps(); "
            "assert resource.getrlimit(resource.RLIMIT_CORE) == (0, 0); "
            "assert ctypes.CDLL(None).prctl(3, 0, 0, 0, 0) == 0")  # PR_GET_DUMPABLE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False, preexec_fn=_like_a_shell)
    assert done.returncode == 0, done.stderr
