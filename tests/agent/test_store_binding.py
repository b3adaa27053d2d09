"""A store's binding is one object for the life of its configuration: the classification
remembers what it said of a certificate *shape* for one binding object (policy/classification.py),
so the daemon, which classifies a small directory's files itself, computes a shape once, not
once a file (a binding made afresh at every file never met the memo)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from agent.config import StoreConfig
from policy import classification
from policy.category import Category
from tests.agent.daemon_helpers import SteppingClock, make_daemon, store_config
from tests.agent.scan_fixtures import write
from tests.certfactory import make_cert


def test_a_store_says_the_same_binding_each_time_and_a_new_one_when_changed() -> None:
    store = StoreConfig(path=Path("/srv/certs"), contract="C-1", category=Category.II)
    assert store.binding is store.binding
    assert store.binding.contract_id == "C-1"
    assert store.binding.category is Category.II
    changed = dataclasses.replace(store, contract="C-2")
    assert changed.binding.contract_id == "C-2"
    assert store.binding.contract_id == "C-1"  # (the old one is not touched)
    assert changed != store
    assert dataclasses.replace(store) == store


def test_the_daemon_classifies_a_shape_once_in_a_small_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    computed = 0
    original = classification._classify

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal computed
        computed += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(classification, "_classify", counting)
    store = tmp_path / "certs"
    # one shape (same days, length, issuer), different certificates, in small directories
    for i in range(6):
        write(store / f"site{i % 3}" / f"c{i}.pem",
              make_cert(sans=(f"s{i}.example.jp",), serial=7000 + i).pem)
    daemon, _ = make_daemon(store_config([{"path": str(store), "contract": "C-9"}]),
                                 tmp_path, clock=SteppingClock())
    daemon.sync.read_ahead_workers = 0
    daemon.full_scan()
    daemon.shutdown()
    assert daemon.sync.files_read == 6
    assert computed == 1
