"""The one JSON schema: the keys docs/agent.md documents are exactly the keys the commands print
(scan, inspect and the daemon's ``agent run --once`` share the objects)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.records import ReadLimits
from agent.report import build_report
from agent.scan import scan_paths
from policy.catalogue import load_catalogue
from policy.intake import Binding
from tests.agent.certbot_store import AT, certbot_store
from tests.agent.scan_fixtures import malformed_san_der, write
from tests.certfactory import make_cert

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent.md"
_MARKER = re.compile(r"<!-- json-keys: ([a-z]+) -->")


def documented_keys() -> dict[str, set[str]]:
    """``{kind: keys}`` from the tables under ``<!-- json-keys: KIND -->`` markers: the
    backticked names of each row's first cell."""
    out: dict[str, set[str]] = {}
    lines = DOC.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        match = _MARKER.fullmatch(line.strip())
        if match is None:
            continue
        keys: set[str] = set()
        for row in lines[n + 3:]:  # the header and the rule come first
            if not row.startswith("|"):
                break
            first = row.split("|")[1]
            keys.update(re.findall(r"`([a-z0-9_]+)`", first))
        out[match.group(1)] = keys
    return out


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    base = tmp_path_factory.mktemp("schema")
    store = certbot_store(base)  # leaves, intermediates, a key, READMEs (skipped)
    other = base / "other"
    write(other / "open.key", make_cert().key_pem(), 0o644)  # a key file with findings
    write(other / "cut.pem", b"-----BEGIN CERTIFICATE-----\nMIIB\n")  # a file-level error
    bad = (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(malformed_san_der())
           + b"-----END CERTIFICATE-----\n")
    write(other / "mixed.pem", make_cert().pem + bad)  # an error with its index
    write(other / "keyed.pem", make_cert().pem + b"-----BEGIN PRIVATE KEY-----\nAAAA\n"
          b"-----END PRIVATE KEY-----\n", 0o600)  # an error with its key_index
    results = scan_paths([store.live, other], limits=ReadLimits())
    report = build_report(results, load_catalogue(), binding=Binding(), at=AT)
    return report.to_json()


def _nested(objects: list[dict[str, Any]], key: str) -> Iterator[dict[str, Any]]:
    for obj in objects:
        yield from obj.get(key, [])


def test_the_document_has_a_table_for_every_kind() -> None:
    assert set(documented_keys()) == {"certificate", "finding", "action", "file", "error",
                                      "skipped"}


@pytest.mark.parametrize("kind", ["certificate", "file", "error", "skipped"])
def test_documented_keys_are_the_emitted_keys(emitted: list[dict[str, Any]], kind: str) -> None:
    objects = [o for o in emitted if o["kind"] == kind]
    assert objects, kind
    union = set().union(*(set(o) for o in objects))
    assert union == documented_keys()[kind]


def test_documented_finding_and_action_keys_are_the_emitted_ones(
        emitted: list[dict[str, Any]]) -> None:
    certificates = [o for o in emitted if o["kind"] == "certificate"]
    findings = list(_nested(certificates, "findings"))
    actions = list(_nested(certificates, "actions"))
    assert findings
    assert actions
    assert set().union(*(set(f) for f in findings)) == documented_keys()["finding"]
    assert set().union(*(set(a) for a in actions)) == documented_keys()["action"]


def test_the_daemon_prints_the_same_certificate_objects(
        tmp_path: Path, emitted: list[dict[str, Any]]) -> None:
    from agent.config import config_from_raw
    from agent.daemon import Daemon
    from agent.logs import EventLog, configure_logging
    from agent.sdnotify import Notifier
    from policy.ledger import Ledger

    store = certbot_store(tmp_path)
    config = config_from_raw({"policy": {"ledger": str(tmp_path / "l.sqlite3")},
                              "agent": {"stores": [{"path": str(store.live)}]}})
    with Ledger.open(config.policy.ledger) as ledger:
        daemon = Daemon(config, intake=ledger, clock=lambda: AT, notifier=Notifier(""),
                        log=EventLog(configure_logging("json")))
        try:
            summary = daemon.full_scan(collect=True)
        finally:
            daemon.shutdown()
    rows = summary.to_json()["certificates"]
    assert rows
    for row in rows:
        assert set(row) == documented_keys()["certificate"]
        assert row["store"] == str(store.live)
        assert "#" not in row["path"]
