"""The Vault: round trips, idempotent put, tamper detection, permissions, rotation, backup."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.vault.conftest import StepClock
from tests.vault.helpers import PDF, csr_pem, issued, key_pem, p12, sql
from vault import (
    KeyFileSource,
    PassphraseSource,
    Vault,
    create_key_file,
    open_vault,
    restore_vault,
)
from vault.errors import (
    VaultConflictError,
    VaultEntryNotFoundError,
    VaultFormatError,
    VaultInputError,
    VaultIntegrityError,
    VaultLockedError,
    VaultNotFoundError,
    VaultPermissionError,
)

FAST_SCRYPT = {"n": 2**10, "r": 8, "p": 1}


def file_digest(path: Path) -> str:
    parts = [path.read_bytes()]
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        parts.append(side.read_bytes() if side.exists() else b"")
    return hashlib.sha256(b"|".join(parts)).hexdigest()


# ------------------------------------------------------------------ round trips

@pytest.mark.parametrize("key_kind", ["ec", "rsa", "ed25519"])
def test_every_kind_round_trips_byte_for_byte(vault: Vault, key_kind: str) -> None:
    item = issued(kind=key_kind)
    objects = {
        "private-key": key_pem(item),
        "certificate": item.pem,
        "csr": csr_pem(item),
        "pkcs12": p12(item, b"bundle-pass"),
        "document": PDF,
    }
    ids = {kind: vault.put(kind, data, label=kind).entry_id for kind, data in objects.items()}
    for kind, data in objects.items():
        assert vault.get(ids[kind]) == data
        assert vault.info(ids[kind]).kind == kind
    assert vault.verify().ok


def test_certificates_in_der_round_trip_as_given(vault: Vault) -> None:
    item = issued()
    entry = vault.put("certificate", item.der).entry_id
    assert vault.get(entry) == item.der
    assert vault.export(entry, "pem").data == item.pem


def test_exports_convert_between_pem_der_and_p12(vault: Vault) -> None:
    item = issued()
    key_id = vault.put("private-key", key_pem(item)).entry_id
    cert_id = vault.put("certificate", item.pem).entry_id
    csr_id = vault.put("csr", csr_pem(item)).entry_id
    der_key = vault.export(key_id, "der").data
    assert serialization.load_der_private_key(der_key, None).public_key() == item.key.public_key()
    assert vault.export(cert_id, "der").data == item.der
    assert x509.load_der_x509_csr(vault.export(csr_id, "der").data).public_key() \
        == item.key.public_key()
    bundle = vault.export(key_id, "p12", p12_password=lambda: b"export-pass").data
    key, cert, _ = pkcs12.load_key_and_certificates(bundle, b"export-pass")
    assert cert is not None
    assert cert.public_bytes(serialization.Encoding.DER) == item.der
    assert key is not None
    assert key.public_key() == item.key.public_key()
    # From the certificate side, the matching key comes along too.
    bundle = vault.export(cert_id, "p12", p12_password=lambda: b"pw2").data
    key, cert, _ = pkcs12.load_key_and_certificates(bundle, b"pw2")
    assert key is not None
    assert cert is not None


def test_export_refuses_conversions_that_make_no_sense(vault: Vault) -> None:
    doc = vault.put("document", PDF).entry_id
    with pytest.raises(VaultInputError, match="documents are exported as stored"):
        vault.export(doc, "pem")
    csr = vault.put("csr", csr_pem(issued())).entry_id
    with pytest.raises(VaultInputError, match="cannot be exported as p12"):
        vault.export(csr, "p12", p12_password=lambda: b"x")
    assert vault.export(doc).data == PDF


def test_put_is_idempotent_for_identical_bytes_of_the_same_kind(vault: Vault) -> None:
    item = issued()
    first = vault.put("certificate", item.pem, label="first")
    again = vault.put("certificate", item.pem, label="second")
    assert first.created
    assert not again.created
    assert again.entry_id == first.entry_id
    as_document = vault.put("document", item.pem)
    assert as_document.created
    assert as_document.entry_id != first.entry_id
    assert len(vault.entries()) == 2
    assert [r.action for r in vault.audit_records()].count("put") == 2


def test_put_returns_the_certificate_or_key_held_in_another_encoding(vault: Vault) -> None:
    """`vault import` keeps a certificate as PEM and a key as PKCS#8; the daemon escrows a
    certificate as DER and a key as found (OpenSSL's traditional format): each was a second
    entry of the same object."""
    item = issued()
    cert = vault.put("certificate", item.pem)
    key = vault.put("private-key", key_pem(item))
    traditional = item.key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption())
    assert vault.put("certificate", item.der).entry_id == cert.entry_id
    again = vault.put("private-key", traditional)
    assert (again.entry_id, again.created) == (key.entry_id, False)
    assert len(vault.entries()) == 2


def test_private_key_for_a_certificate_is_found_by_public_key_never_by_a_copied_tag(
        vault: Vault, vault_path: Path) -> None:
    held, other = issued("held.example.jp"), issued("other.example.jp")
    key = vault.put("private-key", key_pem(held)).entry_id
    vault.put("certificate", held.der)
    stranger = vault.put("certificate", other.der).entry_id
    assert vault.private_key_for("certificate", held.pem) == key
    assert vault.private_key_for("certificate", other.der) is None
    assert vault.private_key_for("certificate", b"not a certificate") is None
    # the other certificate's tag copied onto the held key: it vouches for nothing
    sql(vault_path, "UPDATE entries SET match_tag = (SELECT match_tag FROM entries WHERE id = ?) "
        "WHERE id = ?", (stranger, key))
    with pytest.raises(VaultIntegrityError):
        vault.private_key_for("certificate", other.der)


def test_the_fingerprint_is_keyed_never_a_plain_hash(vault: Vault, vault_path: Path) -> None:
    vault.put("document", b"guessable content")
    stored = sql(vault_path, "SELECT fingerprint FROM entries")[0][0]
    for plain in (hashlib.sha256(b"guessable content").hexdigest(),
                  hashlib.sha256(b"documentguessable content").hexdigest()):
        assert stored != plain


def test_put_refuses_data_that_is_not_its_kind(vault: Vault) -> None:
    with pytest.raises(VaultInputError, match="not a valid private-key"):
        vault.put("private-key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(VaultInputError, match="not a valid certificate"):
        vault.put("certificate", PDF)
    with pytest.raises(VaultInputError, match="unknown kind 'secret'"):
        vault.put("secret", b"x")
    with pytest.raises(VaultInputError, match="empty"):
        vault.put("document", b"")
    assert vault.entries() == []


def test_put_refuses_an_encrypted_key_and_says_how_to_import_it(vault: Vault) -> None:
    with pytest.raises(VaultInputError, match=r"encrypted.*vault import"):
        vault.put("private-key", key_pem(issued(), b"pass"))


def test_nothing_is_stored_in_plaintext(vault: Vault, vault_path: Path) -> None:
    item = issued()
    secret = key_pem(item)
    der = item.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    vault.put("private-key", secret)
    vault.put("document", PDF)
    vault.close()
    blob = b"".join(p.read_bytes() for p in vault_path.parent.iterdir())
    assert secret[30:80] not in blob
    assert der[-40:] not in blob
    assert PDF[:40] not in blob


def test_put_many_is_all_or_nothing(vault: Vault) -> None:
    from vault import PutRequest

    with pytest.raises(VaultInputError):
        vault.put_many([PutRequest(kind="document", data=b"one"),
                        PutRequest(kind="certificate", data=b"not a certificate")])
    assert vault.entries() == []


def test_entry_ids_resolve_from_a_unique_prefix(vault: Vault) -> None:
    entry = vault.put("document", b"prefix").entry_id
    assert vault.get(entry[:6]) == b"prefix"
    with pytest.raises(VaultEntryNotFoundError, match="no entry 'ffffffffffffffff'"):
        vault.get("ffffffffffffffff")


def test_update_makes_a_new_version_under_a_fresh_data_key(vault: Vault, vault_path: Path) -> None:
    entry = vault.put("document", b"doc", label="old").entry_id
    before = sql(vault_path, "SELECT wrapped_key, ciphertext FROM entries")[0]
    info = vault.update(entry, label="new", contract_id="C-1")
    after = sql(vault_path, "SELECT wrapped_key, ciphertext FROM entries")[0]
    assert (info.version, info.label, info.contract_id) == (2, "new", "C-1")
    assert before[0] != after[0]
    assert before[1] != after[1]
    assert vault.get(entry) == b"doc"


def test_rm_removes_the_entry_but_the_audit_log_keeps_it(vault: Vault) -> None:
    entry = vault.put("document", b"gone soon", label="tmp").entry_id
    vault.remove(entry)
    with pytest.raises(VaultEntryNotFoundError):
        vault.get(entry)
    history = vault.history(entry)
    assert [r.action for r in history] == ["put", "rm"]
    assert history[-1].actor == "tester@host"
    assert vault.verify().ok


def test_list_filters_by_kind_and_contract_and_needs_no_key(vault: Vault, vault_path: Path) -> None:
    vault.put("document", b"a", contract_id="C-1")
    vault.put("document", b"b", contract_id="C-2")
    vault.put("certificate", issued().pem, contract_id="C-1")
    vault.close()
    with open_vault(vault_path, None) as locked:
        assert len(locked.entries()) == 3
        assert len(locked.entries(kind="document")) == 2
        assert len(locked.entries(contract_id="C-1")) == 2
        assert len(locked.entries(kind="document", contract_id="C-1")) == 1
        with pytest.raises(VaultLockedError, match="locked"):
            locked.get(locked.entries()[0].entry_id)
        with pytest.raises(VaultLockedError):
            locked.put("document", b"c")


def test_match_pairs_keys_with_their_certificates_and_csrs(vault: Vault) -> None:
    paired, lonely_key, lonely_cert = issued("a.example"), issued("b.example"), issued("c.example")
    key_id = vault.put("private-key", key_pem(paired)).entry_id
    cert_id = vault.put("certificate", paired.pem).entry_id
    csr_id = vault.put("csr", csr_pem(paired)).entry_id
    lonely_key_id = vault.put("private-key", key_pem(lonely_key)).entry_id
    lonely_cert_id = vault.put("certificate", lonely_cert.pem).entry_id
    report = vault.match()
    assert len(report.groups) == 1
    group = report.groups[0]
    assert (group.keys, group.certificates, group.csrs) == ((key_id,), (cert_id,), (csr_id,))
    assert report.keys_without_certificate == (lonely_key_id,)
    assert report.certificates_without_key == (lonely_cert_id,)


@pytest.mark.parametrize("spec", ["ec:p256", "rsa:3072", "ed25519"])
def test_gen_csr_stores_the_key_encrypted_and_returns_its_csr(vault: Vault, vault_path: Path,
                                                              spec: str) -> None:
    result = vault.gen_csr(common_name="shop.example.jp", sans=("shop.example.jp", "192.0.2.1"),
                           key_spec=spec, contract_id="C-9")
    csr = x509.load_pem_x509_csr(result.csr_pem)
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["shop.example.jp"]
    key_bytes = vault.get(result.key_id)
    key = serialization.load_pem_private_key(key_bytes, None)
    assert key.public_key() == csr.public_key()
    assert vault.get(result.csr_id) == result.csr_pem
    assert vault.info(result.key_id).contract_id == "C-9"
    assert vault.match().groups[0].keys == (result.key_id,)
    vault.close()
    # The key only ever existed in memory and, encrypted, in the vault file.
    assert sorted(p.name for p in vault_path.parent.iterdir()) == ["vault.sqlite3"]
    blob = vault_path.read_bytes()
    assert b"PRIVATE KEY" not in blob
    assert key_bytes[40:90] not in blob


def test_gen_csr_rejects_bad_names(vault: Vault) -> None:
    with pytest.raises(VaultInputError, match="neither a DNS name nor an IP"):
        vault.gen_csr(common_name="x.example", sans=("bad name!",))
    assert vault.entries() == []


# ------------------------------------------------------------------ keys and locking

def test_a_wrong_key_is_refused_before_anything_is_written(vault: Vault, vault_path: Path,
                                                           tmp_path: Path) -> None:
    vault.put("document", b"kept")
    vault.close()
    before = file_digest(vault_path)
    other = tmp_path / "other.key"
    create_key_file(other)
    with pytest.raises(VaultLockedError, match="does not open vault"):
        open_vault(vault_path, KeyFileSource(other))
    assert file_digest(vault_path) == before


def test_a_missing_key_is_a_clear_error(vault: Vault, vault_path: Path, tmp_path: Path) -> None:
    vault.close()
    with pytest.raises(VaultLockedError, match="does not exist"):
        open_vault(vault_path, KeyFileSource(tmp_path / "missing.key"))


def test_opening_a_missing_vault_without_create_says_how_to_create_one(
        tmp_path: Path, source: KeyFileSource) -> None:
    with pytest.raises(VaultNotFoundError, match="vault init"):
        open_vault(tmp_path / "nope.sqlite3", source)


def test_passphrase_vault_opens_only_with_its_passphrase(private_dir: Path) -> None:
    path = private_dir / "p.sqlite3"
    right = PassphraseSource(get_passphrase=lambda c: "right one", new_params=FAST_SCRYPT)
    with open_vault(path, right, create=True) as vault:
        entry = vault.put("document", b"behind a passphrase").entry_id
    with open_vault(path, PassphraseSource(get_passphrase=lambda c: "right one")) as vault:
        assert vault.get(entry) == b"behind a passphrase"
        assert vault.status().keyed_with == "passphrase"
    with pytest.raises(VaultLockedError, match="does not open"):
        open_vault(path, PassphraseSource(get_passphrase=lambda c: "wrong one"))


# ------------------------------------------------------------------ tampering

def test_tampered_ciphertext_is_detected(vault: Vault, vault_path: Path) -> None:
    entry = vault.put("document", b"original").entry_id
    blob = bytearray(sql(vault_path, "SELECT ciphertext FROM entries")[0][0])  # type: ignore[arg-type]
    blob[20] ^= 0xFF
    sql(vault_path, "UPDATE entries SET ciphertext = ?", (bytes(blob),))
    with pytest.raises(VaultIntegrityError, match=f"entry {entry}: integrity check failed"):
        vault.get(entry)
    report = vault.verify()
    assert not report.ok
    assert any(entry in p for p in report.problems)


def test_swapped_rows_are_detected(vault: Vault, vault_path: Path) -> None:
    a = vault.put("document", b"contract A").entry_id
    b = vault.put("document", b"contract B").entry_id
    rows = dict((r[0], r[1:]) for r in sql(
        vault_path, "SELECT id, wrapped_key, ciphertext FROM entries"))
    sql(vault_path, "UPDATE entries SET wrapped_key = ?, ciphertext = ? WHERE id = ?",
        (*rows[b], a))
    sql(vault_path, "UPDATE entries SET wrapped_key = ?, ciphertext = ? WHERE id = ?",
        (*rows[a], b))
    for entry in (a, b):
        with pytest.raises(VaultIntegrityError):
            vault.get(entry)
    assert len(vault.verify().problems) == 2


def test_edited_metadata_is_detected(vault: Vault, vault_path: Path) -> None:
    entry = vault.put("document", b"doc", contract_id="C-1").entry_id
    sql(vault_path, "UPDATE entries SET contract_id = 'C-2'")
    with pytest.raises(VaultIntegrityError):
        vault.get(entry)


def test_a_rolled_back_row_is_detected(vault: Vault, vault_path: Path) -> None:
    entry = vault.put("document", b"v1", label="old").entry_id
    old_row = sql(vault_path, "SELECT * FROM entries")[0]
    vault.update(entry, label="new", contract_id=None)
    # Put back the complete, validly sealed version-1 row: its own AAD is consistent.
    sql(vault_path, "DELETE FROM entries")
    placeholders = ", ".join("?" * len(old_row))
    sql(vault_path, f"INSERT INTO entries VALUES ({placeholders})", old_row)  # noqa: S608
    with pytest.raises(VaultIntegrityError):
        vault.get(entry)
    assert not vault.verify().ok


def test_a_row_deleted_behind_the_vaults_back_is_detected(vault: Vault, vault_path: Path) -> None:
    entry = vault.put("document", b"doc").entry_id
    sql(vault_path, "DELETE FROM entries")
    problems = vault.verify().problems
    assert any(f"entry {entry}: missing" in p for p in problems)


def test_a_truncated_vault_file_is_detected(vault: Vault, vault_path: Path,
                                            source: KeyFileSource) -> None:
    for i in range(60):
        vault.put("document", os.urandom(2000) + bytes([i]))
    vault.close()  # checkpoints the WAL into the main file
    size = vault_path.stat().st_size
    with open(vault_path, "r+b") as fh:
        fh.truncate(size // 2)

    def open_and_verify() -> None:
        with open_vault(vault_path, source) as reopened:
            report = reopened.verify()
            if not report.ok:
                raise VaultIntegrityError("damaged or truncated: " + report.problems[0])

    with pytest.raises(VaultIntegrityError, match="damaged or truncated"):
        open_and_verify()


def test_a_file_that_is_not_a_vault_is_a_format_error(private_dir: Path,
                                                      source: KeyFileSource) -> None:
    path = private_dir / "other.sqlite3"
    sql(path, "CREATE TABLE t (x)")
    path.chmod(0o600)
    with pytest.raises(VaultFormatError, match="not a certescrow vault"):
        open_vault(path, source)


def test_a_vault_of_a_newer_format_is_its_own_clear_error(vault: Vault, vault_path: Path,
                                                          source: KeyFileSource) -> None:
    vault.close()
    sql(vault_path, "PRAGMA user_version = 2")
    with pytest.raises(VaultFormatError, match=r"format version 2.*upgrade"):
        open_vault(vault_path, source)


def test_edited_audit_record_is_detected(vault: Vault, vault_path: Path) -> None:
    vault.put("document", b"a")
    vault.put("document", b"b")
    sql(vault_path, "DROP TRIGGER audit_no_update")
    sql(vault_path, "UPDATE audit SET actor = 'somebody-else' WHERE seq = 2")
    problems = vault.verify().problems
    assert any("audit record 2: content does not match its hash (edited)" in p for p in problems)


def test_deleted_audit_record_is_detected(vault: Vault, vault_path: Path) -> None:
    vault.put("document", b"a")
    vault.put("document", b"b")
    sql(vault_path, "DROP TRIGGER audit_no_delete")
    sql(vault_path, "DELETE FROM audit WHERE seq = 2")
    problems = vault.verify().problems
    assert any("audit record 2 missing (deleted)" in p for p in problems)


def test_truncating_the_tail_of_the_audit_log_is_detected(vault: Vault, vault_path: Path) -> None:
    vault.put("document", b"a")
    vault.put("document", b"b")
    sql(vault_path, "DROP TRIGGER audit_no_delete")
    sql(vault_path, "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)")
    problems = vault.verify().problems
    assert any("authenticated head" in p for p in problems)


def test_a_rewritten_audit_chain_fails_against_the_authenticated_head(vault: Vault,
                                                                     vault_path: Path) -> None:
    from vault import audit

    vault.put("document", b"a")
    sql(vault_path, "DROP TRIGGER audit_no_update")
    sql(vault_path, "UPDATE audit SET actor = 'forger' WHERE seq = 2")
    # The forger recomputes every hash (no key needed for SHA-256) but cannot MAC the head.
    prev = None
    for seq, at, actor, action, entry, kind, version, detail, _, _ in sql(
            vault_path, "SELECT * FROM audit ORDER BY seq"):
        prev = prev or sql(vault_path, "SELECT prev_hash FROM audit WHERE seq = 1")[0][0]
        digest = audit.record_hash(seq=seq, at=at, actor=actor, action=action,  # type: ignore[arg-type]
                                   entry_id=entry, kind=kind, version=version,  # type: ignore[arg-type]
                                   detail=detail, prev_hash=prev)  # type: ignore[arg-type]
        sql(vault_path, "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
            (prev, digest, seq))
        prev = digest
    problems = vault.verify().problems
    assert problems
    assert all("audit record" not in p for p in problems)
    assert any("authenticated head" in p for p in problems)


def test_the_audit_log_refuses_updates_and_deletes_through_sqlite(vault: Vault,
                                                                  vault_path: Path) -> None:
    import sqlite3

    vault.put("document", b"a")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sql(vault_path, "DELETE FROM audit")


def test_audit_records_say_who_what_when_and_never_a_secret(vault: Vault, clock: StepClock) -> None:
    secret = key_pem(issued())
    entry = vault.put("private-key", secret, label="web key").entry_id
    record = vault.audit_records()[-1]
    assert (record.action, record.entry_id, record.actor) == ("put", entry, "tester@host")
    assert record.at.startswith("2026-04-01T00:00:")
    assert b"PRIVATE" not in repr(vault.audit_records()).encode()


# ------------------------------------------------------------------ permissions

def test_a_new_vault_is_0600_in_a_new_0700_directory(tmp_path: Path,
                                                     source: KeyFileSource) -> None:
    path = tmp_path / "state" / "certescrow" / "vault.sqlite3"
    with open_vault(path, source, create=True) as vault:
        vault.put("document", b"x")
        assert (path.stat().st_mode & 0o777) == 0o600
        wal = path.with_name(path.name + "-wal")
        assert not wal.exists() or (wal.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700


@pytest.mark.parametrize("mode", [0o644, 0o660, 0o606])
def test_a_vault_file_readable_by_others_is_refused(vault: Vault, vault_path: Path,
                                                    source: KeyFileSource, mode: int) -> None:
    vault.close()
    vault_path.chmod(mode)
    with pytest.raises(VaultPermissionError, match=f"mode {mode:04o}.*chmod 600"):
        open_vault(vault_path, source)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o707])
def test_a_vault_in_a_directory_others_can_enter_is_refused(vault: Vault, vault_path: Path,
                                                            source: KeyFileSource,
                                                            mode: int) -> None:
    vault.close()
    vault_path.parent.chmod(mode)
    with pytest.raises(VaultPermissionError, match=r"private directory.*chmod 700"):
        open_vault(vault_path, source)


# ------------------------------------------------------------------ rotation

def test_in_place_rotation_rewraps_every_key_and_retires_the_old_one(
        vault: Vault, vault_path: Path, key_file: Path, tmp_path: Path) -> None:
    ids = [vault.put("document", f"doc {i}".encode()).entry_id for i in range(5)]
    old_key = key_file.read_bytes()
    payloads = sql(vault_path, "SELECT ciphertext FROM entries ORDER BY id")
    result = vault.rotate_key()
    assert result.entries_rewrapped == 5
    assert key_file.read_bytes() != old_key
    assert (key_file.stat().st_mode & 0o777) == 0o600
    assert not key_file.with_name(key_file.name + ".next").exists()
    assert sql(vault_path, "SELECT ciphertext FROM entries ORDER BY id") == payloads
    assert [vault.get(i) for i in ids] == [f"doc {i}".encode() for i in range(5)]
    vault.close()
    retired = tmp_path / "retired.key"
    retired.write_bytes(old_key)
    retired.chmod(0o600)
    with pytest.raises(VaultLockedError):
        open_vault(vault_path, KeyFileSource(retired))
    with open_vault(vault_path, KeyFileSource(key_file)) as reopened:
        assert reopened.verify().ok
        assert reopened.audit_records()[-1].action == "rotate-key"


def test_rotation_to_a_new_key_file_creates_it(vault: Vault, vault_path: Path,
                                               tmp_path: Path) -> None:
    entry = vault.put("document", b"moving").entry_id
    new = tmp_path / "new.key"
    vault.rotate_key(KeyFileSource(new))
    assert (new.stat().st_mode & 0o777) == 0o600
    vault.close()
    with open_vault(vault_path, KeyFileSource(new)) as reopened:
        assert reopened.get(entry) == b"moving"


def test_rotation_to_the_current_key_is_refused(vault: Vault, key_file: Path) -> None:
    with pytest.raises(VaultInputError, match="holds the current key"):
        vault.rotate_key(KeyFileSource(key_file))


def test_rotation_interrupted_before_commit_leaves_the_old_key_working(
        vault: Vault, vault_path: Path, key_file: Path) -> None:
    ids = [vault.put("document", f"doc {i}".encode()).entry_id for i in range(4)]
    old_key = key_file.read_bytes()

    def crash(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vault.rotate_key(progress=crash)
    assert key_file.read_bytes() == old_key
    vault.close()
    with open_vault(vault_path, KeyFileSource(key_file)) as reopened:
        assert [reopened.get(i) for i in ids] == [f"doc {i}".encode() for i in range(4)]
        assert reopened.verify().ok


def test_rotation_interrupted_after_commit_is_finished_on_next_open(
        vault: Vault, vault_path: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = vault.put("document", b"survives").entry_id
    old_key = key_file.read_bytes()

    def crash(self: KeyFileSource) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(KeyFileSource, "promote", crash)
        with pytest.raises(KeyboardInterrupt):
            vault.rotate_key()
    assert key_file.read_bytes() == old_key  # committed, but the new key is still pending
    vault.close()
    with open_vault(vault_path, KeyFileSource(key_file)) as reopened:
        assert reopened.get(entry) == b"survives"
    assert key_file.read_bytes() != old_key
    assert not key_file.with_name(key_file.name + ".next").exists()


def test_passphrase_rotation_stores_new_scrypt_parameters(private_dir: Path) -> None:
    path = private_dir / "p.sqlite3"
    with open_vault(path, PassphraseSource(get_passphrase=lambda c: "first",
                                           new_params=FAST_SCRYPT), create=True) as vault:
        entry = vault.put("document", b"x").entry_id
        vault.rotate_key(PassphraseSource(get_passphrase=lambda c: "second",
                                          new_params=FAST_SCRYPT))
    with pytest.raises(VaultLockedError):
        open_vault(path, PassphraseSource(get_passphrase=lambda c: "first"))
    with open_vault(path, PassphraseSource(get_passphrase=lambda c: "second")) as vault:
        assert vault.get(entry) == b"x"


def test_a_credential_cannot_be_rotated_in_place(private_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import CredentialSource

    creds = tmp_path / "creds"
    creds.mkdir()
    create_key_file(creds / "certescrow-vault-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with open_vault(private_dir / "c.sqlite3", CredentialSource(), create=True) as vault:
        with pytest.raises(VaultInputError, match="--new-key-file"):
            vault.rotate_key()


# ------------------------------------------------------------------ backup and restore

def test_backup_is_a_consistent_encrypted_0600_copy_that_restores(
        vault: Vault, vault_path: Path, source: KeyFileSource, tmp_path: Path) -> None:
    ids = [vault.put("document", f"doc {i}".encode()).entry_id for i in range(3)]
    dest = tmp_path / "backup.sqlite3"
    vault.backup(dest)
    assert (dest.stat().st_mode & 0o777) == 0o600
    assert b"doc 1" not in dest.read_bytes()
    with pytest.raises(VaultConflictError, match="--force"):
        vault.backup(dest)
    vault.put("document", b"after the backup")
    vault.close()
    with pytest.raises(VaultConflictError, match="--force"):
        restore_vault(dest, vault_path, source)
    result = restore_vault(dest, vault_path, source, force=True)
    assert result.replaced
    assert result.entries == 3
    with open_vault(vault_path, source) as restored:
        assert sorted(e.entry_id for e in restored.entries()) == sorted(ids)
        assert restored.verify().ok
        assert restored.audit_records()[-1].action == "restore"


def test_restore_into_a_new_place_creates_a_private_vault(vault: Vault, source: KeyFileSource,
                                                          tmp_path: Path) -> None:
    entry = vault.put("document", b"elsewhere").entry_id
    dest = tmp_path / "b.sqlite3"
    vault.backup(dest)
    target = tmp_path / "new" / "vault.sqlite3"
    restore_vault(dest, target, source)
    assert (target.stat().st_mode & 0o777) == 0o600
    assert (target.parent.stat().st_mode & 0o777) == 0o700
    with open_vault(target, source) as restored:
        assert restored.get(entry) == b"elsewhere"


def test_restore_refuses_a_tampered_backup_and_keeps_the_vault(
        vault: Vault, vault_path: Path, source: KeyFileSource, tmp_path: Path) -> None:
    entry = vault.put("document", b"precious").entry_id
    dest = tmp_path / "b.sqlite3"
    vault.backup(dest)
    sql(dest, "UPDATE entries SET contract_id = 'forged'")
    vault.close()
    with pytest.raises(VaultIntegrityError, match="fails verification"):
        restore_vault(dest, vault_path, source, force=True)
    with open_vault(vault_path, source) as kept:
        assert kept.get(entry) == b"precious"
    assert [p.name for p in vault_path.parent.iterdir() if "restore" in p.name] == []


# ------------------------------------------------------------------ concurrency

def test_writers_serialise_and_readers_never_see_an_uncommitted_entry(
        vault: Vault, vault_path: Path, source: KeyFileSource) -> None:
    other = open_vault(vault_path, source)
    reader = open_vault(vault_path, None)
    started, release = threading.Event(), threading.Event()
    results: list[str] = []

    def slow_writer() -> None:
        with vault._tx() as conn:
            vault._put_in_tx(conn, vault._need_keys(),
                             __import__("vault").PutRequest(kind="document", data=b"first"))
            started.set()
            release.wait(10)

    def second_writer() -> None:
        results.append(other.put("document", b"second").entry_id)

    try:
        t1 = threading.Thread(target=slow_writer)
        t1.start()
        assert started.wait(10)
        t2 = threading.Thread(target=second_writer)
        t2.start()
        t2.join(0.5)
        assert t2.is_alive()  # waiting for the write lock, not failing
        assert reader.entries() == []  # the first writer has not committed
        release.set()
        t1.join(10)
        t2.join(10)
        assert len(results) == 1
        assert sorted(e.size for e in reader.entries()) == [5, 6]
        assert vault.verify().ok
    finally:
        release.set()
        other.close()
        reader.close()


def test_status_reports_counts_source_and_lock_state(vault: Vault, vault_path: Path,
                                                     tmp_path: Path) -> None:
    vault.put("document", b"a")
    vault.put("certificate", issued().pem)
    status = vault.status()
    assert (status.locked, status.format_version, status.keyed_with) == (False, 1, "key-file")
    assert dict(status.counts) == {"certificate": 1, "document": 1}
    vault.close()
    other = tmp_path / "wrong.key"
    create_key_file(other)
    with open_vault(vault_path, None) as locked:
        assert not locked.try_unlock(KeyFileSource(other))
        status = locked.status()
        assert status.locked
        assert "does not open" in (status.lock_reason or "")


def test_verify_recomputes_fingerprint_and_key_tag_from_the_plaintext(vault: Vault,
                                                                      vault_path: Path) -> None:
    from vault.envelope import seal

    entry = vault.put("document", b"x").entry_id
    # A row sealed consistently *with* the key but carrying a wrong fingerprint (a bug, or a
    # forger who holds the key): get trusts the AEAD binding, verify recomputes.
    row = vault._row(vault._store.conn, entry)
    row["fingerprint"] = "0" * 64
    sealed = seal(vault._need_keys().master, vault._binding(row), b"x")
    sql(vault_path, "UPDATE entries SET fingerprint = ?, wrapped_key = ?, ciphertext = ?",
        (row["fingerprint"], sealed.wrapped_key, sealed.ciphertext))
    assert vault.get(entry) == b"x"
    assert any(entry in p for p in vault.verify().problems)


def test_unlocked_keys_never_show_in_a_repr(vault: Vault) -> None:
    keys = vault._need_keys()
    assert repr(keys) == "VaultKeys(<redacted>)"
    assert keys.master.hex() not in repr(vault.__dict__ if hasattr(vault, "__dict__") else vault)


def test_an_empty_file_is_not_silently_turned_into_a_vault(private_dir: Path,
                                                           source: KeyFileSource) -> None:
    path = private_dir / "empty.sqlite3"
    path.touch(mode=0o600)
    with pytest.raises(VaultNotFoundError, match="empty file"):
        open_vault(path, source)
    assert path.stat().st_size == 0


def test_a_process_holding_the_vault_open_follows_a_rotation_done_elsewhere(
        vault: Vault, vault_path: Path, key_file: Path) -> None:
    before = vault.put("document", b"before").entry_id
    with open_vault(vault_path, KeyFileSource(key_file)) as operator:
        operator.rotate_key()
    # The long-running holder (the daemon) must not wrap new data keys with the retired key.
    after = vault.put("document", b"after").entry_id
    assert vault.get(before) == b"before"
    with open_vault(vault_path, KeyFileSource(key_file)) as fresh:
        assert fresh.get(after) == b"after"
        assert fresh.verify().ok


def test_a_holder_whose_key_was_rotated_to_elsewhere_gets_a_clear_locked_error(
        vault: Vault, vault_path: Path, key_file: Path, tmp_path: Path) -> None:
    entry = vault.put("document", b"x").entry_id
    with open_vault(vault_path, KeyFileSource(key_file)) as operator:
        operator.rotate_key(KeyFileSource(tmp_path / "moved.key"))
    with pytest.raises(VaultLockedError, match="does not open"):
        vault.get(entry)
    with pytest.raises(VaultLockedError):
        vault.put("document", b"y")
    with open_vault(vault_path, KeyFileSource(tmp_path / "moved.key")) as moved:
        assert moved.verify().ok
