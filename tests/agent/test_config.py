"""The configuration file: every key validated, errors name the file and the key, defaults
embedded and documented by config.example.toml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.config import (
    DEFAULT_STORES,
    config_from_raw,
    default_ledger_path,
    default_vault_path,
    load_config,
    load_raw_config,
)
from agent.errors import ConfigError
from policy.category import Category
from policy.tiers import Tier

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    """A configuration file as an operator keeps one that may hold passwords: 0600."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_no_configuration_runs_on_embedded_defaults() -> None:
    config = load_config(None)
    assert config.source is None
    assert config.agent.stores == DEFAULT_STORES
    (store,) = config.agent.stores
    assert store.path == Path("/etc/letsencrypt/live")
    assert store.follow_links_into == (Path("/etc/letsencrypt/archive"),)
    assert config.agent.quiet_period_ms == 100
    assert config.agent.resync_interval_s == 3600
    assert config.agent.observer == "auto"
    assert config.agent.max_file_size == 10 * 1024 * 1024
    assert config.agent.host  # the machine's hostname
    assert config.policy.ledger == default_ledger_path()
    assert config.vault.path == default_vault_path()
    assert config.vault.key_source == "keyring"


def test_default_paths_follow_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    config = config_from_raw({})
    assert config.policy.ledger == tmp_path / "state" / "certescrow" / "ledger.sqlite3"
    assert config.vault.path == tmp_path / "data" / "certescrow" / "vault.sqlite3"


def test_config_example_documents_exactly_the_embedded_defaults() -> None:
    example = load_config(REPO / "config.example.toml")
    defaults = config_from_raw({})
    assert example.agent == defaults.agent
    assert example.vault == defaults.vault
    assert example.policy == defaults.policy


def test_config_example_mentions_every_key() -> None:
    from agent import config as module

    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    keys = (module._POLICY_KEYS + module._PRICES_KEYS + module._ITEM_PRICE_KEYS
            + module._VAULT_KEYS + module._AGENT_KEYS + module._STORE_KEYS)
    for key in keys:
        if key == "stores":
            assert "[[agent.stores]]" in text
            continue
        assert f"{key} =" in text or f"{key}." in text, key


def test_unknown_store_tier_names_file_key_and_choices(tmp_path: Path) -> None:
    message = error_of(tmp_path, """
[[agent.stores]]
path = "/srv/a"
[[agent.stores]]
path = "/srv/b"
tier = "7m"
""")
    assert message == (f'{tmp_path / "config.toml"}: agent.stores[1].tier: unknown tier "7m": '
                       "expected one of 6m, 1y, 2y, 3y, unlimited")


