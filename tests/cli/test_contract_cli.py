"""``certescrow contract …`` and ``certescrow policy actions``, in the exact forms scripts use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from agent.main import certescrow
from policy.errors import PolicyError
from policy.paths import default_ledger_path
from tests.certfactory import make_cert
from tests.clockhook import without_clock_warning

AT = "2026-11-24T10:00:00+09:00"


def _run(args: list[str], *, config: Path | None = None) -> tuple[int, Result]:
    """Invoke the root command; a certescrow error maps to its stable exit code, as
    ``agent.main.main`` does."""
    argv = (["--config", str(config)] if config else []) + args
    result = CliRunner().invoke(certescrow, argv, catch_exceptions=True)
    if isinstance(result.exception, PolicyError):
        return result.exception.exit_code, result
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result


def _ok(args: list[str], **kw: Any) -> Result:
    code, result = _run(args, **kw)
    assert code == 0, (result.output, result.exception)
    return result


def _json(args: list[str], **kw: Any) -> Any:
    return json.loads(_ok(args, **kw).stdout)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


def _cert_file(tmp_path: Path, *, not_before: datetime, days: int, name: str = "cert.pem",
               sans: tuple[str, ...] = ("www.example.jp",)) -> Path:
    issued = make_cert(not_before=not_before, lifetime=timedelta(days=days), sans=sans)
    path = tmp_path / name
    path.write_bytes(issued.pem)
    return path


# ---------------------------------------------------------------- contract add


def test_contract_add_exact_form_with_tier_and_at(ledger: Path) -> None:
    out = _json(["contract", "add", "C-1", "--item", "byo", "--tier", "1y", "--at", AT,
                 "--json", "--ledger", str(ledger)])
    assert out["accepted"] is True
    assert out["contract"]["contract"] == "C-1"
    assert out["contract"]["category"] == "III"
    assert out["contract"]["tier"] == "1y"
    assert out["contract"]["accepted_on"] == "2026-11-24"
    fees = {a["computed"]["fee"] for a in out["actions"] if a["action"] == "fee-owed"}
    assert fees == {"initial", "monthly"}


def test_contract_add_minimal_form_takes_the_items_only_tier(ledger: Path) -> None:
    result = _ok(["contract", "add", "S1", "--item", "secure-server-id", "--at", AT,
                  "--ledger", str(ledger)])
    assert "tier 1y" in result.stdout
    assert "fee-owed" in result.stdout
    assert "Art.10, Appx1.3" in result.stdout  # category I owes the agency fee


@pytest.mark.parametrize(("extra", "clause"), [
    (["--item", "globalsign-ov", "--country", "US"], "Art.7(2)"),
    (["--item", "globalsign-ov", "--migrating"], "Art.7(1)"),
    (["--item", "secure-server-id-cloud"], "Art.4(1)"),
])
def test_contract_add_refusal_is_a_clear_error_and_records_nothing(
        ledger: Path, extra: list[str], clause: str) -> None:
    code, result = _run(["contract", "add", "R1", *extra, "--at", AT, "--ledger", str(ledger)])
    assert code == 16
    assert clause in str(result.exception)
    assert "nothing recorded" in str(result.exception)
    assert not ledger.exists()


def test_contract_add_refusal_json_lists_the_refusals(ledger: Path) -> None:
    code, result = _run(["contract", "add", "R1", "--item", "globalsign-ov", "--country", "US",
                         "--migrating", "--json", "--at", AT, "--ledger", str(ledger)])
    assert code == 16
    out = json.loads(result.stdout)
    assert out["accepted"] is False
    assert {r["clause"] for r in out["refusals"]} == {"Art.7(1)", "Art.7(2)"}


def test_contract_add_category_iii_abroad_is_accepted(ledger: Path) -> None:
    _ok(["contract", "add", "B1", "--item", "byo", "--tier", "6m", "--country", "US",
         "--at", AT, "--ledger", str(ledger)])


def test_contract_add_category_ii_with_designated_service_is_accepted(ledger: Path) -> None:
    out = _json(["contract", "add", "K1", "--item", "secure-server-id-cloud",
                 "--designated-service", "IIJ GIO", "--json", "--at", AT,
                 "--ledger", str(ledger)])
    assert out["contract"]["service"] == "IIJ GIO"


def test_contract_add_unknown_item_and_unoffered_tier_exit_12(ledger: Path) -> None:
    code, result = _run(["contract", "add", "X", "--item", "nope", "--ledger", str(ledger)])
    assert code == 12
    code, result = _run(["contract", "add", "X", "--item", "globalsign-ov", "--tier", "2y",
                         "--ledger", str(ledger)])
    assert code == 12
    assert "does not offer tier 2y" in str(result.exception)


def test_contract_add_twice_is_refused(ledger: Path) -> None:
    args = ["contract", "add", "D1", "--item", "byo", "--tier", "1y", "--at", AT,
            "--ledger", str(ledger)]
    _ok(args)
    code, result = _run(args)
    assert code == 15
    assert "already exists" in str(result.exception)


def test_contract_add_bad_id_is_a_usage_error(ledger: Path) -> None:
    code, result = _run(["contract", "add", " spaced id", "--item", "byo",
                         "--ledger", str(ledger)])
    assert code == 2
    assert "contract id" in result.output


# ---------------------------------------------------------------- list / show / life


@pytest.mark.parametrize("command", [
    ["contract", "list"], ["contract", "list", "--json"], ["contract", "show", "C1"],
    ["contract", "unbound"], ["policy", "actions"], ["policy", "actions", "--json"],
    ["policy", "forecast"],
])
def test_a_named_ledger_that_does_not_exist_is_an_error_naming_it(
        tmp_path: Path, command: list[str]) -> None:
    """Issue 11: a mistyped path must never answer "Nothing due"; and nothing is created."""
    mistyped = tmp_path / "ledgr.sqlite3"
    code, result = _run([*command, "--ledger", str(mistyped)])
    assert code == 13
    assert str(mistyped) in str(result.exception)
    assert "Nothing due" not in result.output
    assert not mistyped.exists()
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{mistyped}"\n')
    code, result = _run(command, config=config)
    assert code == 13
    assert str(mistyped) in str(result.exception)
    assert not mistyped.exists()


def test_the_default_ledger_not_existing_yet_means_nothing_recorded() -> None:
    assert not default_ledger_path().exists()
    assert _json(["contract", "list", "--json"]) == []
    assert "No contracts." in _ok(["contract", "list"]).stdout
    assert _json(["policy", "actions", "--json"]) == []
    assert not default_ledger_path().exists()


def test_a_recording_command_creates_the_named_ledger(ledger: Path) -> None:
    _ok(["contract", "add", "C1", "--item", "byo", "--tier", "1y", "--at", AT,
         "--ledger", str(ledger)])
    assert ledger.exists()


def test_contract_life_bind_notify_answer_show(tmp_path: Path, ledger: Path) -> None:
    nb = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    cert = _cert_file(tmp_path, not_before=nb, days=365)
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "L1", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2026-02-20", *lg])
    bound = _json(["contract", "bind", "L1", str(cert), "--at", "2026-03-01T12:00", "--json",
                   *lg])
    assert bound["contract"]["certificate"]["not_after"] == "2027-02-28T23:59:59Z"
    notify = [a for a in bound["actions"] if a["action"] == "notify"]
    assert notify[0]["due"] == "2026-12-01"  # Tokyo end 2027-03-01 minus 90 days
    notified = _json(["contract", "notify", "L1", "--at", "2026-11-20T10:00", "--json", *lg])
    assert notified["notice_sent"] == "2026-11-20"
    assert notified["answer_deadline"] == "2026-12-20"
    answered = _json(["contract", "answer", "L1", "dont-renew", "--at", "2026-11-25",
                      "--json", *lg])
    assert answered["terminated_on"] == "2027-03-01"
    assert answered["answer_timing"] == "on-time"
    assert [a["action"] for a in answered["actions"]] == ["terminate"]
    shown = _json(["contract", "show", "L1", "--json", "--at", "2026-11-26", *lg])
    assert shown["state"]["status"] == "terminating"
    assert [e["kind"] for e in shown["journal"]] == [
        "application-accepted", "certificate-bound", "notice-sent", "answer-received"]
    assert {f["computed"]["fee"] for f in shown["fees"]} == {"initial", "agency", "monthly"}
    text = _ok(["contract", "show", "L1", "--at", "2026-11-26", *lg]).stdout
    assert "Contract L1: terminating" in text
    assert "Journal (happened / recorded, Asia/Tokyo):" in text
    assert "Due actions:" in text


def test_contract_show_at_in_the_past_ignores_later_events(tmp_path: Path, ledger: Path) -> None:
    cert = _cert_file(tmp_path, not_before=datetime(2026, 3, 1, tzinfo=UTC), days=365)
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "P1", "--item", "byo", "--tier", "1y", "--at", "2026-02-20", *lg])
    _ok(["contract", "bind", "P1", str(cert), "--at", "2026-03-02", *lg])
    _ok(["contract", "notify", "P1", "--at", "2026-11-01", *lg])
    past = _json(["contract", "show", "P1", "--json", "--at", "2026-06-01", *lg])
    assert past["state"]["notice_sent"] is None
    assert [e["kind"] for e in past["journal"]] == ["application-accepted", "certificate-bound"]
    code, _ = _run(["contract", "show", "P1", "--at", "2026-01-01", *lg])
    assert code == 14


def test_contract_bind_a_file_that_is_not_a_certificate_names_the_file(tmp_path: Path,
                                                                       ledger: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "J1", "--item", "byo", "--tier", "1y", "--at", AT, *lg])
    code, result = _run(["contract", "bind", "J1", str(junk), "--at", AT, *lg])
    assert code != 0
    assert "junk.pem" in str(result.exception)


def test_contract_change_records_the_service_and_its_one_time_fee(ledger: Path,
                                                                  tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[policy.prices]\nchange_fee = 5000\n")
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "G1", "--item", "byo", "--tier", "1y", "--at", AT, *lg],
        config=config)
    out = _json(["contract", "change", "G1", "--service", "IIJ GIO P2", "--at", AT, "--json",
                 *lg], config=config)
    assert out["contract"]["service"] == "IIJ GIO P2"
    change = [a for a in out["actions"] if a["computed"].get("fee") == "change"]
    assert change[0]["computed"]["amount_yen"] == 5000
    assert change[0]["due"] == "2026-11-24"


def test_contract_renew_records_the_renewal_and_its_fees(tmp_path: Path, ledger: Path) -> None:
    cert = _cert_file(tmp_path, not_before=datetime(2026, 3, 1, tzinfo=UTC), days=365)
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "N1", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2026-02-20", *lg])
    _ok(["contract", "bind", "N1", str(cert), "--at", "2026-03-02", *lg])
    _ok(["contract", "notify", "N1", "--at", "2026-10-01", *lg])  # answer due by 2026-10-31
    out = _json(["contract", "renew", "N1", "--default", "--designated", "2026-11-10",
                 "--at", "2026-11-05", "--json", *lg])
    kinds = [a["action"] for a in out["actions"]]
    assert "replace-certificate" in kinds
    fees = [a for a in out["actions"] if a["action"] == "fee-owed"]
    assert {f["due"] for f in fees} == {"2026-11-10"}


# ---------------------------------------------------------------- contract cancel


def test_contract_cancel_json_key_effective(tmp_path: Path, ledger: Path) -> None:
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "Q1", "--item", "byo", "--tier", "1y", "--at", "2026-01-05", *lg])
    cert = _cert_file(tmp_path, not_before=datetime(2026, 1, 1, tzinfo=UTC), days=365)
    _ok(["contract", "bind", "Q1", str(cert), "--at", "2026-01-05", *lg])
    out = _json(["contract", "cancel", "Q1", "--arrived", "2026-01-31", "--json",
                 "--at", "2026-02-01", *lg])
    assert out["effective"] == "2026-03-02"
    assert out["clause"] == "Art.9(2)"
    assert out["refund"] is False


def test_contract_cancel_requested_later_is_honoured_and_printed(tmp_path: Path,
                                                                ledger: Path) -> None:
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "Q2", "--item", "byo", "--tier", "1y", "--at", "2026-01-05", *lg])
    cert = _cert_file(tmp_path, not_before=datetime(2026, 1, 1, tzinfo=UTC), days=365)
    _ok(["contract", "bind", "Q2", str(cert), "--at", "2026-01-05", *lg])
    result = _ok(["contract", "cancel", "Q2", "--arrived", "2026-02-01", "--requested",
                  "2026-06-30", "--at", "2026-02-02", *lg])
    assert result.stdout.splitlines()[0] == "effective 2026-06-30"
    assert "not refunded" in result.stdout


def test_contract_cancel_after_the_validity_period_is_refused(tmp_path: Path,
                                                              ledger: Path) -> None:
    cert = _cert_file(tmp_path, not_before=datetime(2026, 1, 1, tzinfo=UTC), days=100)
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "Q3", "--item", "byo", "--tier", "6m", "--at", "2026-01-01", *lg])
    _ok(["contract", "bind", "Q3", str(cert), "--at", "2026-01-02", *lg])
    code, result = _run(["contract", "cancel", "Q3", "--arrived", "2026-04-12",
                         "--at", "2026-04-13", *lg])
    assert code == 15
    assert "validity period ended on 2026-04-11" in str(result.exception)


def test_contract_cancel_bad_date_is_a_usage_error(ledger: Path) -> None:
    code, result = _run(["contract", "cancel", "Q1", "--arrived", "31/01/2026",
                         "--ledger", str(ledger)])
    assert code == 2
    assert "YYYY-MM-DD" in result.output


# ---------------------------------------------------------------- policy actions


def test_policy_actions_soonest_first_across_contracts(tmp_path: Path, ledger: Path) -> None:
    lg = ["--ledger", str(ledger)]
    late = _cert_file(tmp_path, not_before=datetime(2026, 6, 1, tzinfo=UTC), days=365,
                      name="late.pem")
    soon = _cert_file(tmp_path, not_before=datetime(2026, 3, 1, tzinfo=UTC), days=365,
                      name="soon.pem")
    for cid, cert in (("A-late", late), ("Z-soon", soon)):
        _ok(["contract", "add", cid, "--item", "byo", "--tier", "1y", "--at", "2026-02-01", *lg])
        _ok(["contract", "bind", cid, str(cert), "--at", "2026-02-02", *lg])
    out = _json(["policy", "actions", "--json", "--at", "2026-09-01", *lg])
    dues = [a["due"] for a in out]
    assert dues == sorted(dues)
    assert [a["contract"] for a in out if a["action"] == "notify"] == ["Z-soon", "A-late"]
    within = _json(["policy", "actions", "--json", "--at", "2026-09-01", "--within", "95", *lg])
    assert [a["contract"] for a in within] == ["Z-soon"]
    assert "Nothing due." in _ok(["policy", "actions", "--at", "2026-09-01", "--within", "1",
                                  *lg]).stdout



# ---------------------------------------------------------------- ledger location


def test_ledger_location_config_then_default(tmp_path: Path) -> None:
    configured = tmp_path / "conf" / "configured.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{configured}"\n')
    _ok(["contract", "add", "F1", "--item", "byo", "--tier", "1y", "--at", AT], config=config)
    assert configured.exists()
    _ok(["contract", "add", "F2", "--item", "byo", "--tier", "1y", "--at", AT])
    assert default_ledger_path().exists()
    assert str(default_ledger_path()).startswith(os.environ["XDG_STATE_HOME"])
    explicit = tmp_path / "explicit.sqlite3"
    _ok(["contract", "add", "F3", "--item", "byo", "--tier", "1y", "--at", AT,
         "--ledger", str(explicit)], config=config)
    assert [c["contract"] for c in _json(["contract", "list", "--json"], config=config)] == [
        "F1"]
    assert [c["contract"] for c in _json(["contract", "list", "--json"])] == ["F2"]


# ---------------------------------------------------------------- the real command


def test_real_subprocess_contract_add_and_cancel_json(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("certescrow")
    ledger = tmp_path / "l.sqlite3"
    env = {**os.environ, "CERTESCROW_TESTONLY_NOW": "2026-11-24T10:00:00+09:00"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(script), *args, "--ledger", str(ledger)], capture_output=True,
                              text=True, check=False, timeout=60, env=env)

    added = run("contract", "add", "C100", "--item", "byo", "--tier", "1y")
    assert added.returncode == 0, added.stderr
    cert = _cert_file(tmp_path, not_before=datetime(2026, 11, 1, tzinfo=UTC), days=365)
    assert run("contract", "bind", "C100", str(cert)).returncode == 0
    cancelled = run("contract", "cancel", "C100", "--arrived", "2026-11-24", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["effective"] == "2026-12-24"
    refused = run("contract", "add", "C101", "--item", "globalsign-ov", "--country", "US")
    assert refused.returncode == 16
    assert without_clock_warning(refused.stderr).startswith("Error: ")
    assert "Art.7(2)" in refused.stderr
    assert "Traceback" not in refused.stderr


# ---------------------------------------------------------------- unbound observations, bad files


def test_contract_unbound_lists_what_no_contract_claims(tmp_path: Path, ledger: Path) -> None:
    from policy.intake import Observation
    from policy.ledger import Ledger
    from tests.policy.ledger_fixtures import T0, facts

    with Ledger.open(ledger) as led:
        led.report([Observation(facts=facts(tag="stray"), host="web9", location="/srv/x.pem",
                                index=0, observed_at_utc=T0)], at=T0)
    out = _json(["contract", "unbound", "--json", "--ledger", str(ledger)])
    assert [(o["host"], o["location"], o["contract"]) for o in out] == [
        ("web9", "/srv/x.pem", None)]
    assert "web9:/srv/x.pem" in _ok(["contract", "unbound", "--ledger", str(ledger)]).stdout


def test_contract_unbound_lists_a_store_bound_to_a_contract_the_ledger_does_not_hold(
        tmp_path: Path, ledger: Path) -> None:
    """A store's ``contract = "C-1O01"`` (a letter O for a zero): its observations went to no
    listing at all, neither a contract's nor the unbound ones (the review of session 13)."""
    from policy.intake import Binding, Observation
    from policy.ledger import Ledger
    from tests.policy.ledger_fixtures import T0, accepted, facts

    with Ledger.open(ledger) as led:
        led.append(accepted("C-1001"))
        led.report([Observation(facts=facts(tag="typo"), host="web1", location="/srv/a.pem",
                                index=0, observed_at_utc=T0,
                                binding=Binding(contract_id="C-1O01")),
                    Observation(facts=facts(tag="right"), host="web1", location="/srv/b.pem",
                                index=0, observed_at_utc=T0,
                                binding=Binding(contract_id="C-1001"))], at=T0)
    out = _json(["contract", "unbound", "--json", "--ledger", str(ledger)])
    assert [(o["location"], o["contract"]) for o in out] == [("/srv/a.pem", "C-1O01")]
    text = _ok(["contract", "unbound", "--ledger", str(ledger)]).stdout
    assert "web1:/srv/a.pem" in text
    assert "C-1O01, which is no contract" in text
    assert "/srv/b.pem" not in text


