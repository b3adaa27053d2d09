"""Waiting for what a daemon thread or a real observer does, for the tests that start one: a
bound on the wait, never a timing assertion."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest


def wait_until(predicate: Callable[[], bool], timeout: float, *,
               interval: float = 0.05) -> bool:
    """Whether ``predicate`` became true within ``timeout`` seconds (asked once more at the
    end, so a slow machine that wakes late still sees the truth)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def logged_events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    """The records of the agent's event log named ``event``."""
    return [r for r in list(caplog.records) if getattr(r, "event", None) == event]
