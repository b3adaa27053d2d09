"""What an enrolled host can and cannot make ``policy serve`` record, on a real service over real
mutual TLS (both ledger backends): only the bindings the desk assigned it, only instants its
host can have seen, only text a database can hold; and a renewal that really replaces the
certificate it renews (issue 13, a reviewer's findings at 255159c)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.fleet_ca import make_agent_csr
from agent.fleet_client import OutboxIntake
from agent.logs import EventLog, _Formatter
from agent.outbox import Outbox
from agent.x509facts import facts_from_certificate
from policy.events import instant_to_text
from policy.fleet_registry import FleetRegistry
from policy.intake import Binding, Observation
from policy.ledger import Ledger
from tests.certfactory import make_cert
from tests.fleet.fleetkit import (
    NOW,
    Client,
    Fleet,
    observation,
    report,
    run_desk,
    served_fleet,
)

REPO = Path(__file__).resolve().parents[2]
SHA = "5" * 64


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with served_fleet(tmp_path_factory.mktemp("security") / "desk", backend=request.param,
                      extra=lambda made: f'ca_key = "{made.ca_key_id}"\nrenewal_grace_s = 0'
                      ) as made:
        yield made


@pytest.fixture(autouse=True)
def _close_connections(fleet: Fleet) -> Iterator[None]:
    yield
    fleet.close_clients()


def _bound(location: str, contract: str, sha: str = SHA, **when: Any) -> dict[str, Any]:
    made = observation(location, sha)
    made["binding"] = {"contract_id": contract}
    made.update(when)
    return made


def _journal(fleet: Fleet, contract: str) -> list[tuple[str, str]]:
    with Ledger.open(fleet.ledger) as ledger:
        return [(e.event.host, e.event.location) for e in ledger.journal(contract)
                if hasattr(e.event, "location")]


@contextlib.contextmanager
def _agent_log(name: str) -> Iterator[tuple[EventLog, io.StringIO]]:
    """An agent event log written as the daemon writes its text lines, into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter("text", journal=False))
    logger = logging.getLogger(f"certescrow.agent.{name}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield EventLog(logger), stream
    finally:
        logger.removeHandler(handler)


def _unbound(fleet: Fleet, host: str) -> set[str]:
    return {o.location for o in fleet.observations() if o.host == host}


# ---------------------------------------------------------------------- 1. bindings and time
def test_a_binding_the_desk_did_not_assign_is_recorded_unbound(fleet: Fleet) -> None:
    from tests.policy.ledger_fixtures import accepted

    with Ledger.open(fleet.ledger) as ledger:  # the desk's contract (one the ledger holds)
        ledger.append(accepted("C-SHOP"))
    with FleetRegistry.open(fleet.ledger) as registry:
        registry.assign(host="shop-web01", store="/etc/ssl/shop/",
                        binding={"contract_id": "C-SHOP"})
    web01 = fleet.connect(fleet.client("shop-web01"), timeout_s=60)  # a loaded machine
    answer = web01.request("POST", "/v1/report", report("shop-web01", 1, [
        _bound("/etc/ssl/shop/a.pem", "C-SHOP"),          # assigned: bound
        _bound("/etc/ssl/shop/b.pem", "C-2026-0042"),     # another customer's contract
        _bound("/etc/ssl/other/c.pem", "C-SHOP"),         # a store the desk did not assign
        _bound("/etc/ssl/shopping/d.pem", "C-SHOP"),      # not under /etc/ssl/shop/
    ], outbox="o-bind"))
    assert answer.status == 200, answer.body
    assert answer.body["recorded"] == 4
    assert answer.body["unassigned"] == [
        {"location": "/etc/ssl/shop/b.pem", "contract_id": "C-2026-0042"},
        {"location": "/etc/ssl/other/c.pem", "contract_id": "C-SHOP"},
        {"location": "/etc/ssl/shopping/d.pem", "contract_id": "C-SHOP"}]
    assert _journal(fleet, "C-SHOP") == [("shop-web01", "/etc/ssl/shop/a.pem")]
    assert _journal(fleet, "C-2026-0042") == []
    assert _unbound(fleet, "shop-web01") == {"/etc/ssl/shop/b.pem", "/etc/ssl/other/c.pem",
                                             "/etc/ssl/shopping/d.pem"}
    # Another host claiming the store's contract for the same path: not its assignment.
    web02 = fleet.connect(fleet.client("shop-web02"), timeout_s=60)
    other = web02.request("POST", "/v1/report", report("shop-web02", 1, [
        _bound("/etc/ssl/shop/a.pem", "C-SHOP", sha="6" * 64)], outbox="o-bind2"))
    assert other.status == 200
    assert [u["contract_id"] for u in other.body["unassigned"]] == ["C-SHOP"]
    assert _journal(fleet, "C-SHOP") == [("shop-web01", "/etc/ssl/shop/a.pem")]


def test_the_agent_logs_once_a_batch_what_the_service_recorded_unbound(
        fleet: Fleet, tmp_path: Path) -> None:
    # The agent's side of the test above: its outbox, its client, its log formatter. A local
    # binding on a store the desk did not assign is named in the acknowledgement; the agent
    # says so once for the batch, the file names escaped (they are whoever made the file's).
    host = "unassigned-web01"
    hostile = "/etc/ssl/local/\x1b[2Jevil\n.pem"
    facts = facts_from_certificate(make_cert().cert).facts
    with _agent_log("test-unassigned") as (log, stream), \
            Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, host=host, clock=lambda: NOW,
                              client=fleet.connect(fleet.client(host), timeout_s=60), log=log)
        intake.report([Observation(facts=facts, host=host, location=location, index=0,
                                   observed_at_utc=NOW, binding=Binding(contract_id="C-LOCAL"))
                       for location in (hostile, "/etc/ssl/local/b.pem")], at=NOW)
        assert intake.drain() == 1
    written = stream.getvalue()
    [line] = [line for line in written.splitlines() if "report-unassigned" in line]
    assert line.startswith("warning report-unassigned: the policy service recorded 2 "
                           "observation(s) of batch 1 unbound")
    assert ("(contract C-LOCAL: /etc/ssl/local/\\u001b[2Jevil\\n.pem, /etc/ssl/local/b.pem)"
            in line)
    assert "\x1b" not in written
    assert _unbound(fleet, host) == {hostile, "/etc/ssl/local/b.pem"}


