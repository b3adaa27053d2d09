"""``agent run --once`` answers what ``scan`` answers on the same store (one row model, one
tally): the same exit status in every mode and the same findings on the same rows -- key files,
skipped files and errors included -- for real certbot-style stores, broken in the ways a host
breaks, with real processes. Run twice: the second ``--once`` starts from the persisted read
index (files unchanged since the first run are not read again) and must still agree."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agent.certbot_store import (
    AT,
    certbot_store,
    leaf_beside_expired_chain,
    make_intermediate,
)
from tests.certfactory import make_cert, shared_key
from tests.clirun import agent_config
from tests.clirun import certescrow as _certescrow

AT_TEXT = AT.isoformat().replace("+00:00", "Z")
_config = agent_config


def certescrow(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return _certescrow(*args, home=home, at=AT_TEXT, COLUMNS="100")


def healthy(base: Path) -> Path:
    return certbot_store(base).live


def world_readable_key(base: Path) -> Path:
    store = certbot_store(base)
    (store.root / "archive" / "example.jp" / "privkey2.pem").chmod(0o644)
    return store.live


def mismatched_key(base: Path) -> Path:
    return certbot_store(base, key_pem=make_cert(key=shared_key("ec", 12)).key_pem()).live


def expired_intermediate(base: Path) -> Path:
    intermediate = make_intermediate(not_after=datetime(2026, 1, 20, tzinfo=UTC), slot=41)
    leaf = make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                     sans=("example.jp",), issuer=intermediate)
    return certbot_store(base, leaf=leaf, intermediate=intermediate).live


def keyless_directory_with_expired_chain(base: Path) -> Path:
    """``cert.pem`` beside ``chain.pem`` and no key: the daemon reads the files one by one
    (not a certbot set), scan by directory; the chain is still the leaf's."""
    return leaf_beside_expired_chain(base, slot=42)


def unreadable_certificate(base: Path) -> Path:
    live = certbot_store(base).live
    (live / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                      b"-----END CERTIFICATE-----\n")
    return live


STORES: dict[str, Callable[[Path], Path]] = {
    "healthy": healthy,
    "privkey-0644": world_readable_key,
    "key-mismatch": mismatched_key,
    "expired-intermediate": expired_intermediate,
    "keyless-directory-expired-chain": keyless_directory_with_expired_chain,
    "unreadable-certificate": unreadable_certificate,
}
EXPECTED_HOST_EXIT = {"healthy": 0, "privkey-0644": 2, "key-mismatch": 2,
                      "expired-intermediate": 2, "keyless-directory-expired-chain": 2,
                      "unreadable-certificate": 3}


