"""A row the running daemon logs for one changed file is placed among its directory.

``scan`` and ``agent run --once`` place ``cert.pem`` with the ``chain.pem`` beside it, so an
expired intermediate is a finding on the leaf's row (issue 11). The daemon, on a change of
``cert.pem`` alone, used to place the file by itself: the operator watching the journal never
heard that the chain the server sends has expired.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from agent.logs import LOGGER_NAME, EventLog, configure_logging
from tests.agent.certbot_store import make_intermediate
from tests.agent.daemon_helpers import AT, SteppingClock, make_daemon, store_config
from tests.certfactory import make_cert


@pytest.fixture(autouse=True)
def restore_logger() -> Iterator[None]:
    yield
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True


def _codes_for(stream: io.StringIO, path: Path) -> set[str]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return {line.get("code", "") for line in lines if str(path) in line.get("message", "")
            or line.get("path", "").startswith(str(path))}


@pytest.mark.parametrize("chain_expired", [True, False])
def test_a_changed_leaf_is_logged_with_the_chain_beside_it(tmp_path: Path,
                                                          chain_expired: bool) -> None:
    store = tmp_path / "certs"
    site = store / "site"
    site.mkdir(parents=True)
    ends = datetime(2026, 1, 20, tzinfo=UTC) if chain_expired else datetime(2030, 1, 1, tzinfo=UTC)
    intermediate = make_intermediate(not_after=ends, slot=61 if chain_expired else 62)
    first = make_cert(not_before=AT - timedelta(days=30), lifetime=timedelta(days=90),
                      sans=("example.jp",), issuer=intermediate)
    (site / "cert.pem").write_bytes(first.pem)
    (site / "chain.pem").write_bytes(intermediate.cert.public_bytes(Encoding.PEM))
    stream = io.StringIO()
    clock = SteppingClock()
    daemon, intake = make_daemon(store_config([{"path": str(store)}]), tmp_path, clock=clock,
                                 log=EventLog(configure_logging("json", stream=stream)))
    daemon.full_scan()
    stream.seek(0)
    stream.truncate()

    renewed = make_cert(not_before=AT - timedelta(days=1), lifetime=timedelta(days=90),
                        sans=("example.jp",), issuer=intermediate)
    (site / "cert.pem").write_bytes(renewed.pem)
    daemon.enqueue(str(site / "cert.pem"))
    clock.advance(0.31)
    daemon.process_due()

    codes = _codes_for(stream, site / "cert.pem")
    assert ("chain-expired" in codes) is chain_expired
    # and the intermediate is the leaf's chain, never a lone CA certificate in the store
    assert "ca-certificate" not in _codes_for(stream, site / "chain.pem")
    intake.close()