def test_an_observation_the_ledger_cannot_count_from_is_said_refused_not_dropped_silently(
        fleet: Fleet, tmp_path: Path) -> None:
    """A certificate dated 0001-01-01 passed the wire checks; the ledger refused it (as the
    local ledger does: no period can be counted from it) and the service answered
    ``recorded: 0`` and nothing else, so the agent deleted the batch in silence (review 12).
    The answer counts it, the service logs it, the agent says so once for the batch."""
    from dataclasses import replace as replaced
    from datetime import UTC, datetime

    host = "refused-web01"
    good = facts_from_certificate(make_cert().cert).facts
    ancient = replaced(good, sha256="6" * 64,
                       not_before_utc=datetime(1, 1, 1, tzinfo=UTC),
                       not_after_utc=datetime(1, 1, 1, tzinfo=UTC))
    client = fleet.connect(fleet.client(host), timeout_s=60)
    with _agent_log("test-refused") as (log, stream), \
            Outbox.open(tmp_path / "outbox.sqlite3") as outbox:
        intake = OutboxIntake(outbox=outbox, host=host, clock=lambda: NOW, client=client,
                              log=log)
        intake.report([Observation(facts=facts, host=host, location=f"/etc/ssl/{n}.pem",
                                   index=0, observed_at_utc=NOW)
                       for n, facts in (("good", good), ("ancient", ancient))], at=NOW)
        assert intake.drain() == 1
        assert outbox.status().pending_batches == 0  # a retry would be refused the same
    [line] = [line for line in stream.getvalue().splitlines()
              if "report-refused-observations" in line]
    assert "did not record 1 observation(s) of batch 1" in line
    assert "dates-out-of-range" in line
    assert _unbound(fleet, host) == {"/etc/ssl/good.pem"}
    answer = client.request("POST", "/v1/report", report(host, 1, [observation(
        "/etc/ssl/ancient.pem", "7" * 64)], outbox="direct") | {"observations": [
            {**observation("/etc/ssl/ancient.pem", "7" * 64),
             "facts": {"sha256": "7" * 64, "not_before": "0001-01-01T00:00:00Z",
                       "not_after": "0001-01-01T00:00:00Z"}}]})
    assert answer.status == 200
    assert (answer.body["recorded"], answer.body["refused"]) == (0, 1)


