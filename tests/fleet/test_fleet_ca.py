"""The fleet CA's certificates (identity is the desk's choice, never the CSR's), the forwarded
certificate check of proxy mode, and the enrolment commands end to end: no private key ever
lands on disk in the clear."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.fleet_ca import (
    FleetCAError,
    IssuedCertificate,
    identity_from_pem,
    issue_ca,
    issue_client_certificate,
    issue_server_certificate,
    make_agent_csr,
)
from vault import KeyFileSource, open_vault

AT = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return issue_ca(name="fleet CA", at=AT - timedelta(days=1))


def test_the_host_is_the_desks_choice_not_the_csrs(ca: tuple[bytes, bytes]) -> None:
    _, csr = make_agent_csr(host="i-claim-to-be-the-desk")
    issued = issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1], csr_pem=csr,
                                      host="web01", at=AT)
    cert = x509.load_pem_x509_certificate(issued.pem)
    assert [a.value for a in cert.subject] == ["web01"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web01"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30)
    assert issued.serial == format(cert.serial_number, "x")


def test_a_tampered_csr_is_refused(ca: tuple[bytes, bytes]) -> None:
    _, csr = make_agent_csr(host="web01")
    other_key, _ = make_agent_csr(host="web02")
    # Re-sign the CSR's content with another key: the signature no longer verifies.
    from cryptography.hazmat.primitives import hashes, serialization

    loaded = x509.load_pem_x509_csr(csr)
    key = serialization.load_pem_private_key(other_key, password=None)
    forged = (x509.CertificateSigningRequestBuilder().subject_name(loaded.subject)
              .sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    der = bytearray(forged.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # flip a bit of the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(FleetCAError, match="signature"):
        issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1], csr_pem=tampered,
                                 host="web01", at=AT)
    with pytest.raises(FleetCAError, match="not a PEM"):
        issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1], csr_pem=b"junk",
                                 host="web01", at=AT)


@pytest.mark.parametrize("host", ["", "-leading-dash", "a b", "x" * 254, "web01\n",
                                  "../etc", "web01;DROP"])
def test_host_names_are_a_plain_charset(ca: tuple[bytes, bytes], host: str) -> None:
    _, csr = make_agent_csr(host="web01")
    with pytest.raises(FleetCAError):
        issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1], csr_pem=csr, host=host,
                                 at=AT)


def test_a_client_certificate_never_outlives_its_ca(ca: tuple[bytes, bytes]) -> None:
    ca_cert = x509.load_pem_x509_certificate(ca[1])
    _, csr = make_agent_csr(host="web01")
    late = ca_cert.not_valid_after_utc - timedelta(days=2)
    issued = issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1], csr_pem=csr,
                                      host="web01", at=late)
    assert issued.not_after_utc == ca_cert.not_valid_after_utc
    with pytest.raises(FleetCAError, match="expired"):
        issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1], csr_pem=csr,
                                 host="web01", at=ca_cert.not_valid_after_utc)


def test_forwarded_certificates_are_checked_again(ca: tuple[bytes, bytes]) -> None:
    _, csr = make_agent_csr(host="web01")
    good = issue_client_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1], csr_pem=csr,
                                    host="web01", at=AT)
    identity = identity_from_pem(good.pem, ca_cert_pem=ca[1], at=AT + timedelta(days=1))
    assert identity is not None
    assert (identity.host, identity.serial) == ("web01", good.serial)
    # Expired (the day after notAfter), not yet valid, another CA's, a server certificate,
    # garbage: no identity.
    assert identity_from_pem(good.pem, ca_cert_pem=ca[1], at=AT + timedelta(days=31)) is None
    assert identity_from_pem(good.pem, ca_cert_pem=ca[1], at=AT - timedelta(seconds=1)) is None
    other = issue_ca(name="other", at=AT - timedelta(days=1))
    foreign = issue_client_certificate(ca_key_pem=other[0], ca_cert_pem=other[1], csr_pem=csr,
                                       host="web01", at=AT)
    assert identity_from_pem(foreign.pem, ca_cert_pem=ca[1], at=AT) is None
    _, server = issue_server_certificate(ca_key_pem=ca[0], ca_cert_pem=ca[1],
                                         names=["web01"], at=AT)
    assert identity_from_pem(server.pem, ca_cert_pem=ca[1], at=AT) is None
    assert identity_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n", ca_cert_pem=ca[1],
                             at=AT) is None


# ---------------------------------------------------------------------- the commands, for real
def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_enrolment_commands_end_to_end_without_a_plaintext_key_on_disk(tmp_path: Path) -> None:
    desk, host = tmp_path / "desk", tmp_path / "host"
    desk.mkdir(mode=0o700)
    host.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    env["PYTHONPATH"] = str(REPO)
    desk_env = {**env, "CERTESCROW_VAULT_KEY_FILE": str(desk / "vault.key")}
    host_env = {**env, "CERTESCROW_VAULT_KEY_FILE": str(host / "vault.key")}
    ledger = str(desk / "ledger.sqlite3")

    done = _run(["fleet", "ca", "init", "--vault", str(desk / "vault.sqlite3"),
                 "--out", str(desk / "ca.pem")], desk_env, tmp_path)
    assert done.returncode == 0, done.stderr
    again = _run(["fleet", "ca", "init", "--vault", str(desk / "vault.sqlite3")], desk_env,
                 tmp_path)
    assert again.returncode != 0
    assert "already holds a fleet CA" in again.stderr

    done = _run(["agent", "enroll", "--host", "web01", "--vault", str(host / "vault.sqlite3"),
                 "--csr-out", str(host / "web01.csr")], host_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('client_key = "')

    done = _run(["fleet", "sign", str(host / "web01.csr"), "--host", "web01", "--days", "7",
                 "--vault", str(desk / "vault.sqlite3"), "--ledger", ledger,
                 "--out", str(desk / "web01.pem")], desk_env, tmp_path)
    assert done.returncode == 0, done.stderr
    cert = x509.load_pem_x509_certificate((desk / "web01.pem").read_bytes())
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=7)

    hosts = _run(["fleet", "hosts", "--json", "--ledger", ledger], env, tmp_path)
    [web01] = json.loads(hosts.stdout)["hosts"]
    assert web01["host"] == "web01"
    assert web01["silent"] is True  # issued, never heard from
    assert web01["revoked"] is False

    assert _run(["fleet", "revoke", "web01", "--ledger", ledger], env, tmp_path).returncode == 0
    # Revocation is idempotent: again on a revoked host says so and succeeds; a host never
    # signed in this ledger stays an error (exit 41).
    twice = _run(["fleet", "revoke", "web01", "--ledger", ledger], env, tmp_path)
    assert twice.returncode == 0, twice.stderr
    assert "web01: every client certificate was already revoked (the last as of " \
        in twice.stdout
    unknown = _run(["fleet", "revoke", "web99", "--ledger", ledger], env, tmp_path)
    assert unknown.returncode == 41
    assert "no host 'web99' in the fleet" in unknown.stderr
    assert f"in the ledger {ledger} " in unknown.stderr  # says where it looked
    [revoked] = json.loads(_run(["fleet", "hosts", "--json", "--ledger", ledger], env,
                                tmp_path).stdout)["hosts"]
    assert revoked["revoked"] is True

    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), f"a plaintext key in {path}"


def test_the_cli_starts_without_the_fleet_extra(tmp_path: Path) -> None:
    # The Quick start installs no aiohttp/psycopg: every other command must still work.
    code = ("import sys; sys.modules['aiohttp'] = None; sys.modules['psycopg'] = None; "
            "sys.argv = ['certescrow', 'fleet', '--help']; "
            "from agent.main import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "revoke" in done.stdout


@pytest.mark.parametrize(("command", "at", "words"), [
    # refused as a future --at before X.509's end is reached (the library's words for it:
    # test_certificates_at_the_ends_x509_can_express_are_made)
    (["fleet", "ca", "init"], "9997-12-31T00:00:00Z", "is in the future (now "),
    (["fleet", "ca", "init"], "1949-12-31T23:59:59Z", "before 1950"),
    (["fleet", "ca", "init"], "0002-01-01T00:00:00Z",
     "--at is 0002-01-01 00:00:00 UTC, before 1950"),
    (["fleet", "ca", "init"], "1950-01-01T08:59:59", "--at is 1949-12-31 23:59:59 UTC"),  # Tokyo
])
def test_an_at_x509_cannot_express_is_an_error_in_words(
        tmp_path: Path, command: list[str], at: str, words: str) -> None:
    """``--at`` at the ends of what the CLI takes ended in an OverflowError or cryptography's
    ValueError traceback (review 4)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    env["PYTHONPATH"] = str(REPO)
    env["CERTESCROW_VAULT_KEY_FILE"] = str(tmp_path / "vault.key")
    done = _run([*command, "--vault", str(tmp_path / "vault.sqlite3"), "--at", at], env,
                tmp_path)
    assert done.returncode != 0
    assert words in done.stderr
    assert "Traceback" not in done.stderr
    assert "OverflowError" not in done.stderr
    assert "ValueError" not in done.stderr


