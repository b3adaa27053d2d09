"""``[serve] workers``: several service processes share the port (SO_REUSEPORT) and end
together."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fleet.fleetkit import make_fleet, observation, report


@pytest.mark.slow
def test_several_worker_processes_share_the_port(tmp_path: Path) -> None:
    """Started from a directory others can write to, holding a ``policy`` package: the
    workers ran ``python -m``, which put that directory first on ``sys.path`` and imported it
    (the re-review of session 14)."""
    import socket

    hostile = tmp_path / "cwd"
    marker = tmp_path / "imported"
    (hostile / "policy").mkdir(parents=True)
    (hostile / "policy" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nraise SystemExit(99)\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fleet = make_fleet(tmp_path / "desk")
    fleet.start(port=port, extra="workers = 2", cwd=hostile)
    try:
        client = fleet.client("worker-host")
        for sequence in range(1, 9):  # a new connection each time: both workers serve
            conn = fleet.connect(client)
            assert conn.request("POST", "/v1/report", report(
                "worker-host", sequence, [observation(f"/w{sequence}", "f" * 64)])).status == 200
            conn.close()
        assert fleet.journal_count() == 8
        assert not marker.exists()
    finally:
        fleet.stop()
        fleet.close_clients()
    with socket.socket() as after:  # every worker ended with the first
        assert after.connect_ex(("127.0.0.1", port)) != 0
