"""The one-shot ``certescrow scan`` and a file that goes between the walk's listing and its read
(certbot relinks ``live/`` with ``rm x; ln -s ...``): looked at once more, it is read if it is
there again, and skipped as ``vanished`` (information, not UNKNOWN) if it is gone. Each file the
walk listed is still accounted for. The race is made deterministic: the read function is
wrapped so that the file goes (and comes back) exactly between listing and reading."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import agent.scan
from agent.main import certescrow
from agent.reader import read_file
from agent.records import FileResult, ReadLimits
from agent.scan import scan_paths
from tests.certfactory import make_cert

NB = datetime(2026, 1, 15, 3, 0, 0, tzinfo=UTC)
AT = "2026-02-01T12:00:00"  # Asia/Tokyo


def _store(tmp_path: Path) -> tuple[Path, Path, Path]:
    """``live/x/{cert,other}.pem`` -> ``archive/x/...``: certbot's shape."""
    live, archive = tmp_path / "live" / "x", tmp_path / "archive" / "x"
    live.mkdir(parents=True)
    archive.mkdir(parents=True)
    for name, host in (("cert1.pem", "x.example"), ("other1.pem", "y.example")):
        (archive / name).write_bytes(
            make_cert(not_before=NB, lifetime=timedelta(days=300), sans=(host,)).pem)
    os.symlink("../../archive/x/cert1.pem", live / "cert.pem")
    os.symlink("../../archive/x/other1.pem", live / "other.pem")
    return live, live / "cert.pem", archive / "cert1.pem"


def _between_listing_and_reading(monkeypatch: pytest.MonkeyPatch, victim: Path,
                                 meanwhile: Callable[[], None]) -> list[str]:
    """Make ``meanwhile`` happen to ``victim`` right before its first read (after the walk
    listed it); returns the paths read, in order."""
    calls: list[str] = []

    def reader(path: Any, **kwargs: Any) -> FileResult:
        calls.append(str(path))
        if str(path) == str(victim) and calls.count(str(path)) == 1:
            victim.unlink()
            result = read_file(path, **kwargs)
            meanwhile()
            return result
        return read_file(path, **kwargs)

    monkeypatch.setattr(agent.scan, "read_file", reader)
    return calls


def test_a_listed_file_removed_before_its_read_is_skipped_as_vanished_not_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live, victim, _ = _store(tmp_path)
    _between_listing_and_reading(monkeypatch, victim, lambda: None)
    results = {Path(r.path).name: r for r in scan_paths([live], limits=ReadLimits())}
    assert set(results) == {"cert.pem", "other.pem"}  # every listed file accounted for
    gone = results["cert.pem"]
    assert gone.error is None
    assert not gone.certificates
    assert gone.skipped is not None
    assert (gone.skipped.code, gone.skipped.message) == ("vanished", "removed while the scan ran")
    assert results["other.pem"].certificates


def test_a_listed_file_relinked_before_its_read_is_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live, victim, target = _store(tmp_path)
    calls = _between_listing_and_reading(
        monkeypatch, victim, lambda: os.symlink("../../archive/x/cert1.pem", victim))
    results = {Path(r.path).name: r for r in scan_paths([live], limits=ReadLimits())}
    again = results["cert.pem"]
    assert again.error is None
    assert again.skipped is None
    assert [c.facts.sans for c in again.certificates] == [("x.example",)]
    assert calls.count(str(victim)) == 2  # looked at once more, not more
    assert target.exists()


def test_a_named_file_that_is_not_there_is_still_not_found(tmp_path: Path) -> None:
    (result,) = scan_paths([tmp_path / "missing.pem"], limits=ReadLimits())
    assert result.error is not None
    assert result.error.code == "not-found"
    assert result.skipped is None


def test_scan_exit_status_is_not_unknown_for_a_file_that_vanished_mid_scan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live, victim, _ = _store(tmp_path)
    _between_listing_and_reading(monkeypatch, victim, lambda: None)
    result = CliRunner().invoke(certescrow, ["scan", str(live), "--json", "--at", AT,
                                             "--category", "III", "--exit-status"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr  # OK: not 3 (UNKNOWN)
    items = json.loads(result.stdout)
    skipped = [i for i in items if i["kind"] == "skipped"]
    assert skipped == [{"kind": "skipped", "path": str(victim), "severity": "info",
                        "skipped": {"code": "vanished", "message": "removed while the scan ran"}}]
    assert not [i for i in items if i["kind"] == "error"]
    assert {i["path"] for i in items} == {str(victim), str(live / "other.pem")}
