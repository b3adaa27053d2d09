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


# ---------------------------------------------------------------- errors, configuration (issue 11)

CERTESCROW = Path(sys.executable).with_name("certescrow")


def _real(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("CERTESCROW_", "XDG_"))}
    environ.update(HOME=str(home), **env)
    return subprocess.run([str(CERTESCROW), *args], capture_output=True, text=True,
                          env=environ, timeout=120, check=False)


def test_a_malformed_test_clock_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _real(["scan", str(tmp_path / "empty")], tmp_path,
                 CERTESCROW_TESTONLY_NOW="next tuesday")
    assert done.returncode == 10
    assert done.stderr.startswith("Error: CERTESCROW_TESTONLY_NOW is not an ISO 8601 time")
    assert "Traceback" not in done.stderr


def test_a_set_test_clock_is_said_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = _real(["scan", "--json", str(tmp_path / "empty")], tmp_path,
                 CERTESCROW_TESTONLY_NOW="2026-02-01T00:00:00Z")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: CERTESCROW_TESTONLY_NOW is set: the clock is pinned at 2026-02-01T00:00:00Z "
        "(a test hook; unset it in production)"]


def test_a_shift_jis_configuration_names_the_file_and_says_utf_8(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes('[agent]\nhost = "東京サーバ"\n'.encode("shift_jis"))
    done = _real(["--config", str(config), "scan", str(tmp_path)], tmp_path)
    assert done.returncode == 31
    assert done.stderr.startswith(f"Error: {config}: not UTF-8")
    assert "must be UTF-8" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [
    ["scan", "{tmp}"],
    ["inspect", "{tmp}/c.pem"],
    ["contract", "list"],
    ["policy", "actions"],
    ["agent", "run", "--once"],
    ["vault", "list"],
])
def test_a_configuration_typo_is_the_same_error_for_every_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[policy]\nnotice_lead_day = 60\n")
    from tests.certfactory import make_cert

    (tmp_path / "c.pem").write_bytes(make_cert().pem)
    args = ["--config", str(config), *[a.format(tmp=tmp_path) for a in argv]]
    code, _, err = _run_main(args, capsys)
    assert code == 31
    assert err.strip().startswith(f"Error: {config}: policy.notice_lead_day: unknown key")


def test_the_default_configuration_is_validated_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_environment: Path) -> None:
    config = isolated_environment / ".config" / "certescrow" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[agent]\nexpiry_warning_days = 7\nexpiry_critical_days = 14\n")
    code, _, err = _run_main(["scan", str(tmp_path)], capsys)
    assert code == 31
    assert "agent.expiry_critical_days" in err


def test_check_config_of_another_file_is_not_blocked_by_a_broken_default(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_environment: Path) -> None:
    broken = isolated_environment / ".config" / "certescrow" / "config.toml"
    broken.parent.mkdir(parents=True)
    broken.write_text("[policy]\nnotice_lead_day = 60\n")
    good = tmp_path / "good.toml"
    good.write_text("[agent]\nstores = []\n")
    code, out, _ = _run_main(["agent", "check-config", str(good)], capsys)
    assert code == 0
    assert "stores = []" in out


def test_a_configuration_directory_that_loops_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], isolated_environment: Path) -> None:
    config_home = isolated_environment / ".config"
    config_home.symlink_to(config_home)  # ELOOP: cannot be looked into
    code, _, err = _run_main(["scan", str(tmp_path)], capsys)
    assert code == 31
    assert err.startswith("Error: ")
    assert "cannot look for the configuration file" in err
    assert "--config" in err


def test_an_unreadable_home_config_is_a_clear_error_in_a_real_process() -> None:
    import os
    import pwd
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to run the command as another user")
    nobody = pwd.getpwnam("nobody")

    def as_nobody() -> None:
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("CERTESCROW_", "XDG_"))}
    try:
        probe = subprocess.run([str(CERTESCROW), "--version"], capture_output=True, text=True,
                               env=environ, timeout=120, check=False, preexec_fn=as_nobody,
                               cwd="/")
    except PermissionError:
        pytest.skip("the test interpreter is not executable by nobody here")
    if probe.returncode != 0:
        pytest.skip("the test interpreter is not readable by nobody here")
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own directories are 0700
    try:
        base.chmod(0o755)
        home = base / "home"
        (home / ".config" / "certescrow").mkdir(parents=True)
        (home / ".config" / "certescrow" / "config.toml").write_text("[agent]\n")
        (home / ".config").chmod(0o700)  # root's, not searchable by nobody
        home.chmod(0o755)
        (base / "store").mkdir(mode=0o755)
        environ["HOME"] = str(home)
        done = subprocess.run([str(CERTESCROW), "scan", str(base / "store")],
                              capture_output=True, text=True, env=environ, timeout=120,
                              check=False, preexec_fn=as_nobody, cwd="/")
    finally:
        shutil.rmtree(base)
    assert done.returncode == 31, done.stderr
    assert done.stderr.startswith(f"Error: {home / '.config'}: cannot look for the "
                                  "configuration file")
    assert "Traceback" not in done.stderr


def test_an_error_naming_a_hostile_file_name_reaches_the_terminal_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A file name is attacker-controlled: it must not clear the screen or retitle the terminal
    # when an error quotes it.
    bad = tmp_path / "x\x1b[2J\x1b]0;pwned\x07.toml"
    bad.write_text("[agent\nhost = 1\n")
    code, _, err = _run_main(["--config", str(bad), "policy", "--help"], capsys)
    assert code == 31
    assert err.startswith("Error: ")
    assert not any((ord(c) < 0x20 and c != "\n") or c == "\x7f" for c in err)
    assert err.count("\n") == 1