@pytest.mark.parametrize(("field", "instant"), [
    ("observed_at", "1970-01-01T00:00:00Z"),
    ("observed_at", "2099-01-01T00:00:00Z"),
    ("observed_at", instant_to_text(NOW + timedelta(hours=1))),
    ("gone", "2099-01-01T00:00:00Z"),
    ("at", "2099-01-01T00:00:00Z"),
])
def test_instants_the_host_cannot_have_seen_are_400_and_write_nothing(
        fleet: Fleet, field: str, instant: str) -> None:
    client = fleet.client("time-host")
    body = report("time-host", 1, [observation("/t.pem", SHA)], outbox=f"o-{field}{instant}")
    if field == "observed_at":
        body["observations"][0]["observed_at"] = instant
    elif field == "gone":
        body["gone"] = [{"location": "/gone.pem", "at": instant}]
    else:
        body["at"] = instant
    before = fleet.journal_count()
    answer = fleet.connect(client).request("POST", "/v1/report", body)
    assert answer.status == 400, answer.body
    assert ("observed_at" if field == "observed_at" else f"body.{field}") in answer.body["error"]
    assert fleet.journal_count() == before


def test_instants_from_enrolment_to_now_plus_skew_are_taken(fleet: Fleet) -> None:
    fleet.client("renewed-host", at=NOW - timedelta(days=10))  # its first certificate
    current = fleet.client("renewed-host")  # issued minutes ago (a renewal)
    conn = fleet.connect(current)
    body = report("renewed-host", 1, [
        _at(observation("/old.pem", SHA), NOW - timedelta(days=3)),  # queued before renewal
        _at(observation("/skew.pem", SHA), NOW + timedelta(minutes=2))], outbox="o-ok")
    answer = conn.request("POST", "/v1/report", body)
    assert answer.status == 200, answer.body
    assert answer.body["recorded"] == 2
    too_old = conn.request("POST", "/v1/report", report("renewed-host", 2, [
        _at(observation("/older.pem", SHA), NOW - timedelta(days=11))], outbox="o-ok"))
    assert too_old.status == 400
    assert "enrolled" in too_old.body["error"]


def _at(made: dict[str, Any], when: Any) -> dict[str, Any]:
    made["observed_at"] = instant_to_text(when)
    return made


# ---------------------------------------------------------------------- 2. text
@pytest.mark.parametrize(("where", "mutate"), [
    ("body.observations[0].location",
     lambda b: b["observations"][0].update(location="/curl/\ud800bad")),
    ("body.observations[0].location",  # surrogates os.fsdecode never makes (they are é)
     lambda b: b["observations"][0].update(location="/caf\udcc3\udca9.pem")),
    ("body.observations[0].facts.subject",
     lambda b: b["observations"][0]["facts"].update(subject="CN=\udce9")),
    ("body.observations[0].facts.sans[0]",
     lambda b: b["observations"][0]["facts"].update(sans=["\ud83d"])),
    ("body.observations[0].binding.contract_id",
     lambda b: b["observations"][0].update(binding={"contract_id": "C-\udfff"})),
    ("body.gone[0].location", lambda b: b.update(gone=[{"location": "/\ud800",
                                                         "at": instant_to_text(NOW)}])),
    ("body.outbox", lambda b: b.update(outbox="\ud800")),
], ids=["location", "not-fsdecode", "subject", "san", "contract", "gone", "outbox"])
def test_a_lone_surrogate_is_400_naming_the_field(fleet: Fleet, where: str,
                                                  mutate: Any) -> None:
    client = fleet.client("surrogate-host")
    body = report("surrogate-host", 1, [observation("/s.pem", SHA)])
    mutate(body)
    before = fleet.journal_count()
    answer = fleet.connect(client).request("POST", "/v1/report", body)
    assert answer.status == 400, answer.body
    assert where in answer.body["error"]
    assert fleet.journal_count() == before


def test_lone_surrogates_in_heartbeats_and_renewals_are_400(fleet: Fleet) -> None:
    client = fleet.client("surrogate-beat")
    conn = fleet.connect(client)
    for inventory, where in [({"agent_version": "1.\ud800"}, "body.inventory.agent_version"),
                             ({"by_severity": {"\ud800": 1}}, "body.inventory.by_severity")]:
        answer = conn.request("POST", "/v1/heartbeat", {
            "host": "surrogate-beat", "at": instant_to_text(NOW), "inventory": inventory})
        assert answer.status == 400, answer.body
        assert where in answer.body["error"]
    renew = conn.request("POST", "/v1/renew", {"host": "surrogate-beat\ud800", "csr": "x"})
    assert renew.status == 400
    assert "body.host" in renew.body["error"]


