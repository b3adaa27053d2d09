"""A real ``certescrow agent run`` in the background, for the tests that reload it with SIGHUP
and read its log lines (tests/agent/test_reload_added_store.py, test_host_change.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.agent.test_daemon_process import CERTESCROW, REPO, Manager, eventually

NOW = "2026-02-01T12:00:00+09:00"
"""The daemon's clock (``CERTESCROW_TESTONLY_NOW``): every test here runs as of this instant."""


def agent_env(manager: Manager | None = None) -> dict[str, str]:
    """The test's environment without a systemd of its own, the daemon's clock at :data:`NOW`;
    with ``manager``, its notification socket."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(PYTHONPATH=str(REPO), CERTESCROW_TESTONLY_NOW=NOW)
    if manager is not None:
        env["NOTIFY_SOCKET"] = str(manager.path)
    return env


@dataclass(frozen=True, slots=True)
class RunningAgent:
    proc: subprocess.Popen[bytes]
    config: Path
    log: Path
    manager: Manager

    def text(self) -> str:
        return self.log.read_text()

    def reload(self, config_text: str, *, until: str = "configuration reloaded",
               reported: bool = False) -> list[str]:
        """Write ``config_text``, send SIGHUP, wait for RELOADING=1 then READY=1 and for a line
        holding ``until``; the lines logged since (with ``reported``, also the ledger writer's
        `reported:` line, when it comes within 5 s)."""
        start = len(self.text())
        self.config.write_text(config_text)
        count = len(self.manager.messages)
        self.proc.send_signal(signal.SIGHUP)
        self.manager.wait_for("RELOADING=1", after=count)
        self.manager.wait_for("READY=1", after=count)
        eventually(lambda: until in self.text()[start:])
        if reported:
            with contextlib.suppress(AssertionError):  # the assertions after it say what is not
                eventually(lambda: " reported: " in self.text()[start:], timeout=5)
        return self.text()[start:].splitlines()


@contextlib.contextmanager
def running_agent(config: Path, manager: Manager) -> Iterator[RunningAgent]:
    """``agent run --config CONFIG`` until the block ends (SIGTERM; killed after 15 s), its
    stderr in ``daemon.log`` beside ``config``, READY=1 before the block starts."""
    log = config.with_name("daemon.log")
    with log.open("w") as stderr:
        proc = subprocess.Popen([str(CERTESCROW), "agent", "run", "--config", str(config)],
                                env=agent_env(manager), stdout=subprocess.DEVNULL,
                                stderr=stderr)
    try:
        manager.wait_for("READY=1")
        yield RunningAgent(proc=proc, config=config, log=log, manager=manager)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
