"""``[serve] workers``: several service processes share the port (SO_REUSEPORT) and end
together, a worker killed included."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.fleet_cli import how_it_ended
from tests.fleet.fleetkit import Fleet, make_fleet, observation, report


@pytest.mark.slow
def test_several_worker_processes_share_the_port(tmp_path: Path) -> None:
    """Started from a directory others can write to, holding a ``policy`` package: the
    workers ran ``python -m``, which put that directory first on ``sys.path`` and imported it
    (the re-review of session 14)."""
    hostile = tmp_path / "cwd"
    marker = tmp_path / "imported"
    (hostile / "policy").mkdir(parents=True)
    (hostile / "policy" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nraise SystemExit(99)\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fleet = make_fleet(tmp_path / "desk")
    fleet.start(port=port, extra="workers = 2", cwd=hostile)
    try:
        client = fleet.client("worker-host")
        for sequence in range(1, 9):  # a new connection each time: both workers serve
            conn = fleet.connect(client)
            assert conn.request("POST", "/v1/report", report(
                "worker-host", sequence, [observation(f"/w{sequence}", "f" * 64)])).status == 200
            conn.close()
        assert fleet.journal_count() == 8
        assert not marker.exists()
    finally:
        fleet.stop()
        fleet.close_clients()
    with socket.socket() as after:  # every worker ended with the first
        assert after.connect_ex(("127.0.0.1", port)) != 0


def _workers_of(pid: int) -> list[int]:
    """The ``--worker`` processes ``pid`` started (its children, from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"--worker" in argv:
            found.append(int(entry.name))
    return found


def _three_workers(tmp_path: Path) -> tuple[Fleet, subprocess.Popen[bytes], int, list[int]]:
    """A service of ``workers = 3`` on a free port: the fleet, its first process, the port and
    the two worker processes, once both are running."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fleet = make_fleet(tmp_path / "desk")
    fleet.start(port=port, extra="workers = 3")
    process = fleet.process
    assert process is not None
    deadline = time.monotonic() + 30
    while len(workers := _workers_of(process.pid)) < 2:
        if time.monotonic() > deadline:
            fleet.stop(signal.SIGKILL)
            raise AssertionError(f"two workers never started: {workers}")
        time.sleep(0.1)
    return fleet, process, port, workers


def _read_until(process: subprocess.Popen[bytes], needle: str, timeout_s: float) -> str:
    """What ``process`` writes on stderr until a line holding ``needle`` (or the timeout, or
    its end)."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    text = ""
    deadline = time.monotonic() + timeout_s
    while needle not in text and (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        text += chunk.decode(errors="replace")
    return text


@pytest.mark.slow
def test_a_worker_killed_is_reaped_logged_and_the_service_exits_44(tmp_path: Path) -> None:
    """A worker killed (SIGKILL: the OOM killer's) went unnoticed: no line, a zombie, a
    service serving with fewer processes than configured. The first process reaps it at once,
    says which and how in one line, and stops with exit 44 for systemd to start it again
    whole (``Restart=on-failure``); its other workers end with it."""
    fleet, process, port, workers = _three_workers(tmp_path)
    try:
        victim, other = workers
        os.kill(victim, signal.SIGKILL)
        log = _read_until(process, f"worker process {victim} ", timeout_s=5)
        lines = [line for line in log.splitlines() if f"worker process {victim} " in line]
        assert lines == [f"error   worker-ended: worker process {victim} was killed by SIGKILL; "
                         f"policy serve stops (exit 44) to be started again whole "
                         f"pid={victim} returncode=-9"], log
        # Reaped: the returncode logged is waitpid's, and the pid is gone (not a zombie).
        assert _state(victim) == ""
        assert process.wait(timeout=30) == 44
        assert process.stderr is not None
        log += process.stderr.read().decode(errors="replace")
    finally:
        fleet.stop(signal.SIGKILL)
    assert log.count(f"worker process {victim} ") == 1, log
    assert log.rstrip().endswith("Error: policy serve stopped because a worker process ended "
                                 "(the worker-ended line)"), log
    assert "Traceback" not in log
    assert _state(other) == ""  # it ended with the service, reaped too
    with socket.socket() as after:
        assert after.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_stopped_as_systemd_stops_it_the_workers_ending_is_no_failure(tmp_path: Path) -> None:
    """``systemctl stop`` sends SIGTERM to the main process and then to every other process of
    the unit: the workers ending then is the stop asked for, exit 0, no ``worker-ended``."""
    fleet, process, _port, workers = _three_workers(tmp_path)
    try:
        process.send_signal(signal.SIGTERM)
        for worker in workers:
            os.kill(worker, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        log = process.stderr.read().decode(errors="replace")
    finally:
        fleet.stop(signal.SIGKILL)
    assert "worker-ended" not in log, log
    assert "Error:" not in log, log
    assert all(_state(worker) == "" for worker in workers)


@pytest.mark.slow
def test_workers_stopped_before_the_first_process_is_a_stop_not_a_failure(
        tmp_path: Path) -> None:
    """The workers got SIGTERM a moment before the first process (a stop that reached the
    processes in another order than systemd's): that turned the stop into exit 44 with
    ``worker-ended … killed by SIGTERM`` (or ``exited with status 0``). It is the stop asked
    for: one ``worker-stopped`` info line, and the first process stops, exit 0, whether its
    own SIGTERM comes (a moment later) or not (here: not, so that its exit status is the
    workers' doing; one arriving while it closes the ledger ends it by that signal, which
    systemd counts as clean)."""
    fleet, process, port, workers = _three_workers(tmp_path)
    try:
        for worker in workers:
            os.kill(worker, signal.SIGTERM)
        log = _read_until(process, "worker-stopped", timeout_s=10)
        assert process.wait(timeout=30) == 0, log
        assert process.stderr is not None
        log += process.stderr.read().decode(errors="replace")
    finally:
        fleet.stop(signal.SIGKILL)
    (line,) = [line for line in log.splitlines() if "worker-stopped" in line]
    assert line.startswith("info    worker-stopped: worker process "), line
    assert "a stop asked for; policy serve stops" in line
    assert "worker-ended" not in log, log
    assert "Error:" not in log, log
    assert all(_state(worker) == "" for worker in workers)
    with socket.socket() as after:
        assert after.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_workers_end_when_the_first_process_is_killed_while_they_start(tmp_path: Path) -> None:
    """The first process killed (SIGKILL) as its workers appeared: each worker, still loading
    the vault and the ledger, recorded its parent only then (init by that time), so nothing
    ever stopped it: both served the port, parent 1, minutes later. Each now ends at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fleet = make_fleet(tmp_path / "desk")
    config = fleet.config(port=port, extra="workers = 3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    process = subprocess.Popen(  # not fleet.start: that waits for it to listen
        [sys.executable, "-m", "agent.main", "policy", "serve", "--config", str(config)],
        stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
        cwd=Path(__file__).resolve().parents[2])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers := _workers_of(process.pid)) < 2:
            assert time.monotonic() < deadline, f"two workers never started: {workers}"
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 5
    while any(_state(worker) not in ("", "Z") for worker in workers):
        if time.monotonic() > deadline:
            for worker in workers:  # (not left serving after a failure)
                if _state(worker) not in ("", "Z"):
                    os.kill(worker, signal.SIGKILL)
            raise AssertionError("a worker outlived the first process killed")
        time.sleep(0.1)
    with socket.socket() as after:
        assert after.connect_ex(("127.0.0.1", port)) != 0


def test_a_worker_whose_first_process_is_already_gone_exits_at_once(tmp_path: Path) -> None:
    """The same race made certain: the pid it is told is no longer its parent's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fleet = make_fleet(tmp_path / "desk")
    config = fleet.config(port=port, extra="workers = 3")
    gone = subprocess.Popen([sys.executable, "-c", ""])  # a pid that ended
    gone.wait()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    worker = subprocess.Popen(
        [sys.executable, "-P", "-m", "agent.main", "policy", "serve", "--config", str(config),
         "--worker", str(gone.pid)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
        cwd=Path(__file__).resolve().parents[2])
    try:
        _out, err = worker.communicate(timeout=10)
    finally:
        worker.kill()
    assert worker.returncode == 1, err
    assert b"listening" not in err
    assert f"its first process ({gone.pid}) is not its parent".encode() in err
    with socket.socket() as after:
        assert after.connect_ex(("127.0.0.1", port)) != 0


def _state(pid: int) -> str:
    """The process's state letter (``Z``: a zombie, ended and not reaped); ``""`` once gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


@pytest.mark.parametrize(("returncode", "words"), [
    (-9, "was killed by SIGKILL"), (-15, "was killed by SIGTERM"),
    (0, "exited with status 0"), (22, "exited with status 22")])
def test_how_a_worker_ended_in_words(returncode: int, words: str) -> None:
    assert how_it_ended(returncode) == words