def test_a_heartbeat_counts_only_the_severities_an_agent_sends(fleet: Fleet) -> None:
    """``"\\u001b[2Jpwn\\u202e": 7`` was stored and shown by ``fleet hosts --json``: a key
    other than a severity's name, or a count no agent sends, is a 400 that names the field,
    and nothing of it is stored."""
    client = fleet.client("severity-beat")
    conn = fleet.connect(client)

    def beat(**inventory: Any) -> Any:
        return conn.request("POST", "/v1/heartbeat", {
            "host": "severity-beat", "at": instant_to_text(NOW), "inventory": inventory})

    good = beat(certificates=3, by_severity={"ok": 1, "critical": 2})
    assert good.status == 200, good.body
    for inventory, said in [
            ({"certificates": 7, "by_severity": {"\x1b[2Jpwn\u202e": 7}},
             "body.inventory.by_severity: a key other than ok, info, warning, critical"),
            ({"by_severity": {"Warning": 1}}, "a key other than ok, info, warning, critical"),
            ({"by_severity": {"critical": -1}}, "body.inventory.by_severity.critical: out of "
                                                "range"),
            ({"by_severity": {"critical": 1 << 41}}, "body.inventory.by_severity.critical"),
            ({"by_severity": {"ok": "7"}}, "body.inventory.by_severity.ok: expected an integer"),
            ({"certificates": 2, "by_severity": {"ok": 2, "warning": 1}},
             "counts more certificates than body.inventory.certificates")]:
        answer = beat(**inventory)
        assert answer.status == 400, (inventory, answer.body)
        assert said in answer.body["error"]
        assert "pwn" not in answer.body["error"]
    listed = run_desk(["fleet", "hosts", "--json", "--ledger", fleet.ledger], fleet.root)
    assert listed.returncode == 0, listed.stderr
    (host,) = [h for h in json.loads(listed.stdout)["hosts"] if h["host"] == "severity-beat"]
    assert host["inventory"]["by_severity"] == {"ok": 1, "critical": 2}


def test_a_file_name_that_is_not_utf8_still_round_trips(fleet: Fleet) -> None:
    location = os.fsdecode(b"/etc/ssl/\xff\xfe-caf\xe9.pem")
    client = fleet.client("bytes-host")
    answer = fleet.connect(client).request("POST", "/v1/report", report(
        "bytes-host", 1, [observation(location, SHA)], gone=[
            {"location": os.fsdecode(b"/old/\xe9"), "at": instant_to_text(NOW)}]))
    assert answer.status == 200, answer.body
    assert _unbound(fleet, "bytes-host") == {location}


# ---------------------------------------------------------------------- 3. renewal
def _renew(conn: Any, host: str, csr: bytes) -> Any:
    return conn.request("POST", "/v1/renew", {"host": host, "csr": csr.decode()})


def _csr_of(key_pem: bytes, host: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(key_pem, password=None)
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .sign(key, hashes.SHA256())  # type: ignore[arg-type]
            .public_bytes(serialization.Encoding.PEM))


def test_a_renewal_needs_a_new_key_and_supersedes_the_old_certificate(fleet: Fleet) -> None:
    old = fleet.client("renew-key-host")
    conn = fleet.connect(old)
    same = _renew(conn, "renew-key-host", _csr_of(old.key_pem, "renew-key-host"))
    assert same.status == 409, same.body
    assert "new key" in same.body["error"]
    # The refused renewal left the certificate it would have renewed alone.
    assert conn.request("GET", "/v1/bindings").status == 200

    new_key, csr = make_agent_csr(host="renew-key-host")
    renewed = _renew(conn, "renew-key-host", csr)
    assert renewed.status == 200, renewed.body
    # renewal_grace_s = 0: the old certificate is refused from its next request on.
    refused = conn.request("GET", "/v1/bindings")
    assert refused.status == 403
    assert "superseded" in refused.body["error"]
    fresh = Client(host="renew-key-host", key_pem=new_key,
                   cert_pem=renewed.body["certificate"].encode(), serial="")
    assert fleet.connect(fresh).request("GET", "/v1/bindings").status == 200