def test_certificates_at_the_ends_x509_can_express_are_made() -> None:
    start = datetime(1950, 1, 1, tzinfo=UTC)
    key, cert = issue_ca(name="edge", at=start)
    made = x509.load_pem_x509_certificate(cert)
    assert made.not_valid_before_utc == start
    late = datetime(9989, 12, 31, tzinfo=UTC)  # ten years of CA life end within 9999
    assert x509.load_pem_x509_certificate(issue_ca(name="late", at=late)[1]) \
        .not_valid_before_utc == late
    _, csr = make_agent_csr(host="web01")
    leaf = issue_client_certificate(ca_key_pem=key, ca_cert_pem=cert, csr_pem=csr,
                                    host="web01", at=start)
    assert leaf.not_before_utc == start
    # An --at before 1950 under a CA that starts in 1950 starts with the CA (it was refused
    # as "before 1950" though the certificate would not have started then: review 9).
    early = issue_client_certificate(ca_key_pem=key, ca_cert_pem=cert, csr_pem=csr,
                                     host="web01", at=start - timedelta(seconds=1))
    assert early.not_before_utc == start
    assert early.not_after_utc == start + timedelta(days=30, seconds=-1)


def test_a_certificate_never_starts_before_its_ca() -> None:
    """``fleet server-cert --at`` earlier than the CA's own start made a certificate valid
    before its issuer; it now starts with the CA (its end, counted from ``--at``, unchanged),
    and one that would end before the CA starts is an error in words."""
    ca_start = AT
    key_pem, ca_pem = issue_ca(name="fleet CA", at=ca_start)
    for at, expected_start in ((ca_start - timedelta(days=10), ca_start),
                               (ca_start - timedelta(seconds=1), ca_start),
                               (ca_start, ca_start),
                               (ca_start + timedelta(seconds=1), ca_start + timedelta(seconds=1))):
        _, issued = issue_server_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem,
                                             names=["policy.example.jp"], at=at)
        assert issued.not_before_utc == expected_start, at
        assert issued.not_after_utc == at + timedelta(days=397), at
        _, csr = make_agent_csr(host="web01")
        client = issue_client_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem, csr_pem=csr,
                                          host="web01", at=at)
        assert client.not_before_utc == expected_start, at
    with pytest.raises(FleetCAError, match=r"the fleet CA is not valid until 2026-11-27 "
                       r"03:00:00 UTC: a certificate made at .* would end before it starts"):
        issue_server_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem,
                                 names=["policy.example.jp"], at=ca_start - timedelta(days=397))
    # What is left must be a day at least: exactly a day is made, a second less refused.
    _, issued = issue_server_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem,
                                         names=["policy.example.jp"],
                                         at=ca_start - timedelta(days=396))
    assert issued.not_before_utc == ca_start
    assert issued.not_after_utc == ca_start + timedelta(days=1)
    with pytest.raises(FleetCAError, match=r"refused: .* valid for 23 hours instead of 397 "
                       r"days, less than 24 hours; give an --at from 2026-11-27 03:00:00 UTC"):
        issue_server_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem,
                                 names=["policy.example.jp"],
                                 at=ca_start - timedelta(days=396, seconds=1))


