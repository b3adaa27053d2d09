"""A real ``certescrow policy serve`` process over real mutual TLS on 127.0.0.1, with
certificates from a fleet CA: what it records, and every bad input it refuses without writing
anything."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.fleet_ca import issue_ca, issue_client_certificate, make_agent_csr
from tests.fleet.fleetkit import (
    NOW,
    Client,
    Fleet,
    observation,
    report,
    served_fleet,
)

SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One real service per backend: its ledger an SQLite file, or a PostgreSQL schema."""
    with served_fleet(tmp_path_factory.mktemp("fleet") / "desk", backend=request.param,
                      extra=lambda _: "max_body_bytes = 200000\nmax_observations = 50") as made:
        yield made


@pytest.fixture(autouse=True)
def _close_connections(fleet: Fleet) -> Iterator[None]:
    yield
    fleet.close_clients()


def test_a_report_is_recorded_and_its_replay_records_nothing(fleet: Fleet) -> None:
    client = fleet.client("replay-host")
    before = fleet.journal_count()
    body = report("replay-host", 1, [observation("/etc/ssl/a.pem", SHA_A)], outbox="o-replay")
    with_conn = fleet.connect(client)
    first = with_conn.request("POST", "/v1/report", body)
    second = with_conn.request("POST", "/v1/report", body)
    assert first.status == 200
    assert first.body == {"outbox": "o-replay", "sequence": 1, "recorded": 1, "replay": False}
    assert second.status == 200
    assert second.body["replay"] is True
    assert second.body["recorded"] == 0
    assert fleet.journal_count() == before + 1
    [recorded] = [o for o in fleet.observations() if o.host == "replay-host"]
    assert recorded.location == "/etc/ssl/a.pem"


def test_a_new_outbox_at_sequence_1_is_not_a_replay(fleet: Fleet) -> None:
    client = fleet.client("new-outbox-host")
    conn = fleet.connect(client)
    assert conn.request("POST", "/v1/report", report(
        "new-outbox-host", 1, [observation("/x.pem", SHA_A)], outbox="old")).body["recorded"] == 1
    second = conn.request("POST", "/v1/report", report(
        "new-outbox-host", 1, [observation("/y.pem", SHA_A)], outbox="new"))
    assert second.body == {"outbox": "new", "sequence": 1, "recorded": 1, "replay": False}


def test_the_host_recorded_is_the_certificates(fleet: Fleet) -> None:
    client = fleet.client("cert-host")
    conn = fleet.connect(client)
    assert conn.request("POST", "/v1/report", report(
        "cert-host", 1, [observation("/etc/ssl/c.pem", "c" * 64)])).status == 200
    assert any(o.host == "cert-host" and o.facts.sha256 == "c" * 64
               for o in fleet.observations())


def test_sql_breaking_strings_are_stored_verbatim(fleet: Fleet) -> None:
    client = fleet.client("sql-host")
    nasty = "x'); DROP TABLE journal; --\"\\ %_ \u202e 証明書"
    body = report("sql-host", 1, [observation(nasty, "d" * 64, subject=f"CN={nasty}",
                                              sans=(nasty,))])
    assert fleet.connect(client).request("POST", "/v1/report", body).status == 200
    [stored] = [o for o in fleet.observations() if o.host == "sql-host"]
    assert stored.location == nasty
    assert stored.facts.subject == f"CN={nasty}"
    assert stored.facts.sans == (nasty,)


def test_heartbeat_and_bindings(fleet: Fleet) -> None:
    client = fleet.client("beat-host")
    conn = fleet.connect(client)
    beat = conn.request("POST", "/v1/heartbeat", {
        "host": "beat-host", "at": "2026-11-27T00:00:00Z",
        "inventory": {"certificates": 3, "errors": 1, "by_severity": {"critical": 1, "ok": 2}}})
    assert beat.status == 200
    bindings = conn.request("GET", "/v1/bindings")
    assert bindings.body == {"host": "beat-host", "stores": []}
    out = subprocess.run(
        [sys.executable, "-m", "agent.main", "fleet", "hosts", "--json", "--ledger",
         str(fleet.ledger)], capture_output=True, check=True, cwd=Path(__file__).parents[2])
    hosts = {h["host"]: h for h in json.loads(out.stdout)["hosts"]}
    assert hosts["beat-host"]["inventory"]["by_severity"] == {"critical": 1, "ok": 2}
    assert hosts["beat-host"]["silent"] is False
    assert hosts["beat-host"]["client_certificate_not_after"] is not None


