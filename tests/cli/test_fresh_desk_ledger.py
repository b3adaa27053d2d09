"""A fresh desk: no ledger yet at the per-user default, and a daily cron job.

``policy refresh`` (the daily job docs/ledger.md asks for), ``policy verify`` and ``policy
migrate`` exited 13 on a desk that had recorded nothing yet, saying "check the path given with
--ledger or [policy].ledger" though neither was given, while ``contract list`` and ``policy
actions`` answered the same state with exit 0. Now the maintenance commands answer it as the
listings do: exit 0, naming the default path they looked at and how the ledger comes to be,
and creating nothing. A ledger someone named that does not exist stays exit 13, and the
message says who named it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.main import main
from policy.paths import default_ledger_path
from tests.clirun import certescrow

MAINTENANCE = ("refresh", "verify", "migrate")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.mark.parametrize("command", MAINTENANCE)
def test_no_default_ledger_yet_is_nothing_to_do_naming_where_it_looked(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    default = default_ledger_path()
    code, out, err = _run(["policy", command], capsys)
    assert (code, err) == (0, "")
    assert out == (f"No ledger yet at {default} (the per-user default: nothing has been "
                   f"recorded): nothing to {command}. The first command that records creates "
                   "it (`certescrow contract add`); to use another ledger, give --ledger or "
                   "set [policy].ledger.\n")
    assert not default.exists()
    assert not default.parent.exists()


@pytest.mark.parametrize("command", [*MAINTENANCE, "list"])
def test_a_default_ledger_that_is_a_link_to_nothing_is_an_error_not_a_fresh_desk(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The default path linked to a ledger that is gone answered "No ledger yet", exit 0: a
    daily job would then report success on a desk whose ledger vanished (the re-review of
    session 13)."""
    default = default_ledger_path()
    default.parent.mkdir(parents=True)
    default.symlink_to(default.parent / "gone.sqlite3")
    argv = ["contract", "list"] if command == "list" else ["policy", command]
    code, out, err = _run(argv, capsys)
    assert code == 13, (out, err)
    assert "No ledger yet" not in out


@pytest.mark.parametrize("command", MAINTENANCE)
def test_no_default_ledger_yet_in_json(command: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["policy", command, "--json"], capsys)
    assert code == 0
    body = json.loads(out)
    assert body["ledger"] == str(default_ledger_path())
    assert body["ledger_exists"] is False


def test_the_listings_and_the_maintenance_commands_agree(
        capsys: pytest.CaptureFixture[str]) -> None:
    codes = {argv[-1]: _run(argv, capsys)[0]
             for argv in (["contract", "list"], ["policy", "actions"],
                          *(["policy", command] for command in MAINTENANCE))}
    assert codes == dict.fromkeys(["list", "actions", *MAINTENANCE], 0)


@pytest.mark.parametrize("command", MAINTENANCE)
def test_a_ledger_named_with_the_option_that_does_not_exist_is_exit_13(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.sqlite3"
    code, out, err = _run(["policy", command, "--ledger", str(missing)], capsys)
    assert (code, out) == (13, "")
    assert err == (f"Error: {missing}: no ledger here (named by --ledger: check the path; a "
                   "command that records, e.g. `certescrow contract add`, creates it)\n")
    assert not missing.exists()


def test_a_ledger_named_in_the_configuration_says_which_file_named_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{missing}"\n')
    for argv in (["policy", "refresh"], ["policy", "forecast"], ["contract", "list"]):
        code, _, err = _run(["--config", str(config), *argv], capsys)
        assert code == 13, argv
        assert err.startswith(f"Error: {missing}: no ledger here (named by [policy].ledger in "
                              f"{config}: check the path"), argv


def test_the_daily_cron_job_on_a_fresh_desk_succeeds(tmp_path: Path) -> None:
    done = certescrow("policy", "refresh", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("No ledger yet at ")
    assert "nothing to refresh" in done.stdout