def test_misspelt_key_is_an_error_not_silently_ignored(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[[agent.stores]]\npath = "/srv/a"\nescrw = true\n')
    assert "config.toml: agent.stores[0].escrw: unknown key" in message
    assert "escrow" in message  # the known keys are listed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[agent]\nquiet_period_ms = \"300\"\n",
         "agent.quiet_period_ms: expected an integer, got a string"),
        ("[agent]\nmax_file_size = 0\n", "agent.max_file_size: must be at least 1"),
        ("[agent]\nresync_interval_s = true\n",
         "agent.resync_interval_s: expected an integer, got a boolean"),
        ("[agent]\nobserver = \"fanotify\"\n",
         'agent.observer: unknown value "fanotify": expected one of auto, inotify, polling'),
        ("[agent]\nlog_format = \"xml\"\n", "agent.log_format: unknown value \"xml\""),
        ("[agent]\nstores = \"/etc\"\n", "agent.stores: expected an array of tables"),
        ("[[agent.stores]]\ntier = \"1y\"\n", "agent.stores[0].path: missing"),
        ("[[agent.stores]]\npath = \"relative/dir\"\n",
         'agent.stores[0].path: "relative/dir" is not an absolute path'),
        ("[[agent.stores]]\npath = \"/a\"\ncategory = \"IV\"\n",
         'agent.stores[0].category: unknown category "IV"'),
        ("[[agent.stores]]\npath = \"/a\"\nescrow = \"yes\"\n",
         "agent.stores[0].escrow: expected true or false, got a string"),
        ("[[agent.stores]]\npath = \"/a\"\npkcs12_passwords = [1]\n",
         "agent.stores[0].pkcs12_passwords: expected a list of strings"),
        ("[[agent.stores]]\npath = \"/a\"\n[[agent.stores]]\npath = \"/a\"\n",
         'agent.stores[1].path: "/a" is already agent.stores[0]'),
        ("[vault]\nkey_source = \"tpm\"\n", 'vault.key_source: unknown value "tpm"'),
        ("[vault]\nkey_source = \"key-file\"\n", "vault.key_file: required when key_source"),
        ("[vault]\ncredential = \"../etc/shadow\"\n", "vault.credential:"),
        ("[vault]\nkeyring = \"x\"\n", "vault.keyring: unknown key"),
        ("[policy]\nnotice_lead_days = -1\n", "policy.notice_lead_days: must be at least 0"),
        ("[policy]\nledger = 3\n", "policy.ledger: expected a string, got an integer"),
        ("[policy]\nledger = \"host=db password=kv\"\n",
         "policy.ledger: a key=value connection string is not supported"),
        ("[policy]\nledger = \"postgresql:/db\"\n", "policy.ledger: a ledger location that is "
         "not a PostgreSQL URI"),
        ("[policy]\nledger = \"POSTGRESQL://u:pw@db/l\"\n", "policy.ledger: a ledger location "
         "that is not a PostgreSQL URI"),
        ("[policy.prices]\nchange_fee = 1.5\n",
         "policy.prices.change_fee: expected an integer, got a number"),
        ("[policy.prices]\ncurrency = \"JPY\"\n", "policy.prices.currency: unknown key"),
        ("[policy.prices.items.\"globalsign-ov\"]\ninitial = { \"7m\" = 1 }\n",
         'policy.prices.items."globalsign-ov".initial.7m: unknown key'),
        ("[policy.prices.items.\"globalsign-ov\"]\nagency = -5\n",
         "policy.prices.items.globalsign-ov.agency: expected a whole number of yen"),
        ("[agnet]\nhost = \"x\"\n", "agnet: unknown key"),
    ],
)
def test_bad_values_are_errors_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'config.toml'}: ")
    assert expected in message
    assert ("policy.ledger" in message) == ("policy.ledger" in expected)  # the key at fault


def test_a_postgres_ledger_keeps_its_dsn_and_the_daemon_state_stays_on_disk(
        tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[policy]\nledger = "postgresql:///ledger"\n'))
    assert config.policy.ledger == "postgresql:///ledger"  # no Path collapsed its //
    assert config.policy.state_dir == default_ledger_path().parent


def test_not_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[agent\n")
    assert message.startswith(f"{tmp_path / 'config.toml'}: not valid TOML")


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"configuration file .*nope\.toml does not exist"):
        load_raw_config(tmp_path / "nope.toml")


def test_store_binding_and_certbot_archive_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[agent]
host = "web1"
[[agent.stores]]
path = "/srv/certbot/live"
category = "iii"
tier = "6m"
contract = "C-1"
escrow = true
pkcs12_passwords = ["hunter2"]
[[agent.stores]]
path = "/srv/plain"
[[agent.stores]]
path = "/srv/other/live"
follow_links_into = []
"""))
    certbot, plain, explicit = config.agent.stores
    assert config.agent.host == "web1"
    assert certbot.follow_links_into == (Path("/srv/certbot/archive"),)
    assert certbot.binding.category is Category.III
    assert certbot.binding.tier is Tier.SIX_MONTHS
    assert certbot.binding.contract_id == "C-1"
    assert certbot.escrow
    assert plain.follow_links_into == ()
    assert plain.binding.is_empty
    assert explicit.follow_links_into == ()  # an explicit empty list is respected
    # Passwords never appear in a repr or in the printed configuration.
    assert "hunter2" not in repr(certbot)
    assert "hunter2" not in str(config.to_json())


def test_empty_store_list_watches_nothing(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[agent]\nstores = []\n"))
    assert config.agent.stores == ()


def test_home_is_expanded_in_paths(tmp_path: Path, isolated_environment: Path) -> None:
    config = load_config(write(tmp_path, '[policy]\nledger = "~/l.sqlite3"\n'))
    assert config.policy.ledger == isolated_environment / "l.sqlite3"


def test_prices_reach_policy_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[policy]
notice_lead_days = 60
[policy.prices]
change_fee = 3000
[policy.prices.items."globalsign-ov"]
initial = { "1y" = 50000 }
agency = 2000
"""))
    settings = config.policy.settings
    assert settings.notice_lead_days == 60
    assert settings.prices.change_fee == 3000
    assert settings.prices.initial_fee("globalsign-ov", Tier.ONE_YEAR) == 50000
    assert settings.prices.agency_fee("globalsign-ov") == 2000


