"""Fixtures for the vault: a private directory, a real key file, a pinned clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vault import KeyFileSource, Vault, create_key_file, open_vault


class StepClock:
    """A clock that advances one second per reading, so audit records have distinct times."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> StepClock:
    return StepClock(datetime(2026, 4, 1, 0, 0, tzinfo=UTC))


@pytest.fixture
def private_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "vaultdir"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    return directory


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "master.key"
    path.parent.mkdir()
    create_key_file(path)
    return path


@pytest.fixture
def source(key_file: Path) -> KeyFileSource:
    return KeyFileSource(key_file)


@pytest.fixture
def vault_path(private_dir: Path) -> Path:
    return private_dir / "vault.sqlite3"


@pytest.fixture
def vault(vault_path: Path, source: KeyFileSource, clock: StepClock) -> Iterator[Vault]:
    with open_vault(vault_path, source, create=True, clock=clock, actor="tester@host") as v:
        yield v


@pytest.fixture
def keyring_backend() -> Iterator[object]:
    """The real file-backed keyring (keyrings.alt) under the test's isolated HOME.

    ``keyring`` caches its backend per process, so it is set explicitly for each test.
    """
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    previous = keyring.get_keyring()
    backend = PlaintextKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)
