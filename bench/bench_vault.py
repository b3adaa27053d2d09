"""Vault benchmark: import N keys, get them back, rotate; unlock cost; baselines in the same run.

    .venv/bin/python bench/bench_vault.py [--n 10000] [--single 1000]

Baselines measured in the same run on the same payloads:
* raw AES-256-GCM: wrap a fresh data key + encrypt (and the reverse), no SQLite;
* plain SQLite: INSERT the same bytes in one transaction / one transaction per row
  (WAL, synchronous=FULL, like the vault).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vault import KeyFileSource, PassphraseSource, PutRequest, open_vault


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=1_000,
                        help="entries put one transaction each (the daemon's pattern)")
    args = parser.parse_args()
    n = args.n

    keys = [ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()) for _ in range(n)]
    rows: list[tuple[str, float, int, str]] = []  # (operation, seconds, count, baseline name)

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        os.chmod(tmp, 0o700)
        # ---- baselines
        master = AESGCM.generate_key(bit_length=256)

        def raw_seal() -> list[tuple[bytes, bytes, bytes]]:
            out = []
            for data in keys:
                dk = AESGCM.generate_key(bit_length=256)
                n1, n2 = os.urandom(12), os.urandom(12)
                out.append((n1 + AESGCM(master).encrypt(n1, dk, b"aad"), n2,
                            AESGCM(dk).encrypt(n2, data, b"aad")))
            return out

        sealed: list[tuple[bytes, bytes, bytes]] = []
        t = timed(lambda: sealed.extend(raw_seal()))
        rows.append(("baseline: raw AES-GCM wrap+seal", t, n, ""))

        def raw_open() -> None:
            for wrapped, n2, ct in sealed:
                dk = AESGCM(master).decrypt(wrapped[:12], wrapped[12:], b"aad")
                AESGCM(dk).decrypt(n2, ct, b"aad")

        rows.append(("baseline: raw AES-GCM unwrap+open", timed(raw_open), n, ""))

        def sqlite_conn(name: str) -> sqlite3.Connection:
            conn = sqlite3.connect(tmp / name, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
            return conn

        conn = sqlite_conn("plain-batch.sqlite3")

        def plain_batch() -> None:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO t (data) VALUES (?)", ((k,) for k in keys))
            conn.execute("COMMIT")

        rows.append(("baseline: sqlite insert, 1 transaction", timed(plain_batch), n, ""))
        conn.close()
        # ---- the vault
        key_file = tmp / "master.key"
        source = KeyFileSource(key_file)
        vault_path = tmp / "vault" / "vault.sqlite3"
        vault = open_vault(vault_path, source, create=True)
        ids: list[str] = []
        t = timed(lambda: ids.extend(r.entry_id for r in vault.put_many(
            PutRequest(kind="private-key", data=k) for k in keys)))
        rows.append(("vault import (put_many, 1 tx)", t, n,
                     "baseline: raw AES-GCM wrap+seal"))
        # Measured right before the vault's own per-transaction puts: fsync cost on a shared
        # disk drifts, so the two must run back to back.
        conn = sqlite_conn("plain-single.sqlite3")

        def plain_single() -> None:
            for k in keys[:args.single]:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO t (data) VALUES (?)", (k,))
                conn.execute("COMMIT")

        rows.append(("baseline: sqlite insert, 1 tx each", timed(plain_single), args.single, ""))
        conn.close()

        single_path = tmp / "vault" / "single.sqlite3"
        single = open_vault(single_path, source, create=True)
        t = timed(lambda: [single.put("private-key", k) for k in keys[:args.single]])
        rows.append(("vault put, 1 tx each", t, args.single,
                     "baseline: sqlite insert, 1 tx each"))
        single.close()
        t = timed(lambda: [vault.get(i) for i in ids])
        rows.append(("vault get", t, n, "baseline: raw AES-GCM unwrap+open"))
        assert vault.get(ids[-1]) == keys[-1]
        t = timed(lambda: vault.rotate_key())
        rows.append(("vault rotate-key (re-wrap all)", t, n, "baseline: raw AES-GCM unwrap+open"))
        t = timed(lambda: vault.verify())
        rows.append(("vault verify (deep)", t, n, "baseline: raw AES-GCM unwrap+open"))
        vault.close()

        # ---- unlocking
        def unlock_keyfile() -> None:
            open_vault(vault_path, source).close()

        unlock_rows = [("unlock: key file", timed(unlock_keyfile))]
        pp_path = tmp / "vault" / "pp.sqlite3"
        pp = PassphraseSource(get_passphrase=lambda confirm: "benchmark passphrase")
        open_vault(pp_path, pp, create=True).close()
        unlock_rows.append(("unlock: passphrase (scrypt N=2^17, r=8, p=1)",
                            timed(lambda: open_vault(pp_path, pp).close())))

    by_name = {name: seconds / count for name, seconds, count, _ in rows}
    print(f"Vault benchmark, n={n} EC P-256 keys (~{len(keys[0])} bytes each)\n")
    print(f"{'operation':<42} {'count':>6} {'seconds':>8} {'entries/s':>10} "
          f"{'per entry':>10}  ratio")
    for name, seconds, count, baseline in rows:
        ratio = f"{(seconds / count) / by_name[baseline]:.1f}x {baseline[10:]}" \
            if baseline else ""
        print(f"{name:<42} {count:>6} {seconds:>8.3f} {count / seconds:>10.0f} "
              f"{seconds / count * 1e6:>8.0f}us  {ratio}")
    print()
    key_unlock = unlock_rows[0][1]
    for name, seconds in unlock_rows:
        print(f"{name:<46} {seconds * 1000:>8.1f} ms  {seconds / key_unlock:.0f}x key file")


if __name__ == "__main__":
    main()
