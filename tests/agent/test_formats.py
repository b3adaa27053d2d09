"""Formats are recognised by content: PEM, DER, PKCS#7, PKCS#12, keys; JKS refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.formats import _pem_items, _PemBlock, parse_content, sniff
from agent.reader import read_file
from agent.records import ERROR_CODES, ReadLimits
from policy.decisions import Severity
from tests.agent.scan_fixtures import write
from tests.certfactory import fresh_key, make_ca, make_cert, shared_key

ONE_SHOT = ReadLimits()


def _read(tmp_path: Path, name: str, data: bytes, mode: int = 0o644,
          passwords: tuple[bytes, ...] = ()) -> object:
    return read_file(write(tmp_path / name, data, mode), limits=ONE_SHOT, passwords=passwords)


def test_pem_with_many_certificates_text_crlf_and_a_key(tmp_path: Path) -> None:
    a = make_cert(sans=("a.example",))
    b = make_cert(sans=("b.example",), key=shared_key("ec", 7))
    data = (b"Bag Attributes\r\n  friendlyName: a\r\nsubject=CN=a.example\r\n"
            + a.pem.replace(b"\n", b"\r\n") + b"\r\nsome notes between blocks\n"
            + a.key_pem() + b.pem + b"trailing words\n")
    result = read_file(write(tmp_path / "bundle.txt", data, 0o600), limits=ONE_SHOT)
    assert result.error is None
    assert [(c.index, c.fmt, c.facts.sha256) for c in result.certificates] == [
        (0, "pem", a.sha256), (1, "pem", b.sha256)]
    assert len(result.keys) == 1
    key = result.keys[0]
    assert (key.key_type, key.key_size, key.encrypted) == ("ec", 256, False)
    assert key.spki_sha256 == result.certificates[0].spki_sha256
    assert key.spki_sha256 != result.certificates[1].spki_sha256
    assert key.mode == 0o600
    assert key.pem is None  # no key material unless escrow asks for it


def test_key_pem_is_kept_only_when_escrow_asks(tmp_path: Path) -> None:
    issued = make_cert()
    path = write(tmp_path / "combined.pem", issued.pem + issued.key_pem(), 0o600)
    result = read_file(path, limits=ONE_SHOT, keep_key_pem=True)
    assert result.keys[0].pem == issued.key_pem()


def test_der_certificate_is_recognised_whatever_its_name(tmp_path: Path) -> None:
    issued = make_cert(sans=("der.example",))
    result = read_file(write(tmp_path / "looks-like.pem", issued.der), limits=ONE_SHOT)
    assert result.error is None
    assert [(c.fmt, c.facts.sha256) for c in result.certificates] == [("der", issued.sha256)]


def test_concatenated_der_certificates_are_all_read(tmp_path: Path) -> None:
    a, b = make_cert(sans=("a.example",)), make_cert(sans=("b.example",))
    result = read_file(write(tmp_path / "two.der", a.der + b.der), limits=ONE_SHOT)
    assert [c.facts.sha256 for c in result.certificates] == [a.sha256, b.sha256]


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_pkcs7_bundle_pem_and_der(tmp_path: Path, encoding: serialization.Encoding) -> None:
    leaf = make_cert(sans=("p7.example",))
    ca = make_ca()
    data = pkcs7.serialize_certificates([leaf.cert, ca.cert], encoding)
    if encoding is serialization.Encoding.PEM:
        assert data.startswith(b"-----BEGIN PKCS7-----")
    result = read_file(write(tmp_path / "chain.p7b", data), limits=ONE_SHOT)
    assert result.error is None
    assert {c.fmt for c in result.certificates} == {"pkcs7"}
    assert {c.facts.sans for c in result.certificates} == {("p7.example",), ()}
    assert [c.index for c in result.certificates] == [0, 1]


def test_pkcs12_without_password(tmp_path: Path) -> None:
    leaf = make_cert(sans=("p12.example",))
    data = pkcs12.serialize_key_and_certificates(
        b"leaf", leaf.key, leaf.cert, [make_ca().cert], serialization.NoEncryption())  # type: ignore[arg-type]
    result = read_file(write(tmp_path / "bundle.pfx", data, 0o600), limits=ONE_SHOT)
    assert result.error is None
    assert result.certificates[0].facts.sha256 == leaf.sha256
    assert result.certificates[0].fmt == "pkcs12"
    assert len(result.certificates) == 2
    assert result.keys[0].encrypted is False
    assert result.keys[0].spki_sha256 == result.certificates[0].spki_sha256
    assert "private-key-unencrypted" in {f.code for f in result.findings}


def test_pkcs12_with_the_configured_password(tmp_path: Path) -> None:
    leaf = make_cert(sans=("p12.example",))
    data = pkcs12.serialize_key_and_certificates(
        b"leaf", leaf.key, leaf.cert, None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(b"s3cret"))
    path = write(tmp_path / "store.bin", data, 0o600)
    result = read_file(path, limits=ONE_SHOT, passwords=(b"wrong", b"s3cret"))
    assert result.error is None
    assert result.certificates[0].facts.sha256 == leaf.sha256
    assert result.keys[0].encrypted is True
    assert "private-key-unencrypted" not in {f.code for f in result.findings}


def test_pkcs12_with_a_wrong_password_is_pkcs12_password(tmp_path: Path) -> None:
    leaf = make_cert()
    data = pkcs12.serialize_key_and_certificates(
        b"leaf", leaf.key, leaf.cert, None,  # type: ignore[arg-type]
        serialization.BestAvailableEncryption(b"s3cret"))
    result = read_file(write(tmp_path / "store.p12", data), limits=ONE_SHOT,
                       passwords=(b"guess",))
    assert result.error is not None
    assert result.error.code == "pkcs12-password"
    assert "1 configured password" in result.error.message
    assert b"guess".decode() not in result.error.message  # secrets never in messages


@pytest.mark.parametrize(("magic", "what"), [(b"\xfe\xed\xfe\xed", "Java KeyStore"),
                                             (b"\xce\xce\xce\xce", "JCEKS")])
def test_java_keystore_is_unsupported_format(tmp_path: Path, magic: bytes, what: str) -> None:
    data = magic + b"\x00\x00\x00\x02\x00\x00\x00\x01" + b"\x00" * 64
    result = read_file(write(tmp_path / "keystore", data), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "unsupported-format"
    assert what in result.error.message


def test_der_shaped_garbage_is_garbage(tmp_path: Path) -> None:
    result = read_file(write(tmp_path / "junk", b"\x30\x03\x06\x01\x00"), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "garbage"
    assert result.skipped is None


@pytest.mark.parametrize(("name", "data"), [
    ("README", b"This directory contains your keys and certificates.\n\n`privkey.pem`  : ..."),
    ("options-ssl-nginx.conf", b"ssl_session_cache shared:le_nginx_SSL:10m;\r\n\tssl_protocols"),
    ("日本語.txt", "証明書の更新手順\n".encode()),
    ("blob", b"\x00\x01\x02 random bytes \xff"),
])
def test_text_and_binary_without_certificate_structure_are_skipped_not_errors(
    tmp_path: Path, name: str, data: bytes,
) -> None:
    result = read_file(write(tmp_path / name, data), limits=ONE_SHOT)
    assert result.error is None
    assert result.skipped is not None
    assert result.skipped.code == "not-certificate-material"
    assert result.certificates == ()
    assert result.keys == ()


@pytest.mark.parametrize("name", ["cert.pem", "site.CRT", "privkey.key", "bundle.p12"])
def test_a_name_that_promises_a_certificate_keeps_unrecognised_content_an_error(
    tmp_path: Path, name: str,
) -> None:
    result = read_file(write(tmp_path / name, b"just some text\n"), limits=ONE_SHOT)
    assert result.skipped is None
    assert result.error is not None
    assert result.error.code == "garbage"


@pytest.mark.parametrize("data", [b"-----BEGIN CERTIFICATE-----\nMIIB\n",
                                  b"-----BEGIN lowercase-----\n"])
def test_pem_markers_that_cannot_be_read_stay_errors(tmp_path: Path, data: bytes) -> None:
    result = read_file(write(tmp_path / "notes", data), limits=ONE_SHOT)
    assert result.skipped is None
    assert result.error is not None


@pytest.mark.parametrize("data", [b"", b"  \r\n\n"])
def test_empty_file_is_empty(tmp_path: Path, data: bytes) -> None:
    result = read_file(write(tmp_path / "empty.pem", data), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "empty"


def test_truncated_pem_is_truncated(tmp_path: Path) -> None:
    pem = make_cert().pem
    result = read_file(write(tmp_path / "cut.pem", pem[: len(pem) // 2]), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "truncated"


def test_truncated_second_pem_block_keeps_the_first(tmp_path: Path) -> None:
    a, b = make_cert(sans=("a.example",)), make_cert(sans=("b.example",))
    data = a.pem + b.pem[:300]
    result = read_file(write(tmp_path / "cut.pem", data), limits=ONE_SHOT)
    assert result.error is None
    assert [c.facts.sha256 for c in result.certificates] == [a.sha256]
    assert [(e.code, e.index) for e in result.cert_errors] == [("truncated", 1)]
    assert any(f.code == "truncated" and f.severity is Severity.CRITICAL
               for f in result.findings)


def test_pem_block_missing_its_end_before_another_block(tmp_path: Path) -> None:
    a, b = make_cert(sans=("a.example",)), make_cert(sans=("b.example",))
    cut = a.pem.split(b"-----END")[0]
    result = read_file(write(tmp_path / "cut.pem", cut + b.pem), limits=ONE_SHOT)
    assert [c.facts.sha256 for c in result.certificates] == [b.sha256]
    assert [e.code for e in result.cert_errors] == ["truncated"]


def test_truncated_der_is_truncated(tmp_path: Path) -> None:
    der = make_cert().der
    result = read_file(write(tmp_path / "cut.der", der[:-40]), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "truncated"


def test_truncated_der_inside_a_pem_block_is_truncated(tmp_path: Path) -> None:
    import base64

    der = make_cert().der[:-30]
    pem = (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der)
           + b"-----END CERTIFICATE-----\n")
    result = read_file(write(tmp_path / "cut.pem", pem), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "truncated"


def test_encrypted_private_key_is_recorded_without_its_spki(tmp_path: Path) -> None:
    issued = make_cert()
    result = read_file(write(tmp_path / "key.pem", issued.key_pem(b"pass"), 0o600),
                       limits=ONE_SHOT)
    assert result.error is None
    assert result.certificates == ()
    key = result.keys[0]
    assert (key.encrypted, key.spki_sha256) == (True, None)
    assert {f.code for f in result.findings} == set()


def test_encrypted_private_key_opened_by_a_configured_password_is_matched(
    tmp_path: Path,
) -> None:
    issued = make_cert()
    path = write(tmp_path / "both.pem", issued.pem + issued.key_pem(b"pass"), 0o600)
    result = read_file(path, limits=ONE_SHOT, passwords=(b"pass",))
    assert result.keys[0].encrypted is True
    assert result.keys[0].spki_sha256 == result.certificates[0].spki_sha256


def test_rsa_key_in_traditional_format(tmp_path: Path) -> None:
    key = shared_key("rsa")
    pem = key.private_bytes(serialization.Encoding.PEM,  # type: ignore[union-attr]
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    result = read_file(write(tmp_path / "rsa.key", pem, 0o600), limits=ONE_SHOT)
    assert (result.keys[0].key_type, result.keys[0].key_size) == ("rsa", 2048)


def test_der_private_key_is_a_key(tmp_path: Path) -> None:
    key = fresh_key("ed25519")
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    result = read_file(write(tmp_path / "key.der", der, 0o600), limits=ONE_SHOT)
    assert result.error is None
    assert result.keys[0].key_type == "ed25519"


def test_world_readable_unencrypted_key_is_critical(tmp_path: Path) -> None:
    result = read_file(write(tmp_path / "privkey.pem", make_cert().key_pem(), 0o644),
                       limits=ONE_SHOT)
    by_code = {f.code: f for f in result.findings}
    assert by_code["private-key-world-readable"].severity is Severity.CRITICAL
    assert "0644" in by_code["private-key-world-readable"].message
    assert by_code["private-key-unencrypted"].severity is Severity.INFO


def test_group_readable_unencrypted_key_is_a_warning(tmp_path: Path) -> None:
    result = read_file(write(tmp_path / "privkey.pem", make_cert().key_pem(), 0o640),
                       limits=ONE_SHOT)
    by_code = {f.code: f for f in result.findings}
    assert by_code["private-key-group-readable"].severity is Severity.WARNING
    assert "private-key-world-readable" not in by_code


def test_owner_only_unencrypted_key_is_only_informational(tmp_path: Path) -> None:
    result = read_file(write(tmp_path / "privkey.pem", make_cert().key_pem(), 0o600),
                       limits=ONE_SHOT)
    assert [(f.code, f.severity) for f in result.findings] == [
        ("private-key-unencrypted", Severity.INFO)]


def test_csr_only_file_has_no_certificate_and_says_what_it_holds(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr.example")]))
           .sign(shared_key(), hashes.SHA256()))  # type: ignore[arg-type]
    pem = csr.public_bytes(serialization.Encoding.PEM)
    result = read_file(write(tmp_path / "req.pem", pem), limits=ONE_SHOT)
    assert result.error is None
    assert result.certificates == ()
    assert result.skipped is not None
    assert result.skipped.code == "no-certificate"
    assert "signing request" in result.skipped.message


def test_public_key_file_is_skipped(tmp_path: Path) -> None:
    pem = shared_key().public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    result = read_file(write(tmp_path / "pub.pem", pem), limits=ONE_SHOT)
    assert result.error is None
    assert result.skipped is not None
    assert "public key" in result.skipped.message


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"", "empty"), (b"\xfe\xed\xfe\xed", "jks"), (b"-----BEGIN X-----", "pem"),
     (b"\x01", "binary"), (b"hello\n", "text"), (b"\x30\x03\x06\x01\x00", "garbage")],
)
def test_sniff_names_the_format(data: bytes, kind: str) -> None:
    assert sniff(data) == kind


def test_sniff_tells_der_shapes_apart() -> None:
    leaf = make_cert()
    assert sniff(leaf.der) == "der"
    assert sniff(pkcs7.serialize_certificates([leaf.cert], serialization.Encoding.DER)) == "pkcs7"
    p12 = pkcs12.serialize_key_and_certificates(b"x", leaf.key, leaf.cert, None,  # type: ignore[arg-type]
                                                serialization.NoEncryption())
    assert sniff(p12) == "pkcs12"


_LEAF_DER = make_cert(sans=("fuzz.example",)).der
_LEAF_PEM = make_cert(sans=("fuzz.example",)).pem


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parse_content_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    parsed = parse_content(data, path="fuzz")
    assert (parsed.error is not None or parsed.skipped is not None or parsed.certificates
            or parsed.keys)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([_LEAF_DER, _LEAF_PEM]), st.integers(min_value=0), st.integers(0, 7),
       st.integers(min_value=0))
def test_parse_content_never_raises_on_damaged_certificates(
    original: bytes, cut: int, bit: int, where: int
) -> None:
    data = bytearray(original[: cut % (len(original) + 1)])
    if data:
        data[where % len(data)] ^= 1 << bit
    parsed = parse_content(bytes(data), path="fuzz")
    # every outcome is accounted for: certificates, or a coded error or finding
    assert (parsed.error is not None or parsed.skipped is not None or parsed.certificates
            or parsed.keys)
    if parsed.error is not None:
        assert parsed.error.code in ERROR_CODES


def test_der_csr_is_not_a_certificate_and_says_so(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr.example")]))
           .sign(shared_key(), hashes.SHA256()))  # type: ignore[arg-type]
    result = read_file(write(tmp_path / "req.der", csr.public_bytes(serialization.Encoding.DER)),
                       limits=ONE_SHOT)
    assert result.error is None
    assert result.skipped is not None
    assert result.skipped.code == "no-certificate"


def test_der_sequence_that_is_no_known_structure_is_garbage(tmp_path: Path) -> None:
    data = bytes.fromhex("300a") + bytes.fromhex("3003010100") + bytes.fromhex("0403010203")
    result = read_file(write(tmp_path / "odd.der", data), limits=ONE_SHOT)
    assert result.error is not None
    assert result.error.code == "garbage"


def test_openssl_trusted_certificate_block_is_read_without_its_trust_data(tmp_path: Path) -> None:
    import base64

    issued = make_cert(sans=("trusted.example",))
    aux = bytes.fromhex("300c300a06082b06010505070301")  # X509_CERT_AUX: trust serverAuth
    pem = (b"-----BEGIN TRUSTED CERTIFICATE-----\n" + base64.encodebytes(issued.der + aux)
           + b"-----END TRUSTED CERTIFICATE-----\n")
    result = read_file(write(tmp_path / "trusted.pem", pem), limits=ONE_SHOT)
    assert [c.facts.sha256 for c in result.certificates] == [issued.sha256]


def test_two_pem_blocks_missing_their_end_lines_before_a_good_one(tmp_path: Path) -> None:
    a, b, c = (make_cert(sans=(f"{n}.example",)) for n in "abc")
    cut_a = a.pem.split(b"-----END")[0]
    cut_b = b.pem.split(b"-----END")[0]
    result = read_file(write(tmp_path / "cut.pem", cut_a + cut_b + c.pem), limits=ONE_SHOT)
    assert [x.facts.sha256 for x in result.certificates] == [c.sha256]
    assert [e.code for e in result.cert_errors] == ["truncated", "truncated"]


_LAZY_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]+)-----[ \t]*\r?\n(.*?)-----END ([A-Z0-9 #]+)-----", re.S)
_ANY_BEGIN = re.compile(rb"-----BEGIN [A-Z0-9 #]+-----")
_PEM_PIECES = [b"-", b"-----", b"-----BEGIN A-----\n", b"-----BEGIN A-----\r\n", b"-----END A-----",
               b"-----END B-----", b"-----END  A-----", b"x", b"\n", b"A", b" ", b"MIIB+/==",
               b"-----BEGIN B-----\n", b"-----BEGIN A----- x\n"]


def _blocks_by_lazy_pattern(data: bytes) -> list[tuple[bytes, bytes]]:
    """The reader as it was (quadratic, recursive): the reference for where blocks are."""
    out: list[tuple[bytes, bytes]] = []
    for m in _LAZY_PEM_BLOCK.finditer(data):
        inner = _ANY_BEGIN.search(m.group(2))
        if inner is not None:
            out += _blocks_by_lazy_pattern(data[m.start(2) + inner.start() : m.end()])
        elif m.group(1) == m.group(3):
            out.append((m.group(1), m.group(2)))
    return out


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_PEM_PIECES), max_size=40))
def test_pem_blocks_are_exactly_what_the_plain_lazy_pattern_finds(pieces: list[bytes]) -> None:
    # The one-pass reader must take every complete block (and stop every body) exactly where
    # the obvious lazy regular expression, re-applied after each stray BEGIN, does, whatever
    # mix of dashes, stray BEGINs and ENDs surrounds it.
    data = b"".join(pieces)
    got = [(b.label, b.body) for b in _pem_items(data) if isinstance(b, _PemBlock)]
    assert got == _blocks_by_lazy_pattern(data)


@pytest.mark.parametrize("data", [b"\x30\x03\x02\x01", b"\x30\x80\x02\x01"])
def test_der_cut_inside_its_version_is_truncated_not_a_crash(data: bytes) -> None:
    # sniff() indexed one byte past the end here (found by the fuzz corpus): an IndexError
    # that escaped the reader and took `scan` down.
    parsed = parse_content(data, path="cut.der")
    assert parsed.error is not None
    assert parsed.error.code in ("truncated", "garbage")


def _variants(pem: bytes) -> list[bytes]:
    """One certificate's PEM as stores and attackers write it: what the shortcut for a file
    of one certificate takes, and what it must leave to the general walk."""
    head, tail = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    body = pem[len(head) : pem.index(tail)]
    return [
        pem, pem.replace(b"\n", b"\r\n"), b"subject=CN=x\n" + pem + b"notes\n",
        head + b"  \t\n" + body.lstrip(b"\n") + tail + b"\n",  # blanks after BEGIN
        head + b" junk\n" + body.lstrip(b"\n") + tail,  # text after BEGIN
        b"-" + pem, b"------" + pem[5:], pem + b"-----", b"-----" + pem, pem + pem,
        pem.replace(tail, b"-----END X509 CERTIFICATE-----"),  # END of another label
        pem[: pem.index(tail)],  # no END
        head + tail + b"\n",  # empty body
        head + b"\n" + tail + b"\n",
        pem.replace(b"M", b"*", 3),  # base64 with junk characters
        pem[: len(pem) // 2] + tail,  # cut body
        pem.replace(head, b"-----BEGIN TRUSTED CERTIFICATE-----"),
        tail + b"\n" + pem,  # an END before the block
    ]


def test_a_file_of_one_certificate_reads_as_the_general_walk_reads_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut for the common file (one certificate, no other marker) must give exactly
    what the general PEM walk gives, on everything near that shape."""
    import agent.formats as formats

    pem = make_cert(sans=("one.example",)).pem
    variants = _variants(pem)
    fast = [parse_content(data, path="x.pem", mode=0o644) for data in variants]
    assert sum(formats._single_certificate(data) is not None for data in variants) >= 5
    monkeypatch.setattr(formats, "_single_certificate", lambda data: None)
    general = [parse_content(data, path="x.pem", mode=0o644) for data in variants]
    for data, quick, walked in zip(variants, fast, general, strict=True):
        assert quick == walked, data
