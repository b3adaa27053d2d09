"""A PKCS#12 names its own key-derivation work, and OpenSSL runs it as written for every
password tried: a 563-byte file asking for 200,000,000 MAC rounds held ``scan``, the daemon and
``vault import`` for 47 seconds (review 12). The cost is read before anything opens the file,
in DER and in BER (indefinite lengths, segmented strings: what some exporters write)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from tests.certfactory import make_cert, shared_key
from tests.clirun import certescrow
from vault import formats
from vault.errors import VaultInputError
from vault.pkcs12cost import MAX_ROUNDS, key_derivation_rounds, looks_like_pfx

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


def _bundle(encryption: object, *, with_cert: bool = True) -> bytes:
    key = shared_key("ec", 3)
    cert = make_cert(key=key).cert if with_cert else None
    return pkcs12.serialize_key_and_certificates(b"n", key, cert, None,
                                                 encryption)  # type: ignore[arg-type]


def _pbes1(rounds: int) -> object:
    return (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(rounds)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1()).build(b"pw"))  # noqa: S303 - a legacy file, as old tools write


def _pbes2(rounds: int) -> object:
    return (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(rounds)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC).build(b"pw"))


def _mac_rounds(p12: bytes) -> int:
    _tag, pfx = _children(p12)[0]
    _digest, _salt, (_t, iterations) = _children(_children(pfx)[2][1])
    return int.from_bytes(iterations, "big")


@pytest.mark.parametrize(("encryption", "kdf"), [
    (_pbes1(50_000), 50_000), (_pbes2(30_000), 30_000), (_pbes2(1), 1)])
def test_the_rounds_of_every_part_the_file_shows_are_counted(encryption: object,
                                                             kdf: int) -> None:
    """The key bag and the encrypted certificates each name ``kdf`` rounds; the MAC its own."""
    data = _bundle(encryption)
    assert key_derivation_rounds(data) == _mac_rounds(data) + 2 * kdf
    assert key_derivation_rounds(outer_ber(data)) == key_derivation_rounds(data)
    # the BER form is a PKCS#12 the library opens (warning that it fell back to BER): what
    # the walk reads is what it would run
    with pytest.warns(UserWarning, match="BER"):
        assert pkcs12.load_pkcs12(outer_ber(data), b"pw").key is not None


def test_a_file_without_encryption_costs_its_mac_only() -> None:
    data = _bundle(NoEncryption())
    assert key_derivation_rounds(data) == _mac_rounds(data)


def test_the_cap_is_above_what_honest_tools_write_and_below_the_attack() -> None:
    honest = _bundle(_pbes2(600_000 // 2 - 2048))  # OWASP's count for a password store, in all
    assert key_derivation_rounds(honest) <= MAX_ROUNDS
    assert key_derivation_rounds(_bundle(_pbes2(MAX_ROUNDS))) > MAX_ROUNDS


@pytest.mark.parametrize("shape", ["der", "ber"])
def test_a_hostile_mac_count_is_seen_in_either_encoding(shape: str) -> None:
    data = with_mac_iterations(_bundle(BestAvailableEncryption(b"pw")), 200_000_000)
    if shape == "ber":
        data = outer_ber(data)
    assert key_derivation_rounds(data) >= 200_000_000  # (the walk stops past the cap)
    big = with_mac_iterations(_bundle(NoEncryption()), 2**31 - 1)
    assert key_derivation_rounds(big) >= 2**31 - 1


def test_a_hostile_count_in_a_segmented_string_is_seen() -> None:
    """The certificates' encryption parameters live inside the AuthenticatedSafe: in BER, cut
    across the segments of a constructed OCTET STRING."""
    data = outer_ber(_bundle(_pbes2(5_000_000)))
    assert key_derivation_rounds(data) > MAX_ROUNDS


def test_what_is_not_a_pkcs12_costs_nothing_and_is_not_taken_for_one() -> None:
    for data in (b"", b"\x30", b"\x30\x80" * 5000, b"not der at all", bytes(range(256))):
        assert key_derivation_rounds(data) == 0
        assert not looks_like_pfx(data)
    deep = b"\x30\x80" * 100_000 + b"\x00\x00" * 100_000  # no recursion on the nesting
    assert key_derivation_rounds(deep) in (0, MAX_ROUNDS + 1)
    good = _bundle(NoEncryption())
    assert looks_like_pfx(good)
    assert looks_like_pfx(good[:40])
    assert looks_like_pfx(outer_ber(good))


# ------------------------------------------------------------------ the commands


def test_scan_refuses_a_costly_pkcs12_at_once_and_says_why(tmp_path: Path) -> None:
    hostile = tmp_path / "evil.p12"
    hostile.write_bytes(with_mac_iterations(_bundle(NoEncryption()), 2**31 - 1))
    honest = tmp_path / "good.p12"
    honest.write_bytes(_bundle(NoEncryption()))
    try:
        result = certescrow("scan", "--json", str(tmp_path), home=tmp_path, timeout=60)
    except subprocess.TimeoutExpired:  # what it did: a quarter of an hour per password
        pytest.fail("scan ran the file's 2**31 - 1 MAC rounds")
    rows = json.loads(result.stdout)
    errors = {r["path"]: r["error"] for r in rows if r["kind"] == "error"}
    assert errors[str(hostile)]["code"] == "pkcs12-too-costly"
    assert "2,147,483,647 key-derivation rounds" in errors[str(hostile)]["message"]
    assert any(r.get("kind") == "certificate" and r["path"] == str(honest) for r in rows)


def test_vault_import_refuses_a_costly_pkcs12(tmp_path: Path) -> None:
    data = with_mac_iterations(_bundle(NoEncryption()), 200_000_000)
    with pytest.raises(VaultInputError, match=r"evil\.p12: the PKCS#12 file asks for "
                                              r"200,000,000 key-derivation rounds"):
        formats.recognise(data, source="evil.p12")


def test_vault_import_refuses_a_truncated_pkcs12_instead_of_keeping_a_document() -> None:
    """A truncated ``.p12`` was stored as a ``document``, exit 0: the operator believed the
    key escrowed (review 12)."""
    data = _bundle(_pbes2(2048))
    with pytest.raises(VaultInputError, match=r"cut\.p12: a damaged PKCS#12 file"):
        formats.recognise(data[:len(data) // 2], source="cut.p12")
    assert [item.kind for item in formats.recognise(data, source="whole.p12",
                                                    ask=lambda _what: b"pw")] == ["pkcs12"]