# ---------------------------------------------------------------------- refused, nothing written
def _refused(fleet: Fleet, client: Client | None, body: object, *, raw: bytes | None = None,
             ca_cert: bytes | None = None) -> int:
    before = fleet.journal_count()
    conn = fleet.connect(client, ca_cert=ca_cert)
    if raw is not None:
        import http.client

        https = http.client.HTTPSConnection("127.0.0.1", fleet.port, context=conn.context,
                                            timeout=10)
        try:
            https.request("POST", "/v1/report", body=raw,
                          headers={"Content-Type": "application/json"})
            status = https.getresponse().status
        except (OSError, http.client.HTTPException):
            status = 0
        finally:
            https.close()
    else:
        status = conn.request("POST", "/v1/report", body).status  # type: ignore[arg-type]
    assert fleet.journal_count() == before, "a refused request wrote to the ledger"
    return status


def test_no_client_certificate_is_refused(fleet: Fleet) -> None:
    # The TLS handshake itself fails (CERT_REQUIRED): no HTTP status at all.
    assert _refused(fleet, None, report("anon", 1, [observation("/a", SHA_A)])) == 0


def test_a_certificate_of_another_ca_is_refused(fleet: Fleet) -> None:
    other_key, other_cert = issue_ca(name="another CA", at=NOW - timedelta(days=1))
    key_pem, csr_pem = make_agent_csr(host="intruder")
    issued = issue_client_certificate(ca_key_pem=other_key, ca_cert_pem=other_cert,
                                      csr_pem=csr_pem, host="intruder",
                                      at=NOW - timedelta(minutes=1))
    intruder = Client(host="intruder", key_pem=key_pem, cert_pem=issued.pem,
                      serial=issued.serial)
    assert _refused(fleet, intruder, report("intruder", 1, [observation("/a", SHA_A)])) == 0


def test_an_expired_certificate_is_refused(fleet: Fleet) -> None:
    expired = fleet.client("expired-host", at=NOW - timedelta(days=40),
                           lifetime=timedelta(days=30))
    assert _refused(fleet, expired, report("expired-host", 1, [observation("/a", SHA_A)])) == 0


def test_a_certificate_the_desk_never_registered_is_refused(fleet: Fleet) -> None:
    unregistered = fleet.client("unregistered-host", register=False)
    assert _refused(fleet, unregistered,
                    report("unregistered-host", 1, [observation("/a", SHA_A)])) == 403


def test_revocation_takes_effect_on_the_next_request(fleet: Fleet) -> None:
    client = fleet.client("revoked-host")
    conn = fleet.connect(client)
    assert conn.request("POST", "/v1/report", report(
        "revoked-host", 1, [observation("/r1", SHA_A)])).status == 200
    subprocess.run([sys.executable, "-m", "agent.main", "fleet", "revoke", "revoked-host",
                    "--ledger", str(fleet.ledger)], check=True, capture_output=True,
                   cwd=Path(__file__).parents[2])
    # Same TLS connection, next request: refused.
    before = fleet.journal_count()
    refused = conn.request("POST", "/v1/report", report(
        "revoked-host", 2, [observation("/r2", SHA_B)]))
    assert refused.status == 403
    assert "revoked" in refused.body["error"]
    assert fleet.journal_count() == before
    assert conn.request("POST", "/v1/heartbeat", {
        "host": "revoked-host", "at": "2026-11-27T00:00:00Z", "inventory": {}}).status == 403


def test_a_report_for_another_host_is_403(fleet: Fleet) -> None:
    client = fleet.client("honest-host")
    assert _refused(fleet, client, report("victim-host", 1, [observation("/a", SHA_A)])) == 403
    heartbeat = fleet.connect(client).request("POST", "/v1/heartbeat", {
        "host": "victim-host", "at": "2026-11-27T00:00:00Z", "inventory": {}})
    assert heartbeat.status == 403


