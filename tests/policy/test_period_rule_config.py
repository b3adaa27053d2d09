"""``[policy] period_rule`` from the configuration file reaches the classification, the same
certificate read from a real file by ``certescrow policy classify`` (issue 10)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from agent.main import certescrow
from tests.certfactory import make_cert

NB = datetime(2026, 5, 10, 3, 4, 5, tzinfo=UTC)  # 12:04:05 JST: reckoning day 2026-05-11


def classify(tmp_path: Path, rule: str | None) -> dict[str, object]:
    cert = make_cert(not_before=NB, lifetime=timedelta(days=90, seconds=1),
                     sans=("byo.example.jp",), issuer_org="Let's Encrypt", issuer_cn="R11")
    pem = tmp_path / "byo.pem"
    pem.write_bytes(cert.pem)
    config = tmp_path / f"config-{rule}.toml"
    config.write_text("[policy]\n" + (f'period_rule = "{rule}"\n' if rule else ""),
                      encoding="utf-8")
    result = CliRunner().invoke(certescrow, ["--config", str(config), "policy", "classify",
                                             "--json", "--at", "2026-05-11", str(pem)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = [r for r in json.loads(result.stdout) if "sha256" in r]
    return row


def test_default_civil_code_counts_90_days_and_a_second_from_mid_day_as_within_90(
        tmp_path: Path) -> None:
    row = classify(tmp_path, None)
    assert row["renewable"] is False
    (blocked,) = [a for a in row["actions"] if a["action"] == "renewal-blocked"]  # type: ignore[attr-defined]
    assert blocked["computed"]["period_rule"] == "civil-code"
    assert blocked["computed"]["period_last_day"] == "2026-08-08"


def test_elapsed_from_the_configuration_counts_seconds(tmp_path: Path) -> None:
    row = classify(tmp_path, "elapsed")
    assert row["renewable"] is True
    assert not [a for a in row["actions"] if a["action"] == "renewal-blocked"]  # type: ignore[attr-defined]


def test_an_unknown_period_rule_is_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[policy]\nperiod_rule = "lunar"\n', encoding="utf-8")
    result = CliRunner().invoke(certescrow, ["--config", str(config), "policy", "catalogue"])
    assert result.exit_code != 0
    said = result.stderr + str(result.exception)
    assert "policy.period_rule" in said
    assert "civil-code, elapsed" in said
