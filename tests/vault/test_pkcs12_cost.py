"""A PKCS#12 or an encrypted key names its own key-derivation work, and OpenSSL runs it as
written for every password tried: a 563-byte file asking for 200,000,000 MAC rounds held
``scan``, the daemon and ``vault import`` for 47 seconds (review 12). Reading the counts first
was defeated by encodings OpenSSL reads and a reader does not (a trailing byte, leading zero
length octets, a negative count) and by a count hidden in an encrypted part (the re-review):
the passwords are now tried in a child whose CPU time the kernel caps (vault/bounded.py)."""

from __future__ import annotations

import functools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from tests.certfactory import make_cert, shared_key
from tests.clirun import certescrow
from vault import formats
from vault.bounded import CPU_SECONDS
from vault.errors import VaultInputError
from vault.formats import looks_like_pfx

# ------------------------------------------------------------------ DER, by hand (trusted input)


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[pos + 2:pos + 2 + count], "big")
    return tag, pos + 2 + count, pos + 2 + count + length


def _children(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        tag, start, end = _tlv(data, pos)
        out.append((tag, data[start:end]))
        pos = end
    return out


def _encode(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _integer(value: int) -> bytes:
    return _encode(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def with_integer(der: bytes, old: int, new: int) -> bytes:
    """``der`` re-encoded with every INTEGER ``old`` written as ``new`` (trusted input:
    recursion on a structure the test built is fine)."""
    out = b""
    for tag, content in _children(der):
        if tag == 0x02 and int.from_bytes(content, "big", signed=True) == old:
            out += _integer(new)
        elif tag & 0x20:
            out += _encode(tag, with_integer(content, old, new))
        else:
            out += _encode(tag, content)
    return out


def with_mac_iterations(p12: bytes, iterations: int) -> bytes:
    """``p12`` with its MacData's iteration count replaced (the MAC no longer verifies: it
    does not need to, OpenSSL derives the MAC key before it can tell)."""
    _tag, pfx = _children(p12)[0]
    version, auth_safe, mac_data = _children(pfx)
    digest_info, salt, _iterations = _children(mac_data[1])
    mac = _encode(0x30, _encode(*digest_info) + _encode(*salt) + _integer(iterations))
    return _encode(0x30, _encode(*version) + _encode(*auth_safe) + mac)


def outer_ber(p12: bytes) -> bytes:
    """``p12`` re-encoded as BER outside its MAC-protected bytes: the PFX and its ContentInfo
    with indefinite lengths, the AuthenticatedSafe's OCTET STRING cut into a segmented
    (constructed) string of 7-byte pieces. The bytes the MAC covers are unchanged, so the
    library still opens it."""
    def indefinite(tag: int, content: bytes) -> bytes:
        return bytes([tag | 0x20, 0x80]) + content + b"\0\0"

    _tag, pfx = _children(p12)[0]
    version, (ci_tag, content_info), mac = _children(pfx)
    (oid_tag, oid), (_wrap_tag, wrapped) = _children(content_info)
    (_octet_tag, auth_safe), = _children(wrapped)
    pieces = b"".join(_encode(0x04, auth_safe[i:i + 7]) for i in range(0, len(auth_safe), 7))
    segmented = indefinite(0x24, pieces)
    info = indefinite(ci_tag, _encode(oid_tag, oid) + indefinite(0xA0, segmented))
    return indefinite(0x30, _encode(*version) + info + _encode(*mac))


# ------------------------------------------------------------------ files

HUGE = 2**31 - 1


def _bundle(encryption: object, *, with_cert: bool = True) -> bytes:
    key = shared_key("ec", 3)
    cert = make_cert(key=key).cert if with_cert else None
    return pkcs12.serialize_key_and_certificates(b"n", key, cert, None,
                                                 encryption)  # type: ignore[arg-type]


def _pbes2(rounds: int) -> object:
    return (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(rounds)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).build(b"pw"))


def _hostile(tmp_path: Path) -> dict[str, Path]:
    """The re-review's tricks, each asking for 2**31 - 1 MAC rounds: plain, BER, a byte after
    the PFX, the count's length written with leading zero octets, the count as a negative
    number that OpenSSL keeps in an ``int`` (2**31 - 1 - 2**32)."""
    plain = with_mac_iterations(_bundle(NoEncryption()), HUGE)
    count = _integer(HUGE)
    files = {
        "plain.p12": plain,
        "ber.p12": outer_ber(plain),
        "trailing.p12": plain + b"\0",
        "zero-octets.p12": plain.replace(count, b"\x02\x85\x00" + bytes([len(count) - 2])
                                         + count[2:]),
        "negative.p12": with_mac_iterations(_bundle(NoEncryption()), HUGE - 2**32),
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: tmp_path / name for name in files}


def test_every_hostile_pkcs12_is_refused_within_the_cpu_cap(tmp_path: Path) -> None:
    hostile = _hostile(tmp_path / "store")
    began = time.monotonic()
    try:
        result = certescrow("scan", "--json", "--jobs", "1", str(tmp_path / "store"),
                            home=tmp_path, timeout=300)
    except subprocess.TimeoutExpired:  # what it did: a quarter of an hour per password
        pytest.fail("scan ran a file's 2**31 - 1 MAC rounds")
    rows = {r["path"]: r for r in json.loads(result.stdout)}
    for path in hostile.values():
        assert rows[str(path)]["kind"] == "error"
        assert rows[str(path)]["error"]["code"] in ("too-costly", "pkcs12-password",
                                                    "garbage", "truncated"), path
    costly = [p for p in hostile.values() if rows[str(p)]["error"]["code"] == "too-costly"]
    assert len(costly) >= 4  # (OpenSSL may refuse a trick outright: then it costs nothing)
    assert f"within {CPU_SECONDS} s of CPU" in rows[str(costly[0])]["error"]["message"]
    assert time.monotonic() - began < len(hostile) * (CPU_SECONDS + 10)


def test_honest_files_with_high_counts_open(tmp_path: Path) -> None:
    """Reading the counts refused OpenSSL's `-iter 600000` (the OWASP figure) and a keystore
    of 100 keys by adding up counts OpenSSL never all runs (the re-review)."""
    for rounds in (2048, 600_000):
        path = tmp_path / f"iter{rounds}.p12"
        path.write_bytes(_bundle(_pbes2(rounds)))
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    pw.chmod(0o600)
    result = certescrow("scan", "--json", "--password-file", str(pw), str(tmp_path),
                        home=tmp_path)
    rows = [r for r in json.loads(result.stdout) if r["path"].endswith(".p12")]
    assert sorted(r["kind"] for r in rows) == ["certificate", "certificate"], rows


def test_an_encrypted_key_asking_for_too_much_is_refused_not_run(tmp_path: Path) -> None:
    """The same DoS through an encrypted PKCS#8 key and a configured password (the
    re-review: 20,000,000 PBKDF2 rounds, 3 s per password)."""
    der = shared_key("ec", 4).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        BestAvailableEncryption(b"pw"))
    hostile = with_integer(der, 2048, HUGE)  # PBKDF2's iteration count
    assert hostile != der
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "enc.key").write_bytes(hostile)
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    pw.chmod(0o600)
    result = certescrow("scan", "--json", "--password-file", str(pw), str(tmp_path / "store"),
                        home=tmp_path, timeout=120)
    document = json.loads(result.stdout)
    assert "too-costly" in json.dumps(document), document