def test_malformed_json_is_400(fleet: Fleet) -> None:
    client = fleet.client("json-host")
    assert _refused(fleet, client, None, raw=b'{"host": "json-host", ') == 400
    assert _refused(fleet, client, None, raw=b"[" * 100_000) == 400


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(extra=1),
    lambda b: b["observations"][0].update(host="other"),
    lambda b: b["observations"][0]["facts"].update(evil=True),
    lambda b: b["observations"][0].update(binding={"contract_id": "C-1", "surprise": 1}),
    lambda b: b.update(sequence="1"),
    lambda b: b.update(sequence=0),
    lambda b: b["observations"][0]["facts"].update(sha256="Z" * 64),
    lambda b: b["observations"][0].update(location="a\x00b"),
    lambda b: b["observations"][0].update(observed_at="yesterday"),
], ids=["top", "observation", "facts", "binding", "type", "range", "sha256", "nul", "instant"])
def test_unknown_fields_and_wrong_types_are_400(fleet: Fleet, mutate: object) -> None:
    client = fleet.client("schema-host")
    body = report("schema-host", 1, [observation("/a", SHA_A)])
    mutate(body)  # type: ignore[operator]
    assert _refused(fleet, client, body) == 400


def test_an_oversized_body_is_413(fleet: Fleet) -> None:
    client = fleet.client("big-host")
    body = report("big-host", 1, [observation("/" + "x" * 4000, SHA_A, index=i)
                                  for i in range(49)])
    assert len(json.dumps(body)) > 200_000
    assert _refused(fleet, client, body) == 413


def test_too_many_observations_is_413(fleet: Fleet) -> None:
    client = fleet.client("many-host")
    body = report("many-host", 1, [observation(f"/{i}", SHA_A) for i in range(51)])
    assert _refused(fleet, client, body) == 413
    just_enough = report("many-host", 1, [observation(f"/{i}", SHA_A) for i in range(50)])
    assert fleet.connect(client).request("POST", "/v1/report", just_enough).status == 200



def test_renewal_is_off_without_the_ca_key(fleet: Fleet) -> None:
    client = fleet.client("no-renew-host")
    answer = fleet.connect(client).request("POST", "/v1/renew",
                                           {"host": "no-renew-host", "csr": "x"})
    assert answer.status == 501


def test_the_desk_assigns_bindings_the_host_fetches(fleet: Fleet) -> None:
    client = fleet.client("bound-host")
    added = subprocess.run(
        [sys.executable, "-m", "agent.main", "contract", "add", "C-7", "--item", "byo", "--tier",
         "1y", "--ledger", str(fleet.ledger)],
        capture_output=True, text=True, cwd=Path(__file__).parents[2], check=False)
    assert added.returncode == 0, added.stderr  # fleet assign names an existing contract
    done = subprocess.run(
        [sys.executable, "-m", "agent.main", "fleet", "assign", "bound-host", "/etc/ssl/shop",
         "--contract", "C-7", "--tier", "1y", "--ledger", str(fleet.ledger)],
        capture_output=True, text=True, cwd=Path(__file__).parents[2], check=False)
    assert done.returncode == 0, done.stderr
    answer = fleet.connect(client).request("GET", "/v1/bindings")
    assert answer.body == {"host": "bound-host", "stores": [{"store": "/etc/ssl/shop", "binding": {
        "category": None, "contract_id": "C-7", "item": None, "match_by_san": False,
        "tier": "1y"}}]}
    # Another host sees none of it.
    other = fleet.connect(fleet.client("unbound-host")).request("GET", "/v1/bindings")
    assert other.body["stores"] == []


def test_a_file_name_that_is_not_utf8_is_stored_exactly(fleet: Fleet) -> None:
    import os

    location = os.fsdecode(b"/etc/ssl/caf\xe9.pem")
    client = fleet.client("latin1-host")
    answer = fleet.connect(client).request("POST", "/v1/report", report(
        "latin1-host", 1, [observation(location, "e" * 64)]))
    assert answer.status == 200, answer.body
    [stored] = [o for o in fleet.observations() if o.host == "latin1-host"]
    assert stored.location == location
