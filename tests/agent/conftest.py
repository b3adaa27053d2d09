"""Fixtures shared by the agent's tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from agent.logs import LOGGER_NAME


@pytest.fixture
def restored_logger() -> Iterator[None]:
    """The agent's logger (and watchdog's) as they were: a test that configures logging the
    daemon's way leaves no handler behind for the next."""
    yield
    for name in (LOGGER_NAME, "watchdog"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
