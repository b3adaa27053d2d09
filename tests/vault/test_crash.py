"""A real process importing and rotating, killed with SIGKILL at random moments, hundreds of times.

The child is forked (so it does not pay Python's start-up each time) and opens the vault itself;
it prints each entry id only after ``put`` returned, and "rotated" after ``rotate_key`` returned.
Afterwards ``verify`` passes and every acknowledged entry is there, byte for byte, under whatever
key the key file (with its pending key) now holds.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import time
from pathlib import Path

import pytest

from vault import KeyFileSource, create_key_file, open_vault

ITERATIONS = 200


def payload(run: int, index: int) -> bytes:
    seed = hashlib.sha256(f"{run}/{index}".encode()).digest()
    return seed * (1 + index % 40)


def child(vault_path: Path, key_file: Path, run: int, write_fd: int) -> None:
    """Runs in the forked process; never returns."""
    try:
        with open_vault(vault_path, KeyFileSource(key_file), actor=f"crash-child-{run}") as vault:
            for index in range(10_000):
                if index % 12 == 3:
                    os.write(write_fd, b"rotating\n")
                    vault.rotate_key()
                    os.write(write_fd, b"rotated\n")
                result = vault.put("document", payload(run, index), label=f"{run}/{index}")
                os.write(write_fd, f"put {run} {index} {result.entry_id}\n".encode())
    finally:
        os._exit(0)


@pytest.mark.slow
def test_sigkill_during_import_and_rotation_loses_nothing_acknowledged(tmp_path: Path) -> None:
    directory = tmp_path / "vault"
    directory.mkdir(mode=0o700)
    vault_path = directory / "vault.sqlite3"
    key_file = tmp_path / "master.key"
    create_key_file(key_file)
    open_vault(vault_path, KeyFileSource(key_file), create=True).close()

    rng = random.Random(4)  # reproducible schedule; the kill timing is still real
    acknowledged: dict[str, bytes] = {}
    rotations = kills_mid_rotation = 0
    started = time.monotonic()
    for run in range(ITERATIONS):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(read_fd)
            child(vault_path, key_file, run, write_fd)
        os.close(write_fd)
        time.sleep(rng.uniform(0.0, 0.12))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        output = b""
        while select.select([read_fd], [], [], 0)[0]:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            output += chunk
        os.close(read_fd)
        last = ""
        for line in output.decode().splitlines():
            words = line.split()
            if words[:1] == ["put"]:
                acknowledged[words[3]] = payload(int(words[1]), int(words[2]))
            elif line == "rotated":
                rotations += 1
            last = line
        kills_mid_rotation += last == "rotating"

    with open_vault(vault_path, KeyFileSource(key_file)) as vault:
        report = vault.verify()
        assert report.problems == ()
        for entry_id, data in acknowledged.items():
            assert vault.get(entry_id) == data
        assert report.entries_checked >= len(acknowledged)
    # A rotation killed before its commit left its staged key behind: the open settled it.
    assert not key_file.with_name(key_file.name + ".next").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key", "vault"]
    assert len(acknowledged) > ITERATIONS  # the children really did work before dying
    assert rotations > 0
    elapsed = time.monotonic() - started
    print(f"{ITERATIONS} kills, {len(acknowledged)} acknowledged entries, {rotations} rotations, "
          f"{kills_mid_rotation} kills mid-rotation, {elapsed:.1f}s")
