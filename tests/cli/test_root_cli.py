"""The root command: one group, errors as one line with a stable exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.main import main


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_every_package_contributes_its_group(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run_main(["--help"], capsys)
    assert code == 0
    for name in ("policy", "contract", "vault", "scan", "inspect", "agent"):
        assert name in out


def test_a_config_file_that_is_not_toml_is_one_line_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[agent\nhost = 1\n")
    code, _, err = _run_main(["--config", str(bad), "policy", "--help"], capsys)
    assert code == 31
    assert err.startswith("Error: ")
    assert str(bad) in err
    assert "Traceback" not in err


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    code, _, err = _run_main(["--config", str(missing), "policy", "--help"], capsys)
    assert code == 31
    assert str(missing) in err


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).with_name("certescrow")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "version" in result.stdout