def test_vault_import_refuses_a_costly_pkcs12() -> None:
    data = with_mac_iterations(_bundle(NoEncryption()), HUGE)
    with pytest.raises(VaultInputError, match=r"evil\.p12: the PKCS#12 file could not be "
                                              r"opened within \d+ s of CPU"):
        formats.recognise(data, source="evil.p12")


def test_vault_import_refuses_a_truncated_pkcs12_instead_of_keeping_a_document() -> None:
    """A truncated ``.p12`` was stored as a ``document``, exit 0: the operator believed the
    key escrowed (review 12)."""
    data = _bundle(_pbes2(2048))
    with pytest.raises(VaultInputError, match=r"cut\.p12: a damaged PKCS#12 file"):
        formats.recognise(data[:len(data) // 2], source="cut.p12")
    assert [item.kind for item in formats.recognise(data, source="whole.p12",
                                                    ask=lambda _what: b"pw")] == ["pkcs12"]


def test_a_pfx_is_recognised_by_its_beginning_whole_or_not() -> None:
    good = _bundle(NoEncryption())
    assert looks_like_pfx(good)
    assert looks_like_pfx(good[:40])
    assert looks_like_pfx(outer_ber(good))
    for data in (b"", b"\x30", b"not der at all", bytes(range(256)), b"\x30\x03\x02\x01\x03"):
        assert not looks_like_pfx(data)


def test_a_ber_pkcs12_the_library_warns_about_still_opens() -> None:
    """cryptography warns that it fell back to BER; under a filter that makes warnings errors
    (the suite's own), the child trying the password took the warning for a failure."""
    from vault.bounded import first_that_opens

    data = outer_ber(_bundle(_pbes2(2048)))
    probe = first_that_opens(lambda pw: pkcs12.load_pkcs12(data, pw), [None, b"", b"pw"])
    assert probe.opened == 2


def test_a_child_that_waits_instead_of_computing_is_killed_at_the_deadline(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that uses no CPU (a lock another thread held when the parent forked) is not
    stopped by the CPU limit: the parent's deadline kills it, and no child is left behind."""
    import os

    from vault import bounded

    monkeypatch.setattr(bounded, "WALL_SECONDS", 0.5)
    began = time.monotonic()
    with pytest.raises(bounded.TooCostlyError):
        bounded.first_that_opens(lambda _pw: time.sleep(60), [None])
    assert time.monotonic() - began < 10
    zombies = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                zombies.append(entry)
    assert zombies == []  # reaped: no child of this process is left unwaited


def test_a_sandbox_that_denies_setrlimit_still_tries_the_passwords(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's `SystemCallFilter=~@resources` with `SystemCallErrorNumber=EPERM` makes
    setrlimit fail: the child answered nothing and every PKCS#12 was "too costly" (found
    reading the shipped unit). The deadline alone bounds the child then."""
    import resource

    from vault.bounded import first_that_opens

    def denied(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(resource, "setrlimit", denied)
    data = _bundle(_pbes2(2048))
    assert first_that_opens(lambda pw: pkcs12.load_pkcs12(data, pw), [None, b"pw"]).opened == 1


def test_a_child_over_its_cpu_limit_leaves_no_core_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGXCPU's default action dumps core, and the child is a copy of the daemon: its vault
    key and passwords went to disk beside a 564-byte hostile file (the second re-review)."""
    import os
    import resource

    from vault import bounded

    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bounded, "CPU_SECONDS", 1)
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))  # as a shell with `ulimit -c`

        def spin(_password: bytes | None) -> None:
            while True:
                pass

        with pytest.raises(bounded.TooCostlyError):
            bounded.first_that_opens(spin, [None])
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    assert [p for p in os.listdir(tmp_path) if p.startswith("core")] == []