def test_contract_commands_refuse_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.sqlite3"
    bogus.write_bytes(b"\x00not sqlite at all" * 64)
    code, result = _run(["contract", "list", "--ledger", str(bogus)])
    assert code == 13
    assert "not a certescrow ledger" in str(result.exception)
    code, _ = _run(["contract", "add", "Z", "--item", "byo", "--tier", "1y",
                    "--ledger", str(bogus)])
    assert code == 13
    assert bogus.read_bytes().startswith(b"\x00not sqlite")


def test_contract_terminate_records_the_providers_termination(
        tmp_path: Path, ledger: Path) -> None:
    """Art.8: the CA ends the product on 2026-03-31 (an amended catalogue says so), and the
    provider records the item's abolition ahead. The contract runs through its termination day
    (one rule for every clause) and is terminated from the next."""
    text = (Path(__file__).resolve().parents[2] / "policy" / "data" / "catalogue.toml").read_text(
        encoding="utf-8")
    amended = tmp_path / "amended.toml"
    amended.write_text(text.replace('handle = "globalsign-ov"\n',
                                    'handle = "globalsign-ov"\nproduct_end = 2026-03-31\n', 1),
                       encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\ncatalogue = "{amended}"\n', encoding="utf-8")
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "T1", "--item", "globalsign-ov", "--tier", "1y",
         "--at", "2026-01-05", *lg], config=config)
    out = _json(["contract", "terminate", "T1", "--effective", "2026-03-31", "--clause", "Art.8",
                 "--reason", "product ended", "--at", "2026-02-01", "--json", *lg],
                config=config)
    assert out["terminated_on"] == "2026-03-31"
    assert [a["action"] for a in out["actions"] if a["action"] == "terminate"] == ["terminate"]
    assert _json(["contract", "show", "T1", "--json", "--at", "2026-03-31T23:59:59", *lg])[
        "state"]["status"] == "terminating"
    assert _json(["contract", "show", "T1", "--json", "--at", "2026-04-01", *lg])["state"][
        "status"] == "terminated"
    code, result = _run(["contract", "notify", "T1", "--at", "2026-04-01", *lg])
    assert code == 15
    assert "terminated on 2026-03-31" in str(result.exception)