def test_the_grace_of_a_superseded_certificate_ends(fleet: Fleet) -> None:
    first = fleet.client("grace-host")
    second = fleet.client("grace-host")
    from policy.fleet_registry import IssuedRecord

    with FleetRegistry.open(fleet.ledger) as registry:
        record = IssuedRecord(host="grace-host", serial=second.serial,
                              not_before_utc=NOW, not_after_utc=NOW + timedelta(days=30))
        assert registry.record_certificate(record, at=NOW,
                                           supersede_at=NOW + timedelta(hours=1)) is None
        assert registry.refusal(host="grace-host", serial=first.serial,
                                at=NOW + timedelta(minutes=59)) is None
        assert "superseded" in (registry.refusal(host="grace-host", serial=first.serial,
                                                 at=NOW + timedelta(hours=1)) or "")
        assert registry.refusal(host="grace-host", serial=second.serial,
                                at=NOW + timedelta(days=2)) is None
        # fleet revoke ends the grace at once.
        assert registry.revoke_host("grace-host", at=NOW) == 2
        assert registry.refusal(host="grace-host", serial=first.serial, at=NOW) is not None


@pytest.mark.slow
def test_fleet_sign_refuses_the_key_of_a_revoked_certificate(tmp_path: Path) -> None:
    desk, host = tmp_path / "desk", tmp_path / "host"
    desk.mkdir(mode=0o700)
    host.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    env["CERTESCROW_VAULT_KEY_FILE"] = str(desk / "vault.key")
    ledger = str(desk / "ledger.sqlite3")
    Ledger.open(ledger).close()
    vault = ["--vault", str(desk / "vault.sqlite3")]
    _, csr = make_agent_csr(host="web01")
    (host / "web01.csr").write_bytes(csr)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent.main", *args], env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)

    assert run("fleet", "ca", "init", *vault).returncode == 0
    sign = ("fleet", "sign", str(host / "web01.csr"), "--host", "web01", *vault,
            "--ledger", ledger)
    done = run(*sign, "--out", str(desk / "1.pem"))
    assert done.returncode == 0, done.stderr
    assert run("fleet", "revoke", "web01", "--ledger", ledger).returncode == 0
    again = run(*sign, "--out", str(desk / "2.pem"))
    assert again.returncode == 41, again.stderr
    assert "revoked" in again.stderr
    assert "Traceback" not in again.stderr
    assert not (desk / "2.pem").exists()
    # A new key (a new `agent enroll`) is signed.
    _, fresh = make_agent_csr(host="web01")
    (host / "web01.csr").write_bytes(fresh)
    assert run(*sign, "--out", str(desk / "3.pem")).returncode == 0


def test_a_location_of_4_kb_is_recorded(fleet: Fleet) -> None:
    """A file path of a few KB overflowed PostgreSQL's index on sightings: the certificate
    there was never recorded (session 10: sightings are keyed by the location's digest)."""
    import secrets

    client = fleet.client("deep-host")
    deep = "/srv/" + "/".join(secrets.token_hex(16) for _ in range(120)) + "/cert.pem"
    assert 2800 < len(deep) <= 4096  # past a B-tree entry, within the wire's limit
    body = report("deep-host", 1, [observation("/ok.pem", SHA), observation(deep, SHA)],
                  outbox="o-deep")
    answer = fleet.connect(client).request("POST", "/v1/report", body)
    assert answer.status == 200, answer.body
    assert answer.body["recorded"] == 2
    with Ledger.open(fleet.ledger) as ledger:
        assert deep in [loc for loc, _, _ in ledger.open_sightings("deep-host")]


def test_a_value_the_ledger_refuses_is_422_and_writes_nothing(fleet: Fleet) -> None:
    """A value PostgreSQL refuses for what it is (SQLSTATE 54000; before session 10, a path too
    long for the sightings index): the service answered 503 ("the ledger is unavailable") for
    ever, so the agent resent the batch for ever (review 4). It is 422, nothing of the batch
    written, and the agent sends the batch's observations apart (tests/fleet/test_outbox.py).
    The refusal is made by a trigger (tests/pgdb.py): no real value has it now."""
    if not fleet.ledger.startswith("postgresql://"):
        pytest.skip("a PostgreSQL refusal")
    from tests.pgdb import refuse_locations_containing

    refuse_locations_containing(fleet.ledger, "/refused-by-test/")
    client = fleet.client("refused-host")
    body = report("refused-host", 1, [observation("/ok.pem", SHA),
                                      observation("/refused-by-test/c.pem", SHA)],
                  outbox="o-refused")
    before = fleet.journal_count()
    answer = fleet.connect(client).request("POST", "/v1/report", body)
    assert answer.status == 422, answer.body
    assert "nothing of it was written" in answer.body["error"]
    assert fleet.journal_count() == before
    alone = fleet.connect(client).request("POST", "/v1/report", report(
        "refused-host", 2, [observation("/ok.pem", SHA)], outbox="o-refused"))
    assert alone.status == 200, alone.body
