"""What the desk's fleet commands refuse rather than do (review 11): a back-dated `fleet sign`
that locked a host out, a service certificate already expired, host and CA names a certificate
cannot carry, CSR files that are devices, pipes or not CSRs. Each through the real CLI, in a
process of its own, against a real vault and ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from policy.fleet_registry import FleetRegistry

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    env["PYTHONPATH"] = str(REPO)
    env["CERTESCROW_VAULT_KEY_FILE"] = str(tmp_path / "vault.key")
    return env


def _run(args: list[str], tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.main", *args], env=_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                          check=False)


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stderr


def _serial(pem_path: Path) -> str:
    return format(x509.load_pem_x509_certificate(pem_path.read_bytes()).serial_number, "x")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)  # noqa: TID251 - against the real clock


@pytest.fixture
def desk(tmp_path: Path) -> dict[str, str]:
    """A fleet CA made 60 days ago (so that a back-dated --at is not moved to its start), and
    an agent's CSR."""
    vault = str(tmp_path / "vault.sqlite3")
    _ok(_run(["fleet", "ca", "init", "--vault", vault,
              "--at", (_now() - timedelta(days=60)).isoformat()], tmp_path))
    _ok(_run(["agent", "enroll", "--host", "web03", "--vault", str(tmp_path / "h.sqlite3"),
              "--csr-out", str(tmp_path / "a.csr")], tmp_path))
    _ok(_run(["agent", "enroll", "--host", "web03", "--vault", str(tmp_path / "h.sqlite3"),
              "--csr-out", str(tmp_path / "b.csr")], tmp_path))
    return {"vault": vault, "ledger": str(tmp_path / "ledger.sqlite3")}


def _sign(tmp_path: Path, desk: dict[str, str], csr: str, out: str,
          *extra: str) -> subprocess.CompletedProcess[str]:
    return _run(["fleet", "sign", str(tmp_path / csr), "--host", "web03", "--vault",
                 desk["vault"], "--ledger", desk["ledger"], "--out", str(tmp_path / out),
                 *extra], tmp_path)


def test_a_back_dated_sign_that_would_lapse_today_is_refused_and_the_good_one_stays(
        tmp_path: Path, desk: dict[str, str]) -> None:
    """`--at` 30 days ago plus five minutes, 30 days: the certificate would end five minutes
    from now. It was registered (exit 0, no warning) and revoked the host's good certificate
    as of an instant already past: the host was locked out at once."""
    _ok(_sign(tmp_path, desk, "a.csr", "good.pem"))
    back = _now() - timedelta(days=30) + timedelta(minutes=5)
    late = _sign(tmp_path, desk, "b.csr", "late.pem", "--at", back.isoformat())
    assert late.returncode == 41, late.stderr
    assert "less than 1 day left now" in late.stderr
    assert "nothing was registered" in late.stderr
    assert "Traceback" not in late.stderr
    assert not (tmp_path / "late.pem").exists()
    with FleetRegistry.open(desk["ledger"]) as registry:
        assert registry.refusal(host="web03", serial=_serial(tmp_path / "good.pem"),
                                at=_now()) is None
        assert registry.refusal(host="web03", serial=_serial(tmp_path / "good.pem")) is None


def test_a_back_dated_sign_keeps_the_previous_certificate_for_the_grace_from_now(
        tmp_path: Path, desk: dict[str, str]) -> None:
    """A back-dated certificate with days left is signed; the host's previous certificate
    stays valid for the renewal grace (an hour) counted from the real clock, not from --at
    (which revoked it ten days ago)."""
    _ok(_sign(tmp_path, desk, "a.csr", "good.pem"))
    before = _now()
    _ok(_sign(tmp_path, desk, "b.csr", "new.pem",
              "--at", (before - timedelta(days=10)).isoformat()))
    good = _serial(tmp_path / "good.pem")
    with FleetRegistry.open(desk["ledger"]) as registry:
        assert registry.refusal(host="web03", serial=good, at=_now()) is None
        assert registry.refusal(host="web03", serial=good,
                                at=before + timedelta(minutes=59)) is None
        refused = registry.refusal(host="web03", serial=good,
                                   at=_now() + timedelta(hours=1, minutes=1))
        assert refused is not None
        assert "superseded" in refused
        assert registry.refusal(host="web03", serial=_serial(tmp_path / "new.pem"),
                                at=_now()) is None
    # ... and the registry says when it was told, not the back-dated --at
    import sqlite3

    with sqlite3.connect(desk["ledger"]) as conn:
        [(issued,)] = conn.execute("SELECT issued_utc FROM fleet_certs WHERE serial = ?",
                                   (_serial(tmp_path / "new.pem"),)).fetchall()
    assert issued >= f"{before:%Y-%m-%dT%H:%M:%S}"


def test_a_service_certificate_already_expired_is_refused_and_nothing_is_stored(
        tmp_path: Path) -> None:
    """A CA made at 2017-01-01 and `--at 2020-01-01`: the certificate (397 days) ended in 2021.
    It was issued, its key stored in the vault, exit 0: every agent would then fail TLS against
    the service."""
    vault = str(tmp_path / "old.sqlite3")
    _ok(_run(["fleet", "ca", "init", "--vault", vault, "--at", "2017-01-01T00:00:00Z"],
             tmp_path))
    before = _run(["vault", "list", "--json", "--vault", vault], tmp_path)
    _ok(before)
    done = _run(["fleet", "server-cert", "policy.example.jp", "--out", str(tmp_path / "s.pem"),
                 "--vault", vault, "--at", "2020-01-01T00:00:00Z"], tmp_path)
    assert done.returncode == 41, done.stderr
    assert "has already expired: refused, nothing was stored or registered" in done.stderr
    assert not (tmp_path / "s.pem").exists()
    after = _run(["vault", "list", "--json", "--vault", vault], tmp_path)
    assert after.stdout == before.stdout  # no key, no certificate put
    # A day and more is issued (the boundary's other side).
    fresh = _run(["fleet", "server-cert", "policy.example.jp", "--out",
                  str(tmp_path / "f.pem"), "--vault", vault], tmp_path)
    assert fresh.returncode == 0, fresh.stderr


