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
