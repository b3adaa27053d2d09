"""The systemd unit: rated SAFE by ``systemd-analyze security`` (checked with --threshold, as CI
does), verifiable, and its hardening does not break the agent it confines."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.certfactory import make_cert

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "certescrow-agent.service"
SYSUSERS = REPO / "systemd" / "certescrow.sysusers.conf"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")


def directives(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@needs_analyze
def test_security_exposure_is_safe_at_or_below_1_0() -> None:
    assert ANALYZE is not None
    # --threshold counts tenths: 10 means an overall exposure of 1.0 ("SAFE").
    done = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=10", str(UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    level = re.search(r"Overall exposure level for .*: (\d+\.\d+) (\w+)", done.stdout)
    assert level is not None
    assert float(level.group(1)) <= 1.0
    assert level.group(2) == "SAFE"


@needs_analyze
def test_security_threshold_really_gates() -> None:
    """The check above can fail: a stricter threshold than the unit meets is refused."""
    assert ANALYZE is not None
    done = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=1", str(UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0


@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    assert ANALYZE is not None
    # verify checks that ExecStart exists: point it at this checkout's console script.
    certescrow = Path(sys.executable).parent / "certescrow"
    copy = tmp_path / "certescrow-agent.service"
    copy.write_text(UNIT.read_text().replace("/usr/bin/certescrow", str(certescrow)))
    done = subprocess.run([ANALYZE, "verify", str(copy)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_has_what_the_daemon_relies_on() -> None:
    d = directives(UNIT.read_text())
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["WatchdogSec"] == ["60s"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["ExecStart"] == ["/usr/bin/certescrow agent run"]
    assert d["User"] == ["certescrow"]
    assert d["StateDirectory"] == ["certescrow"]
    assert d["StateDirectoryMode"] == ["0700"]
    # Ledger and vault defaults resolve under the state directory.
    assert "XDG_STATE_HOME=%S" in d["Environment"][0]
    assert "XDG_DATA_HOME=%S" in d["Environment"][0]
    assert d["LoadCredentialEncrypted"][0].startswith("certescrow-vault-key:")
    assert d["ProtectSystem"] == ["strict"]
    assert d["ReadOnlyPaths"] == ["-/etc/letsencrypt"]  # "-": a host without certbot starts
    assert d["CapabilityBoundingSet"] == ["CAP_DAC_READ_SEARCH"]
    # The child trying passwords on a PKCS#12 caps its own CPU (vault/bounded.py): setrlimit,
    # denied with @resources, is allowed again after it (systemd applies the lines in order).
    filters = d["SystemCallFilter"]
    assert any("~@resources" in f or "@resources" in f.split() for f in filters)
    assert filters[-1].split() == ["setrlimit", "prlimit64"]


def test_sysusers_declares_the_service_user(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    lines = [ln.split() for ln in SYSUSERS.read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0][:2] == ["u", "certescrow"]
    if sysusers is None:
        pytest.skip("systemd-sysusers not installed")
    done = subprocess.run([sysusers, "--dry-run", f"--root={tmp_path}", str(SYSUSERS)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Creating user 'certescrow'" in done.stdout + done.stderr


def _mdwe_supported() -> bool:
    # PR_SET_MDWE (65) in a throwaway child: it cannot be undone in the process that sets it.
    probe = subprocess.run(
        [sys.executable, "-c",
         "import ctypes,sys; sys.exit(ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0)"],
        timeout=30, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel without PR_SET_MDWE (Linux < 6.3)")
def test_agent_runs_with_memory_deny_write_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes kills a process that maps W+X memory (ctypes closures, a
    JIT): run the agent's whole path, inotify observer included, under the kernel's MDWE."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "c.pem").write_bytes(make_cert().pem)
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/l.sqlite3"\n'
                      f'[[agent.stores]]\npath = "{store}"\n')
    script = (
        "import ctypes, sys\n"
        "assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0\n"
        "from watchdog.observers.inotify import InotifyObserver\n"
        "o = InotifyObserver(); o.start(); o.stop(); o.join()\n"
        "from agent.main import main\n"
        f"main(['agent', 'run', '--once', '--config', {str(config)!r}, '--at', '2026-02-01'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "1 file(s) scanned, 1 read" in done.stdout  # the --once summary: it ran to the end
    assert "warning" in done.stdout.split("\n", 2)[1]  # and classified the certificate


def test_documentation_points_at_the_shipped_docs_not_a_placeholder() -> None:
    """``systemctl help certescrow-agent`` opens what the install steps put in place."""
    uris = " ".join(directives(UNIT.read_text())["Documentation"]).split()
    assert uris
    install = (REPO / "docs" / "daemon.md").read_text()
    assert "install -m 0644 docs/*.md /usr/share/doc/certescrow/" in install
    for uri in uris:
        if uri.startswith("man:"):
            continue
        assert uri.startswith("file:///usr/share/doc/certescrow/"), uri
        assert (REPO / "docs" / uri.rsplit("/", 1)[1]).is_file(), uri
    assert not any("example" in uri or "invalid" in uri for uri in uris)
