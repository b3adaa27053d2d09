"""A passphrase is the bytes the user set, UTF-8 or not, and no error shows any of it.

The reviewer's reproduction: ``CERTESCROW_VAULT_PASSPHRASE=$'Pa55\\xffphrase' certescrow
vault export 9bc9`` ended in ``UnicodeEncodeError ... '\\udcff' in position 4``, a traceback
quoting the byte and where it sits; ``CERTESCROW_VAULT_NEW_PASSPHRASE`` in ``rotate-key`` the
same. Python hands the environment over as text with the byte as ``\\udcff`` (PEP 383); the
test children get their environment the same way, so ``\\udcff`` here is the byte 0xff there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.clirun import certescrow
from vault import PassphraseSource
from vault.envelope import scrypt_derive

FAST_SCRYPT = {"n": 2**10, "r": 8, "p": 1}
NOT_UTF8 = "Pa55\udcffphrase"  # the environment's b"Pa55\xffphrase"


def test_a_passphrase_that_is_not_utf8_derives_from_its_exact_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTESCROW_VAULT_PASSPHRASE", NOT_UTF8)
    assert os.environb[b"CERTESCROW_VAULT_PASSPHRASE"] == b"Pa55\xffphrase"
    key, kdf = PassphraseSource(new_params=FAST_SCRYPT).create()
    assert kdf is not None
    assert key == scrypt_derive(b"Pa55\xffphrase", salt=kdf.salt, n=kdf.n, r=kdf.r, p=kdf.p)
    assert PassphraseSource().load(kdf) == key
    # A UTF-8 passphrase derives what it always did (its UTF-8 bytes): old vaults still open.
    monkeypatch.setenv("CERTESCROW_VAULT_PASSPHRASE", "Pa55\u00e9phrase")
    assert PassphraseSource().load(kdf) == scrypt_derive("Pa55\u00e9phrase".encode(),
                                                         salt=kdf.salt, n=kdf.n, r=kdf.r,
                                                         p=kdf.p)


def _vault(tmp_path: Path, *args: str, passphrase: str,
           new_passphrase: str | None = None) -> tuple[int, str]:
    config = tmp_path / "pp.toml"
    config.write_text('[vault]\nkey_source = "passphrase"\n')
    extra = {"CERTESCROW_VAULT_PASSPHRASE": passphrase}
    if new_passphrase is not None:
        extra["CERTESCROW_VAULT_NEW_PASSPHRASE"] = new_passphrase
    done = certescrow("--config", str(config), "vault", *args,
                      "--vault", str(tmp_path / "v" / "vault.sqlite3"), home=tmp_path, **extra)
    return done.returncode, done.stdout + done.stderr


def test_init_then_open_with_a_passphrase_that_is_not_utf8(tmp_path: Path) -> None:
    code, out = _vault(tmp_path, "init", passphrase=NOT_UTF8)
    assert code == 0, out
    code, out = _vault(tmp_path, "verify", passphrase=NOT_UTF8)
    assert (code, "Traceback" in out) == (0, False), out

    # Another byte in the same place is another passphrase: refused (22), nothing of it shown.
    code, out = _vault(tmp_path, "verify", passphrase="Pa55\udcfephrase")
    assert code == 22, out
    assert "Traceback" not in out
    assert "Pa55" not in out
    assert "phrase" not in out.replace("passphrase", "")


def test_rotate_key_to_a_new_passphrase_that_is_not_utf8(tmp_path: Path) -> None:
    code, out = _vault(tmp_path, "init", passphrase="plain old words")
    assert code == 0, out
    new = "N\udce9w \udcff"  # Latin-1 "Néw" and a 0xff: no UTF-8 at all
    code, out = _vault(tmp_path, "rotate-key", passphrase="plain old words",
                       new_passphrase=new)
    assert code == 0, out
    assert "Traceback" not in out
    code, out = _vault(tmp_path, "verify", passphrase=new)
    assert code == 0, out
    code, out = _vault(tmp_path, "verify", passphrase="plain old words")
    assert code == 22, out
