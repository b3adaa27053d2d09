"""Recognising what is imported: keys (encrypted too), CSRs, certificates, bundles, documents."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from tests.vault.helpers import PDF, csr_pem, issued, key_pem, p7, p12
from vault import formats
from vault.errors import VaultInputError


def never_asked(what: str) -> bytes | None:
    raise AssertionError(f"asked for a password for {what}")


def test_a_pem_bundle_yields_one_certificate_per_block() -> None:
    leaf, other = issued("a.example"), issued("b.example")
    items = formats.recognise(leaf.pem + other.pem, source="fullchain.pem", ask=never_asked)
    assert [i.kind for i in items] == ["certificate", "certificate"]
    # 0-based, as `scan` numbers the certificates of a file (fullchain.pem#0 is the leaf)
    assert [i.source for i in items] == ["fullchain.pem#0", "fullchain.pem#1"]
    assert items[0].data == leaf.pem
    assert items[1].meta["subject"] == "CN=b.example"


def test_key_and_certificate_in_one_pem_file() -> None:
    item = issued()
    items = formats.recognise(key_pem(item) + item.pem, source="combined.pem", ask=never_asked)
    assert [i.kind for i in items] == ["private-key", "certificate"]
    # numbered per kind like scan and the daemon's escrow labels: the certificate is #0
    assert [i.source for i in items] == ["combined.pem#key0", "combined.pem#0"]


def test_bundle_numbering_matches_scan_for_pkcs7_csrs_and_single_objects() -> None:
    leaf, other = issued("a.example"), issued("b.example")
    p7_pem = pkcs7.serialize_certificates([leaf.cert, other.cert], serialization.Encoding.PEM)
    items = formats.recognise(leaf.pem + p7_pem + csr_pem(leaf), source="b.pem",
                              ask=never_asked)
    assert [i.source for i in items] == ["b.pem#0", "b.pem#1", "b.pem#2", "b.pem#csr0"]
    der = formats.recognise(p7(leaf, other), source="chain.p7b", ask=never_asked)
    assert [i.source for i in der] == ["chain.p7b#0", "chain.p7b#1"]
    assert [i.source for i in formats.recognise(leaf.pem, source="one.pem",
                                                ask=never_asked)] == ["one.pem"]


def test_an_encrypted_key_asks_for_its_password_and_is_kept_decrypted() -> None:
    item = issued()
    asked: list[str] = []

    def ask(what: str) -> bytes:
        asked.append(what)
        return b"s3cret"

    [imported] = formats.recognise(key_pem(item, b"s3cret"), source="enc.key", ask=ask)
    assert asked == ["private key in enc.key"]
    assert imported.kind == "private-key"
    key = serialization.load_pem_private_key(imported.data, None)
    assert key.public_key() == item.key.public_key()


def test_a_wrong_key_password_is_a_clear_error_naming_the_file() -> None:
    with pytest.raises(VaultInputError, match=r"enc\.key: wrong password"):
        formats.recognise(key_pem(issued(), b"right"), source="enc.key", ask=lambda w: b"wrong")


def test_an_encrypted_key_without_a_password_callback_is_refused() -> None:
    with pytest.raises(VaultInputError, match="encrypted"):
        formats.recognise(key_pem(issued(), b"right"), source="enc.key")


@pytest.mark.parametrize("kind", ["certificate", "csr", "private-key"])
def test_der_objects_are_recognised(kind: str) -> None:
    item = issued()
    data = {
        "certificate": item.der,
        "csr": x509.load_pem_x509_csr(csr_pem(item)).public_bytes(serialization.Encoding.DER),
        "private-key": item.key.private_bytes(serialization.Encoding.DER,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()),
    }[kind]
    [imported] = formats.recognise(data, source="x.der", ask=never_asked)
    assert imported.kind == kind


def test_pkcs12_with_a_password_is_kept_as_given() -> None:
    item = issued()
    bundle = p12(item, b"p12-pass")
    [imported] = formats.recognise(bundle, source="site.p12", ask=lambda w: b"p12-pass")
    assert imported.kind == "pkcs12"
    assert imported.data == bundle
    assert imported.meta["password_protected"] == "yes"


def test_pkcs12_with_the_wrong_password_is_refused() -> None:
    with pytest.raises(VaultInputError, match=r"site\.p12: wrong password"):
        formats.recognise(p12(issued(), b"p12-pass"), source="site.p12", ask=lambda w: b"no")


def test_pkcs7_yields_its_certificates() -> None:
    items = formats.recognise(p7(issued("a.example"), issued("b.example")), source="chain.p7b",
                              ask=never_asked)
    assert [i.kind for i in items] == ["certificate", "certificate"]


def test_anything_else_binary_is_a_document() -> None:
    [imported] = formats.recognise(PDF, source="ev-approval.pdf", ask=never_asked)
    assert imported.kind == "document"
    assert imported.data == PDF


def test_truncated_pem_is_an_error_not_a_document() -> None:
    pem = issued().pem
    with pytest.raises(VaultInputError, match="no complete"):
        formats.recognise(pem[: len(pem) // 2], source="cut.pem", ask=never_asked)


def test_an_unsupported_pem_block_is_named() -> None:
    data = b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(VaultInputError, match="unsupported PEM block 'OPENSSH PRIVATE KEY'"):
        formats.recognise(data, source="id_ed25519", ask=never_asked)


def test_a_forced_kind_that_does_not_fit_is_refused() -> None:
    with pytest.raises(VaultInputError, match="is a certificate, not a private-key"):
        formats.recognise(issued().pem, source="c.pem", kind="private-key")
    [doc] = formats.recognise(issued().pem, source="c.pem", kind="document")
    assert doc.kind == "document"


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(VaultInputError, match=r"empty\.pem: empty file"):
        formats.recognise(b"", source="empty.pem")


def test_unknown_key_types_and_bad_common_names_are_refused() -> None:
    with pytest.raises(VaultInputError, match="unknown key type 'dsa:1024'"):
        formats.generate_key("dsa:1024")
    with pytest.raises(VaultInputError, match="1 to 64 characters"):
        formats.build_csr(formats.generate_key("ec:p256"), common_name="x" * 65)


def test_an_entry_larger_than_the_limit_is_refused_with_the_limit_named() -> None:
    with pytest.raises(VaultInputError, match="limit of 64 MiB"):
        formats.analyse("document", b"\0" * (formats.MAX_ENTRY_SIZE + 1))
    assert formats.analyse("document", b"\0" * 1024).spki is None