def test_one_import_tries_a_password_on_a_pkcs12_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """An import read the file as a PKCS#12 several times (is it one, its key, its
    structure), each time in a new bounded child: a file opening in just under the limit
    cost several times the limit (the second re-review)."""
    from vault import bounded

    forks: list[int] = []
    real = bounded.first_that_opens

    def counted(*args: object, **kwargs: object) -> object:
        forks.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(formats, "first_that_opens", counted)
    data = _bundle(_pbes2(4096), with_cert=True)
    items = formats.recognise(data, source="one.p12", ask=lambda _what: b"pw")
    formats.analyse("pkcs12", items[0].data)
    assert len(forks) <= 2  # without a password, then with it


# ------------------------------------------------------------------ a process with threads

_HELD = threading.Lock()
"""A lock another thread holds while a file is probed: as OpenSSL's may be, taken by a hash on
the daemon's ledger writer when the event path forks."""


def _opens_under_the_lock(data: bytes, password: bytes | None) -> object:
    with _HELD:
        return pkcs12.load_pkcs12(data, password)


@contextmanager
def _another_thread_holding(lock: threading.Lock) -> Iterator[None]:
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            done.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(10)
    try:
        yield
    finally:
        done.set()
        thread.join(10)


def test_a_lock_another_thread_holds_does_not_make_an_honest_file_too_costly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon runs threads; a forked child kept whatever lock one of them held at that
    instant, waited out the deadline and called an honest PKCS#12 too costly (a known limit of
    session 12). With threads running the child comes from the fork server: a fresh process."""
    from vault import bounded

    monkeypatch.setattr(bounded, "WALL_SECONDS", 5.0)
    data = _bundle(_pbes2(2048))
    with _another_thread_holding(_HELD):
        probe = bounded.first_that_opens(functools.partial(_opens_under_the_lock, data),
                                         [None, b"", b"pw"])
    assert probe.opened == 2


def test_with_threads_running_the_cpu_limit_and_the_deadline_still_hold(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import bounded

    monkeypatch.setattr(bounded, "WALL_SECONDS", 2.0)
    data = with_mac_iterations(_bundle(NoEncryption()), HUGE)
    began = time.monotonic()
    with _another_thread_holding(threading.Lock()), pytest.raises(bounded.TooCostlyError):
        bounded.first_that_opens(functools.partial(_opens_under_the_lock, data), [None])
    assert time.monotonic() - began < CPU_SECONDS + 8


def test_the_agent_and_the_vault_open_protected_files_with_threads_running(
        tmp_path: Path) -> None:
    """Every loader the agent and the vault hand the bounded child pickles (the fork server's
    child needs it): PKCS#12, an encrypted PEM key, an encrypted DER key; a lambda here was a
    crash of the daemon's event path. (An encrypted OpenSSH key needs bcrypt, not installed.)"""
    from agent.formats import parse_content

    key = shared_key("ec", 3)
    p12 = _bundle(_pbes2(2048))
    locked = BestAvailableEncryption(b"pw")
    pem_key = key.private_bytes(serialization.Encoding.PEM, PrivateFormat.PKCS8, locked)
    der_key = key.private_bytes(serialization.Encoding.DER, PrivateFormat.PKCS8, locked)
    with _another_thread_holding(threading.Lock()):
        assert threading.active_count() > 1
        parsed = parse_content(p12, path="site.p12", passwords=[b"pw"])
        assert parsed.error is None
        assert len(parsed.certificates) == 1
        for data, name in ((pem_key, "key.pem"), (der_key, "key.der")):
            parsed = parse_content(data, path=name, passwords=[b"pw"])
            assert parsed.error is None, name
            assert not parsed.problems, name
            assert [k.key_type for k in parsed.keys] == ["ec"], name
            assert parsed.keys[0].spki_sha256 is not None, name
        items = formats.recognise(p12, source="site.p12", ask=lambda _what: b"pw")
        assert [item.kind for item in items] == ["pkcs12"]
        assert items[0].meta["subject"].startswith("CN=")  # opened with the password
        items = formats.recognise(pem_key, source="key.pem", ask=lambda _what: b"pw")
        assert [item.kind for item in items] == ["private-key"]