def test_host_and_ca_names_a_certificate_cannot_carry_are_refused_in_words(
        tmp_path: Path, desk: dict[str, str]) -> None:
    """Host names of 65 to 253 characters passed the check and crashed in cryptography
    (`Attribute's length must be >= 1 and <= 64`), with a traceback; so did a CA --name over
    64 characters or empty."""
    long_host = "a" * 54 + ".example.jp"  # 65 characters
    assert len(long_host) == 65
    enrolled = _run(["agent", "enroll", "--host", long_host, "--vault",
                     str(tmp_path / "h2.sqlite3"), "--csr-out", str(tmp_path / "l.csr")],
                    tmp_path)
    assert enrolled.returncode == 41, enrolled.stderr
    assert "1-64 characters" in enrolled.stderr
    assert "Traceback" not in enrolled.stderr
    signed = _run(["fleet", "sign", str(tmp_path / "a.csr"), "--host", long_host, "--vault",
                   desk["vault"], "--ledger", desk["ledger"]], tmp_path)
    assert signed.returncode == 41, signed.stderr
    assert "1-64 characters" in signed.stderr
    assert "Traceback" not in signed.stderr
    exactly = "a" * 53 + ".example.jp"  # 64: the other side of the boundary
    _ok(_run(["fleet", "sign", str(tmp_path / "a.csr"), "--host", exactly, "--vault",
              desk["vault"], "--ledger", desk["ledger"], "--out", str(tmp_path / "64.pem")],
             tmp_path))
    cert = x509.load_pem_x509_certificate((tmp_path / "64.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == exactly

    # cryptography counts UTF-8 bytes: 33 "é" are 66 (it crashed with a traceback, review 11
    # re-review); a name of spaces only is no name
    for name in ("x" * 65, "", "\u00e9" * 33, "\u8a3c" * 22, "   "):
        made = _run(["fleet", "ca", "init", "--name", name, "--vault",
                     str(tmp_path / f"ca{len(name)}.sqlite3")], tmp_path)
        assert made.returncode == 41, made.stderr
        assert "1-64 printable characters" in made.stderr, made.stderr
        assert "Traceback" not in made.stderr


def test_a_service_name_longer_than_a_common_name_is_a_san(tmp_path: Path,
                                                          desk: dict[str, str]) -> None:
    """The service's DNS name may be up to 253 characters; only the CN is limited to 64."""
    name = "policy-service-for-the-fleet-of-hosting-provider.internal.example.jp"
    assert len(name) > 64
    done = _run(["fleet", "server-cert", name, "--out", str(tmp_path / "s.pem"), "--vault",
                 desk["vault"]], tmp_path)
    assert done.returncode == 0, done.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "s.pem").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [name]
    label = _run(["fleet", "server-cert", "a" * 64 + ".example.jp", "--out",
                  str(tmp_path / "l.pem"), "--vault", desk["vault"]], tmp_path)
    assert label.returncode == 41
    assert "labels of at most 63" in label.stderr
    _ok(_run(["fleet", "server-cert", "a" * 63 + ".example.jp", "--out",
              str(tmp_path / "l.pem"), "--vault", desk["vault"]], tmp_path))


def test_a_csr_file_must_be_a_small_regular_file_and_its_errors_name_it(
        tmp_path: Path, desk: dict[str, str]) -> None:
    """`fleet sign /dev/zero` read until memory ran out (read_bytes() before the cut); a FIFO
    blocked; a file that is not a CSR was refused without naming it."""
    zero = _run(["fleet", "sign", "/dev/zero", "--host", "web04", "--vault", desk["vault"],
                 "--ledger", desk["ledger"]], tmp_path, timeout=60)
    assert zero.returncode == 41, zero.stderr
    assert "CSR /dev/zero is a device; it must be a regular file" in zero.stderr
    fifo = tmp_path / "csr.fifo"
    os.mkfifo(fifo)
    piped = _run(["fleet", "sign", str(fifo), "--host", "web04", "--vault", desk["vault"],
                  "--ledger", desk["ledger"]], tmp_path, timeout=60)
    assert piped.returncode == 41, piped.stderr
    assert "a FIFO (named pipe); it must be a regular file" in piped.stderr
    big = tmp_path / "big.csr"
    big.write_bytes(b"A" * (64 * 1024 + 1))
    large = _run(["fleet", "sign", str(big), "--host", "web04", "--vault", desk["vault"],
                  "--ledger", desk["ledger"]], tmp_path)
    assert large.returncode == 41
    assert "is too large" in large.stderr
    junk = tmp_path / "junk.csr"
    junk.write_bytes(b"\x1b[31mnot a csr\n")
    bad = _run(["fleet", "sign", str(junk), "--host", "web04", "--vault", desk["vault"],
                "--ledger", desk["ledger"]], tmp_path)
    assert bad.returncode == 41, bad.stderr
    assert f"{junk}: not a PEM certificate signing request" in bad.stderr
    missing = _run(["fleet", "sign", str(tmp_path / "nope.csr"), "--host", "web04", "--vault",
                    desk["vault"], "--ledger", desk["ledger"]], tmp_path)
    assert missing.returncode == 41
    assert "does not exist" in missing.stderr