def test_a_fractional_at_counts_in_the_whole_seconds_x509_writes() -> None:
    """Half a second of validity passed the ``end > start`` check and X.509, which writes
    whole seconds, made a certificate whose notBefore equalled its notAfter (review 9)."""
    key_pem, ca_pem = issue_ca(name="fleet CA", at=AT)
    _, csr = make_agent_csr(host="web01")
    with pytest.raises(FleetCAError, match="would end before it starts"):
        issue_client_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem, csr_pem=csr,
                                 host="web01",
                                 at=AT - timedelta(days=30) + timedelta(milliseconds=500))
    fractional = AT + timedelta(hours=1, microseconds=700_000)
    issued = issue_client_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem, csr_pem=csr,
                                      host="web01", at=fractional)
    assert issued.not_before_utc == AT + timedelta(hours=1)
    assert issued.not_after_utc - issued.not_before_utc == timedelta(days=30)
    assert issued.adjusted is None


def test_a_certificate_cut_short_by_its_ca_says_so_and_is_refused_under_a_day() -> None:
    """A CA near its end signed certificates of a second's life in silence, and ``fleet sign``
    registered them over the host's good one (review 9): what is cut is said in words, and
    less than a day left is refused."""
    key_pem, ca_pem = issue_ca(name="fleet CA", at=AT, lifetime=timedelta(days=40))
    ca_end = AT + timedelta(days=40)
    _, csr = make_agent_csr(host="web01")

    def client(at: datetime) -> object:
        return issue_client_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem, csr_pem=csr,
                                        host="web01", at=at)

    whole = client(ca_end - timedelta(days=30))  # ends with the CA exactly: nothing cut
    assert isinstance(whole, IssuedCertificate)
    assert whole.adjusted is None
    cut = client(ca_end - timedelta(days=12))
    assert isinstance(cut, IssuedCertificate)
    assert cut.not_after_utc == ca_end
    assert cut.adjusted == ("the certificate ends at 2027-01-06 03:00:00 UTC with the fleet "
                            "CA: valid for 12 days instead of 30 days (make a new CA before "
                            "it ends)")
    last = client(ca_end - timedelta(days=1))
    assert isinstance(last, IssuedCertificate)
    assert last.not_after_utc - last.not_before_utc == timedelta(days=1)
    with pytest.raises(FleetCAError, match=r"refused: the certificate ends at 2027-01-06 "
                       r"03:00:00 UTC with the fleet CA: valid for 1 second\(s\) instead of "
                       r"30 days, less than 24 hours; make a new CA"):
        client(ca_end - timedelta(seconds=1))
    with pytest.raises(FleetCAError, match="23 hours"):
        client(ca_end - timedelta(days=1) + timedelta(seconds=1))
    with pytest.raises(FleetCAError, match=r"^the fleet CA certificate expired at 2027-01-06 "
                       r"03:00:00 UTC: at 2027-01-07 03:00:00 UTC it signs nothing; make a "
                       r"new CA$"):
        client(ca_end + timedelta(days=1))
    moved = client(AT - timedelta(days=2))
    assert isinstance(moved, IssuedCertificate)
    assert moved.adjusted == ("the certificate starts at 2026-11-27 03:00:00 UTC with the "
                              "fleet CA, not at 2026-11-25 03:00:00 UTC: valid for 28 days "
                              "instead of 30 days")