def _encrypted_pem(slot: int, password: bytes) -> bytes:
    return shared_key("ec", slot).private_bytes(
        serialization.Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(password))


def test_a_files_encrypted_keys_share_one_budget_of_trials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each key is tried in its own bounded child, but thousands of key blocks in one file
    held a scan for hours and the daemon's watchdog ping with it (the attacker review of
    session 14): once trying them has taken the file's budget, the rest are not tried, each
    said so (and the problem cap ends the file's reading)."""
    from agent import formats as agent_formats

    data = b"".join(_encrypted_pem(30 + n, b"other") for n in range(10))
    monkeypatch.setattr(agent_formats, "KEY_TRIALS_SECONDS", 0.0)  # spent by the first try
    parsed = agent_formats.parse_content(data, path="many.pem", passwords=[b"s3cret"])
    untried = [p for p in parsed.problems if p.code == "too-costly"]
    assert len(untried) == 9
    assert all("was not tried with the passwords" in p.message for p in untried)
    assert [k.encrypted for k in parsed.keys] == [True]  # the one tried: no password opens it


def test_honest_encrypted_keys_of_one_file_are_all_opened() -> None:
    from agent import formats as agent_formats

    data = _encrypted_pem(40, b"s3cret") + _encrypted_pem(41, b"s3cret")
    parsed = agent_formats.parse_content(data, path="two.pem", passwords=[b"s3cret"])
    assert not parsed.problems
    assert len(parsed.keys) == 2
    assert all(k.spki_sha256 for k in parsed.keys)  # opened: the public key is known


def test_costly_files_share_one_budget_across_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """One file's budget bounds one file: ten thousand small files of one costly key each
    held a scan for hours (the re-review of session 14). Past the run's budget, keys and
    PKCS#12 files are not tried, each said so."""
    from agent import formats as agent_formats

    spent = agent_formats.TrialBudget(burst=1.0, tokens=1e-9, free=0.0)
    monkeypatch.setattr(agent_formats, "TRIALS", spent)
    first = agent_formats.parse_content(_encrypted_pem(50, b"other"), path="a.pem",
                                        passwords=[b"s3cret"])
    assert not first.problems  # tried (no password opens it): the budget is spent now
    second = agent_formats.parse_content(_encrypted_pem(51, b"other"), path="b.pem",
                                         passwords=[b"s3cret"])
    assert second.error is not None  # its one key not tried: the file could not be read
    assert second.error.code == "too-costly"
    assert "costly files have taken this run's budget" in second.error.message
    p12 = agent_formats.parse_content(_bundle(_pbes2(2048)), path="c.p12")
    assert p12.error is not None
    assert p12.error.code == "too-costly"


def test_an_honest_trial_does_not_draw_on_the_runs_budget() -> None:
    from agent.formats import TrialBudget

    budget = TrialBudget(burst=60.0, tokens=60.0, free=0.05, rate=0.0)
    for _ in range(10_000):  # a store of honest PKCS#12 files: a fork and milliseconds each
        budget.spend(0.01)
    assert budget.tokens == 60.0
    budget.spend(3.05)  # a costly one draws what it took beyond an honest file's time
    assert budget.tokens == pytest.approx(57.0)
    assert budget.allows()