def test_policy_actions_reports_a_broken_contract_and_lists_the_others(
        tmp_path: Path, ledger: Path) -> None:
    lg = ["--ledger", str(ledger)]
    _ok(["contract", "add", "OK1", "--item", "byo", "--tier", "1y", "--at", AT, *lg])
    _ok(["contract", "add", "DV1", "--item", "globalsign-dv", "--tier", "1y", "--at", AT, *lg])
    embedded = (Path(__file__).resolve().parents[2] / "policy" / "data" / "catalogue.toml")
    text = embedded.read_text(encoding="utf-8")
    start = text.index('[[items]]\nhandle = "globalsign-dv"\n')
    amended = tmp_path / "amended.toml"
    amended.write_text(text[:start] + text[text.index("[[items]]", start + 5):],
                       encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\ncatalogue = "{amended}"\n')
    code, result = _run(["policy", "actions", "--json", "--at", AT, *lg], config=config)
    assert code == 12
    listed = json.loads(result.stdout)
    assert {a["contract"] for a in listed} == {"OK1"}
    assert "contract DV1" in result.stderr


def test_binding_a_crafted_certificate_says_its_text_was_altered(tmp_path: Path,
                                                                 ledger: Path) -> None:
    """The scan and the daemon say when a certificate's text was recorded escaped or
    shortened; ``contract bind`` recorded the same altered text silently (review 4)."""
    issued = make_cert(sans=("good.example.jp", "x" * 400 + ".example.jp"),
                       issuer_org="Evil\x00Org", cn="good.example.jp",
                       not_before=datetime(2026, 3, 1, tzinfo=UTC))
    cert = tmp_path / "crafted.pem"
    cert.write_bytes(issued.pem)
    lg = ["--ledger", str(ledger)]
    for cid in ("C1", "C2"):  # a second contract: binding the bound certificate is refused
        _ok(["contract", "add", cid, "--item", "globalsign-ov", "--tier", "1y",
             "--at", "2026-02-20", *lg])
    bound = _json(["contract", "bind", "C1", str(cert), "--at", "2026-03-01T12:00", "--json",
                   *lg])
    (altered,) = [f for f in bound["findings"] if f["code"] == "certificate-text-altered"]
    assert altered["severity"] == "warning"
    assert "issuer_org" in altered["message"]
    assert "Evil" not in json.dumps(bound["findings"])  # the fields named, never their text
    assert bound["contract"]["certificate"]["issuer_org"] == "Evil\\00Org"
    _, text = _run(["contract", "bind", "C2", str(cert), "--at", "2026-03-01T12:00", *lg])
    assert "Warning: " in text.output
    assert "issuer_org, sans" in text.output