@pytest.mark.slow
def test_the_commands_say_when_a_certificate_is_cut_and_register_none_under_a_day(
        tmp_path: Path) -> None:
    """``fleet sign`` printed "valid until" and ``fleet server-cert`` only the key's entry
    whatever the CA did to the validity asked for; a certificate of a few hours replaced
    the host's good one in the registry (review 9)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    env["PYTHONPATH"] = str(REPO)
    env["CERTESCROW_VAULT_KEY_FILE"] = str(tmp_path / "vault.key")
    vault, ledger = str(tmp_path / "vault.sqlite3"), str(tmp_path / "ledger.sqlite3")
    # fleet sign refuses a certificate already expired by the real clock: the CA is placed
    # against it.
    now = datetime.now(UTC).replace(microsecond=0)  # noqa: TID251
    # The CA (ten years) ends 5 days from now; a host's key and CSR.
    ca_at = now - timedelta(days=3650) + timedelta(days=5)
    done = _run(["fleet", "ca", "init", "--vault", vault, "--at", ca_at.isoformat()], env,
                tmp_path)
    assert done.returncode == 0, done.stderr
    done = _run(["agent", "enroll", "--host", "web01", "--vault", str(tmp_path / "h.sqlite3"),
                 "--csr-out", str(tmp_path / "web01.csr")], env, tmp_path)
    assert done.returncode == 0, done.stderr

    signed = _run(["fleet", "sign", str(tmp_path / "web01.csr"), "--host", "web01",
                   "--vault", vault, "--ledger", ledger, "--out", str(tmp_path / "web01.pem")],
                  env, tmp_path)
    assert signed.returncode == 0, signed.stderr
    assert "warning: the certificate ends at " in signed.stderr
    # (5 days when the sign ran within the second the CA's end was counted from)
    assert re.search(r"with the fleet CA: valid for [45] days instead of 30 days \(make a new "
                     "CA", signed.stderr), signed.stderr
    # A CA that starts in an hour (`fleet ca init` refuses a future --at now; a clock ahead,
    # or an older release, could make one): a service certificate asked for now starts with it.
    soon = now + timedelta(hours=1)
    soon_vault = tmp_path / "soon.sqlite3"
    soon_key, soon_cert = issue_ca(name="soon", at=soon)
    with open_vault(soon_vault, KeyFileSource(tmp_path / "vault.key"), create=True) as opened:
        for kind, data in (("private-key", soon_key), ("certificate", soon_cert)):
            opened.put(kind, data, label="certescrow fleet CA")
    served = _run(["fleet", "server-cert", "policy.example.jp", "--vault", str(soon_vault),
                   "--out", str(tmp_path / "server.pem"), "--at", now.isoformat()], env,
                  tmp_path)
    assert served.returncode == 0, served.stderr
    assert f"warning: the certificate starts at {soon:%Y-%m-%d %H:%M:%S} UTC with the " \
        "fleet CA" in served.stderr

    # A CA that ends in twelve hours: the certificate would be cut to less than a day.
    brief_vault = str(tmp_path / "brief.sqlite3")
    done = _run(["fleet", "ca", "init", "--vault", brief_vault, "--at",
                 (now - timedelta(days=3650) + timedelta(hours=12)).isoformat()], env, tmp_path)
    assert done.returncode == 0, done.stderr
    late = _run(["fleet", "sign", str(tmp_path / "web01.csr"), "--host", "web01",
                 "--vault", brief_vault, "--ledger", ledger, "--out",
                 str(tmp_path / "late.pem")], env, tmp_path)
    assert late.returncode == 41, late.stderr
    assert "less than 24 hours; make a new CA" in late.stderr
    assert not (tmp_path / "late.pem").exists()
    [web01] = json.loads(_run(["fleet", "hosts", "--json", "--ledger", ledger], env,
                              tmp_path).stdout)["hosts"]
    first = x509.load_pem_x509_certificate((tmp_path / "web01.pem").read_bytes())
    assert web01["client_certificate_not_after"] == \
        f"{first.not_valid_after_utc:%Y-%m-%dT%H:%M:%S}.000000Z"  # the good one stays

    # A CA that ended ten days ago, asked for 30 days from twenty days ago: cut to the CA's
    # end, the certificate has already expired. It was registered over the good one, the
    # "already expired" check counting --days rather than the end the CA left (review 10);
    # no warning is printed for a certificate refused.
    old_vault = str(tmp_path / "old.sqlite3")
    done = _run(["fleet", "ca", "init", "--vault", old_vault, "--at",
                 (now - timedelta(days=3660)).isoformat()], env, tmp_path)
    assert done.returncode == 0, done.stderr
    dead = _run(["fleet", "sign", str(tmp_path / "web01.csr"), "--host", "web01",
                 "--vault", old_vault, "--ledger", ledger, "--out", str(tmp_path / "dead.pem"),
                 "--at", (now - timedelta(days=20)).isoformat()], env, tmp_path)
    assert dead.returncode == 41, dead.stderr
    assert "has already expired: refused, nothing was stored or registered" in dead.stderr
    assert "needs a new CA" in dead.stderr
    assert "warning:" not in dead.stderr
    assert not (tmp_path / "dead.pem").exists()
    [still] = json.loads(_run(["fleet", "hosts", "--json", "--ledger", ledger], env,
                              tmp_path).stdout)["hosts"]
    assert still["client_certificate_not_after"] == web01["client_certificate_not_after"]


def test_a_certificate_made_near_9999_ends_with_its_ca_not_an_overflow() -> None:
    """``at + lifetime`` past the year 9999 was an OverflowError traceback even when the CA
    ends earlier and the certificate would have ended with it."""
    ca_start = datetime(9999, 1, 1, tzinfo=UTC)
    key_pem, ca_pem = issue_ca(name="fleet CA", at=ca_start, lifetime=timedelta(days=300))
    ca_end = x509.load_pem_x509_certificate(ca_pem).not_valid_after_utc
    _, issued = issue_server_certificate(ca_key_pem=key_pem, ca_cert_pem=ca_pem,
                                         names=["policy.example.jp"],
                                         at=datetime(9999, 10, 1, tzinfo=UTC))
    assert issued.not_after_utc == ca_end


def test_a_ca_x509_cannot_end_is_refused_in_words() -> None:
    """What the CLI's 9997 case checked before a future --at was refused first."""
    with pytest.raises(FleetCAError, match="would end after 9999-12-31"):
        issue_ca(name="late", at=datetime(9997, 12, 31, tzinfo=UTC))
