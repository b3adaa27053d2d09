"""``agent check-config`` never prints a secret, and says so where it leaves one out.

docs/daemon.md said PKCS#12 passwords were "shown as `***`", but the text output prints a
comment, ``# pkcs12_passwords: 1 set in FILE (not printed)`` (a ``***`` there would read back
as the password ``***``), under a header claiming the text "printed in full" was the same
configuration read back, which it is not without the passwords. The header now names what was
left out, and the documentation describes both outputs as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.main import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "daemon.md"


def _check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(["agent", "check-config", *argv])
    code = info.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().out


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body + '[[agent.stores]]\npath = "/srv/certs"\n'
                    'pkcs12_passwords = ["hunter2", "swordfish"]\n')
    path.chmod(0o600)
    return path


def test_text_output_says_the_passwords_were_left_out_and_never_prints_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "")
    code, out = _check([str(config)], capsys)
    assert code == 0
    assert "hunter2" not in out
    assert "swordfish" not in out
    assert out.splitlines()[1] == ("# printed in full but for the PKCS#12 passwords (left out): "
                                   "read back, this text is the same configuration once it is "
                                   "put back")
    assert f"# pkcs12_passwords: 2 set in {config} (not printed)" in out.splitlines()


def test_with_a_dsn_password_too_both_are_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, '[policy]\nledger = "postgresql://desk:pw-secret@db/l"\n')
    code, out = _check([str(config)], capsys)
    assert code == 0
    assert "pw-secret" not in out
    assert "hunter2" not in out
    assert out.splitlines()[1] == ("# printed in full but for the ledger DSN's password and the "
                                   "PKCS#12 passwords (left out): read back, this text is the "
                                   "same configuration once they are put back")


def test_json_output_shows_each_password_as_stars(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(["--json", str(_config(tmp_path, ""))], capsys)
    assert code == 0
    assert json.loads(out)["agent"]["stores"][0]["pkcs12_passwords"] == ["***", "***"]


def test_the_documentation_describes_both_outputs_as_they_are() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert "`# pkcs12_passwords: N set in FILE (not printed)`" in text
    assert 'with `--json`, each one is `"***"`' in text