def _findings(obj: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    return tuple(sorted((f["code"], f["severity"], f["message"]) for f in obj["findings"]))


def _normalise(objects: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """What the operator relies on, object by object: the place, the role, the findings and
    actions for certificates; the findings for key files; the code for errors and skips."""
    out: set[tuple[Any, ...]] = set()
    for obj in objects:
        kind = obj["kind"]
        if kind == "certificate":
            out.add((kind, obj["path"], obj["index"], obj["role"], obj["key_matches"],
                     obj["severity"], _findings(obj),
                     tuple(sorted(a["action"] for a in obj["actions"]))))
        elif kind == "file":
            out.add((kind, obj["path"], obj["severity"], _findings(obj)))
        elif kind == "error":
            out.add((kind, obj["path"], obj.get("index"), obj["error"]["code"]))
        else:
            assert kind == "skipped", obj
            out.add((kind, obj["path"], obj["skipped"]["code"]))
    return out


def _once_objects(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [*summary["certificates"], *summary["key_files"], *summary["errors"],
            *summary["skipped"]]



def _compare(tmp_path: Path, root: Path, config: Path, mode: str, *,
             run: str) -> tuple[int, set[tuple[Any, ...]]]:
    """Scan and ``--once`` in ``mode``, both with ``--json``: the same exit status, the same
    objects."""
    scan = certescrow("scan", "--json", f"--exit-status={mode}", str(root), home=tmp_path)
    once = certescrow("--config", str(config), "agent", "run", "--once", "--json",
                      f"--exit-status={mode}", home=tmp_path)
    assert once.returncode == scan.returncode, (run, mode, scan.stdout, once.stdout,
                                                once.stderr)
    expected = _normalise(json.loads(scan.stdout))
    objects = _once_objects(json.loads(once.stdout))
    assert {o["store"] for o in objects if o["kind"] == "certificate"} == {str(root)}
    assert _normalise(objects) == expected, (run, mode)
    return scan.returncode, expected


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STORES))
def test_agent_run_once_answers_what_scan_answers(tmp_path: Path, name: str) -> None:
    root = STORES[name](tmp_path)
    config = _config(tmp_path, root)
    status, expected = _compare(tmp_path, root, config, "host", run="first")
    assert status == EXPECTED_HOST_EXIT[name]
    assert any(o[0] == "certificate" for o in expected)
    # the same table, then what only the daemon knows
    scan = certescrow("scan", "--exit-status", str(root), home=tmp_path)
    once = certescrow("--config", str(config), "agent", "run", "--once", "--exit-status",
                      home=tmp_path)
    assert (once.returncode, scan.returncode) == (status, status)
    assert once.stdout.startswith(scan.stdout.rstrip("\n")), (scan.stdout, once.stdout)
    # from the read index the second run keeps: unchanged files are not read again
    _compare(tmp_path, root, config, "host", run="from the read index")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["contract", "all"])
def test_agent_run_once_counts_each_mode_as_scan_does(tmp_path: Path, mode: str) -> None:
    root = world_readable_key(tmp_path)
    status, _ = _compare(tmp_path, root, _config(tmp_path, root), mode, run="first")
    # the key file counts for the host operator, the 90-day proviso for the contract desk
    assert status == {"contract": 1, "all": 2}[mode]


def test_a_world_readable_key_is_a_critical_key_file_row_in_once(tmp_path: Path) -> None:
    root = world_readable_key(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/ledger.sqlite3"\n'
                      f'[[agent.stores]]\npath = "{root}"\n')
    once = certescrow("--config", str(config), "agent", "run", "--once", "--exit-status",
                      home=tmp_path)
    assert once.returncode == 2, once.stdout + once.stderr
    assert "host status CRITICAL" in once.stdout
    assert "private-key-world-readable" in once.stdout
    assert str(root / "example.jp" / "privkey.pem") in once.stdout
    done = certescrow("--config", str(config), "agent", "run", "--once", "--json",
                      home=tmp_path)
    (key_file,) = json.loads(done.stdout)["key_files"]
    assert key_file["kind"] == "file"
    assert key_file["path"] == str(root / "example.jp" / "privkey.pem")
    codes = {f["code"]: f["severity"] for f in key_file["findings"]}
    assert codes["private-key-world-readable"] == "critical"
    assert key_file["severity"] == "critical"


@pytest.mark.parametrize("name", ["healthy", "unreadable-certificate"])
def test_without_exit_status_once_exits_as_scan_does(tmp_path: Path, name: str) -> None:
    """0 when every file was read, 1 when one could not be: ``--once`` exited 0 whatever it
    could not read (the attacker review of session 14), where docs/daemon.md promises scan's
    codes. Twice: the second run starts from the read index."""
    root = STORES[name](tmp_path)
    config = _config(tmp_path, root)
    scan = certescrow("scan", str(root), home=tmp_path)
    assert scan.returncode == {"healthy": 0, "unreadable-certificate": 1}[name]
    for run in ("first", "from the read index"):
        once = certescrow("--config", str(config), "agent", "run", "--once", home=tmp_path)
        assert once.returncode == scan.returncode, (run, once.stdout, once.stderr)
