"""The service's systemd unit is hardened like the agent's: SAFE by `systemd-analyze
security`, and it runs `policy serve` with a configuration file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "certescrow-policy.service"
ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_policy_service_exposure_is_at_most_1_0() -> None:
    assert ANALYZE is not None
    done = subprocess.run([ANALYZE, "security", "--offline=true", "--threshold=10", str(UNIT)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_policy_service_runs_serve_as_its_own_user() -> None:
    text = UNIT.read_text()
    assert "ExecStart=/usr/bin/certescrow policy serve --config " in text
    assert "User=certescrow" in text
    assert "NoNewPrivileges=yes" in text
    assert "LoadCredentialEncrypted=certescrow-vault-key:" in text


def test_documentation_points_at_the_shipped_docs_as_the_agents_unit_does() -> None:
    """``systemctl help certescrow-policy`` opened ``https://example.invalid/…``, a placeholder;
    it now opens docs/fleet.md where the install steps (docs/daemon.md, shared by both units)
    put it, as ``Documentation=`` of the agent's unit does."""
    lines = [line for line in UNIT.read_text().splitlines()
             if line.startswith("Documentation=")]
    uris = " ".join(line.split("=", 1)[1] for line in lines).split()
    assert uris
    docs = Path(__file__).resolve().parents[2] / "docs"
    assert "install -m 0644 docs/*.md /usr/share/doc/certescrow/" in (
        docs / "daemon.md").read_text()
    assert "/usr/share/doc/certescrow/" in (docs / "fleet.md").read_text()
    for uri in uris:
        if uri.startswith("man:"):
            continue
        assert uri.startswith("file:///usr/share/doc/certescrow/"), uri
        assert (docs / uri.rsplit("/", 1)[1]).is_file(), uri
    assert "file:///usr/share/doc/certescrow/fleet.md" in uris