def test_unknown_store_item_is_checked_against_the_catalogue(tmp_path: Path) -> None:
    message = error_of(tmp_path, '[[agent.stores]]\npath = "/a"\nitem = "globalsign-xx"\n')
    assert 'agent.stores[0].item: unknown item "globalsign-xx": expected one of' in message
    assert "globalsign-ov" in message
    ok = load_config(write(tmp_path, '[[agent.stores]]\npath = "/a"\nitem = "globalsign-ov"\n'))
    assert ok.agent.stores[0].item == "globalsign-ov"


def test_amended_catalogue_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    message = error_of(tmp_path, f'[policy]\ncatalogue = "{tmp_path}/missing.toml"\n')
    assert message.startswith(f"{tmp_path / 'config.toml'}: policy.catalogue: ")


def test_a_config_holding_pkcs12_passwords_must_not_be_readable_by_others(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[agent.stores]]\npath = "/srv/certs"\npkcs12_passwords = ["hunter2"]\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "agent.stores[0].pkcs12_passwords" in message
    assert "readable by others (mode 0644)" in message
    assert "chmod 600" in message
    assert "hunter2" not in message
    path.chmod(0o600)
    assert load_config(path).agent.stores[0].pkcs12_passwords == ("hunter2",)


@pytest.mark.parametrize("ledger", [
    "postgresql://desk:hunter2@db/ledger",
    "postgresql://db/ledger?sslmode=require&password=hunter2",
])
def test_a_config_holding_a_ledger_password_must_not_be_readable_by_others(
    tmp_path: Path, ledger: str,
) -> None:
    """The agent accepted a world-readable configuration whose PostgreSQL ledger DSN holds a
    password; only ``policy serve``'s configuration was checked (review 5)."""
    path = tmp_path / "config.toml"
    path.write_text(f'[policy]\nledger = "{ledger}"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "policy.ledger" in message
    assert "readable by others (mode 0644)" in message
    assert "hunter2" not in message
    path.chmod(0o600)
    assert load_config(path).policy.ledger == ledger
    path.write_text('[policy]\nledger = "postgresql://desk@db/ledger"\n')  # no password
    path.chmod(0o644)
    assert load_config(path).policy.ledger == "postgresql://desk@db/ledger"


def test_a_secret_config_may_be_group_readable_by_the_service_s_own_group_only(
    tmp_path: Path,
) -> None:
    # The install guide's root:certescrow 0640: the service user reads it through its group.
    path = tmp_path / "config.toml"
    path.write_text('[[agent.stores]]\npath = "/srv/certs"\npkcs12_passwords = ["hunter2"]\n')
    path.chmod(0o640)
    os.chown(path, -1, os.getegid())
    assert load_config(path).agent.stores[0].pkcs12_passwords == ("hunter2",)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file a group it is not in")
def test_a_secret_config_readable_by_another_group_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[agent.stores]]\npath = "/srv/certs"\npkcs12_passwords = ["hunter2"]\n')
    path.chmod(0o640)
    other_group = os.getegid() + 4242
    os.chown(path, -1, other_group)
    with pytest.raises(ConfigError, match=f"readable by group {other_group}, which this "
                                          "process does not run as"):
        load_config(path)


def test_a_config_without_secrets_may_be_world_readable(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[agent.stores]]\npath = "/srv/certs"\n')
    path.chmod(0o644)
    assert load_config(path).agent.stores[0].path == Path("/srv/certs")
