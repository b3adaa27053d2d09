"""An `--at` ahead of the real clock on the desk's commands that write (review 1 of the fleet
desk): `fleet sign --at tomorrow` issued a certificate not valid yet, with no word, and
superseded the host's working certificate with it (the host locked out until then), and
`fleet hosts` then hid the host from its default view as "enrolled after now". A writer now
refuses a future --at as `agent run` does (usage error, exit 2, naming both times, nothing
written); the default listing hides no host. Real processes, a real vault and ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from policy.fleet_registry import FleetRegistry, IssuedRecord
from tests.fleet.fleetkit import run_desk


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)  # noqa: TID251 - against the real clock




@pytest.fixture
def desk(tmp_path: Path) -> Path:
    """A fleet CA and web06 signed into the ledger (its working certificate)."""
    vault = str(tmp_path / "desk.sqlite3")
    for args in (["fleet", "ca", "init", "--vault", vault],
                 ["agent", "enroll", "--host", "web06", "--vault", str(tmp_path / "h.sqlite3"),
                  "--csr-out", str(tmp_path / "a.csr")],
                 ["agent", "enroll", "--host", "web06", "--vault", str(tmp_path / "h.sqlite3"),
                  "--csr-out", str(tmp_path / "b.csr")],
                 ["fleet", "sign", str(tmp_path / "a.csr"), "--host", "web06", "--vault",
                  vault, "--ledger", str(tmp_path / "ledger.sqlite3"), "--out",
                  str(tmp_path / "good.pem")]):
        done = run_desk(args, tmp_path)
        assert done.returncode == 0, done.stderr
    return tmp_path


def _registered(ledger: Path) -> tuple[datetime | None, datetime | None, int]:
    """web06's enrolment, its last revocation (a supersession included) and the hosts."""
    with FleetRegistry.open(str(ledger)) as registry:
        return (registry.enrolled("web06"), registry.last_revoked("web06"),
                len(registry.hosts(at=_now(), silent_after=timedelta(seconds=1))))


def test_writers_refuse_a_future_at_and_write_nothing(desk: Path) -> None:
    tomorrow = (_now() + timedelta(days=1)).isoformat()
    ledger = desk / "ledger.sqlite3"
    before = _registered(ledger)
    assert before[1] is None
    vault = ["--vault", str(desk / "desk.sqlite3")]
    for args in (["fleet", "sign", str(desk / "b.csr"), "--host", "web06", *vault,
                  "--ledger", str(ledger), "--out", str(desk / "late.pem")],
                 ["fleet", "server-cert", "127.0.0.1", "--out", str(desk / "s.pem"), *vault],
                 ["fleet", "revoke", "web06", "--ledger", str(ledger)],
                 ["fleet", "ca", "init", "--vault", str(desk / "other.sqlite3")]):
        done = run_desk([*args, "--at", tomorrow], desk)
        assert done.returncode == 2, (args, done.stderr)
        assert "is in the future (now " in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert _registered(ledger) == before  # the working certificate is not superseded
    assert not (desk / "late.pem").exists()
    assert not (desk / "s.pem").exists()
    assert not (desk / "other.sqlite3").exists()


def test_the_default_hosts_listing_hides_no_host(desk: Path) -> None:
    """A host whose certificate starts after now (signed with a future --at before the
    refusal, or a clock ahead) is listed by default; --at before its enrolment leaves it
    out, as documented."""
    ledger = desk / "ledger.sqlite3"
    ahead = _now() + timedelta(days=2)
    with FleetRegistry.open(str(ledger)) as registry:
        registry.record_certificate(IssuedRecord(
            host="web07", serial="77", not_before_utc=ahead,
            not_after_utc=ahead + timedelta(days=30)), at=_now())
    listed = run_desk(["fleet", "hosts", "--ledger", str(ledger), "--json"], desk)
    assert listed.returncode == 0, listed.stderr
    assert [h["host"] for h in json.loads(listed.stdout)["hosts"]] == ["web06", "web07"]
    table = run_desk(["fleet", "hosts", "--ledger", str(ledger)], desk)
    assert "web07" in table.stdout
    earlier = run_desk(["fleet", "hosts", "--ledger", str(ledger), "--json", "--at",
                    (_now() + timedelta(days=1)).isoformat()], desk)
    assert earlier.returncode == 0, earlier.stderr
    assert [h["host"] for h in json.loads(earlier.stdout)["hosts"]] == ["web06"]
