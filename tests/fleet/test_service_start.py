"""``policy serve`` as an operator starts, stops and deploys it, a real process each time: a
one-line error for what keeps it from starting, ``stopping`` on SIGTERM, a log line for each
refused TLS handshake, and proxy mode that reaching the port is not enough to get through
(a Unix socket only the proxy's group can open, or a shared secret) (issue 13)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.fleet_ca import issue_ca, issue_client_certificate, make_agent_csr
from tests.fleet.fleetkit import NOW, Client, Fleet, make_fleet, observation, report

REPO = Path(__file__).resolve().parents[2]


def _serve(fleet: Fleet, extra: str, *, port: int = 0) -> subprocess.Popen[bytes]:
    config = fleet.config(port=port, extra=extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    return subprocess.Popen(
        [sys.executable, "-m", "agent.main", "policy", "serve", "--config", str(config)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=REPO)


def _started(process: subprocess.Popen[bytes], pattern: str) -> str:
    assert process.stderr is not None
    lines = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline().decode(errors="replace")
        if not line:
            break
        lines.append(line)
        found = re.search(pattern, line)
        if found:
            return found.group(1)
    process.kill()
    raise AssertionError(f"policy serve did not start: {''.join(lines)}")


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return process.returncode, err.decode(errors="replace")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = make_fleet(tmp_path / "desk")
    yield made
    made.stop()
    made.close_clients()


# ---------------------------------------------------------------------- 5. start and stop
def test_a_port_in_use_is_a_one_line_error(fleet: Fleet) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = _serve(fleet, "", port=port)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 43, err
    assert "Traceback" not in err.decode()
    [line] = [line for line in err.decode().splitlines() if "127.0.0.1" in line]
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_a_ca_certificate_that_is_not_a_ca_is_refused_at_start(fleet: Fleet) -> None:
    (fleet.root / "ca.pem").write_bytes(fleet.server_cert.read_bytes())  # a leaf
    process = _serve(fleet, "")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 41, err
    assert b"not a CA certificate" in err
    assert b"Traceback" not in err


@pytest.mark.parametrize(("given", "says"), [
    ("config", "serve.toml: not a PEM certificate"),
    ("ca", "ca.pem: a CA certificate (the fleet CA's?), not a TLS certificate of its own"),
    ("other-key", "other.pem: the certificate is not the one of the key [serve] key "
                  "(vault entry "),
    ("garbage", "garbage.pem: not a PEM certificate"),
])
def test_a_server_certificate_that_cannot_be_used_is_named_with_the_reason(
        fleet: Fleet, given: str, says: str) -> None:
    # Each was "the TLS certificate does not match its key", naming no file.
    from agent.fleet_ca import issue_server_certificate

    _, other = issue_server_certificate(ca_key_pem=fleet.ca_key, ca_cert_pem=fleet.ca_cert,
                                        names=["127.0.0.1"], at=NOW - timedelta(days=1))
    (fleet.root / "other.pem").write_bytes(other.pem)  # its key is not the vault's
    (fleet.root / "garbage.pem").write_bytes(
        b"-----BEGIN CERTIFICATE-----\n\x1b[2Jnot base64\n-----END CERTIFICATE-----\n")
    fleet.server_cert = {"config": fleet.root / "serve.toml", "ca": fleet.root / "ca.pem",
                         "other-key": fleet.root / "other.pem",
                         "garbage": fleet.root / "garbage.pem"}[given]
    process = _serve(fleet, "")
    _, err = process.communicate(timeout=60)
    text = err.decode()
    assert process.returncode == 41, text
    [line] = text.splitlines()
    assert line.startswith(f"Error: {fleet.root}/"), line
    assert says in line, line
    assert "does not match its key" not in line
    assert "\x1b" not in text
    assert "_ssl.c" not in text  # nothing of OpenSSL's text
    assert "[SSL" not in text


def test_a_ca_bundle_that_is_no_certificate_is_named() -> None:
    from agent.fleet_ca import FleetCAError, client_ssl_context, issue_server_certificate

    ca_key, ca_cert = issue_ca(name="test CA", at=NOW - timedelta(days=2))
    key_pem, issued = issue_server_certificate(ca_key_pem=ca_key, ca_cert_pem=ca_cert,
                                               names=["127.0.0.1"], at=NOW - timedelta(days=1))
    for bundle in (b"not PEM at all", b"\xff\xfe"):
        with pytest.raises(FleetCAError) as refused:
            client_ssl_context(cert_pem=issued.pem, key_pem=key_pem, ca_cert_pem=bundle,
                               ca_certificate="[report] ca_bundle /etc/fleet-ca.pem")
        assert str(refused.value).startswith("[report] ca_bundle /etc/fleet-ca.pem: ")
        assert "_ssl.c" not in str(refused.value)
        assert "[X509" not in str(refused.value)


@pytest.mark.parametrize("dsn", ["postgresql://desk:s3cr3t-pw@127.0.0.1/test",
                                 "postgresql://desk:s3cr3t/pw@127.0.0.1/test",
                                 "postgresql://127.0.0.1/test?sslpassword=s3cr3t-pw"])
def test_a_dsn_password_in_a_readable_config_is_refused(fleet: Fleet, dsn: str) -> None:
    config = fleet.config()
    text = config.read_text().replace(f'ledger = "{fleet.ledger}"', f'ledger = "{dsn}"')
    config.write_text(text)
    os.chmod(config, 0o644)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTESCROW_")}
    done = subprocess.run([sys.executable, "-m", "agent.main", "policy", "serve", "--config",
                           str(config)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=60, check=False)
    assert done.returncode == 31, done.stderr
    assert "readable by others" in done.stderr
    assert "0644" in done.stderr
    assert "s3cr3t" not in done.stderr


def test_sigterm_logs_stopping_and_refused_handshakes_are_logged(fleet: Fleet) -> None:
    process = _serve(fleet, "")
    fleet.port = int(_started(process, r"listening on https://127\.0\.0\.1:(\d+)"))
    fleet.process = None  # stopped here
    other_key, other_cert = issue_ca(name="another CA", at=NOW - timedelta(days=1))
    key_pem, csr_pem = make_agent_csr(host="intruder")
    foreign = issue_client_certificate(ca_key_pem=other_key, ca_cert_pem=other_cert,
                                       csr_pem=csr_pem, host="intruder",
                                       at=NOW - timedelta(minutes=1))
    intruder = Client(host="intruder", key_pem=key_pem, cert_pem=foreign.pem,
                      serial=foreign.serial)
    expired = fleet.client("expired-host", at=NOW - timedelta(days=40),
                           lifetime=timedelta(days=30))
    body = report("x", 1, [observation("/a", "a" * 64)])
    for client in (intruder, expired, None):
        assert fleet.connect(client).request("POST", "/v1/report", body).status == 0
    good = fleet.client("good-host")
    assert fleet.connect(good).request("GET", "/v1/bindings").status == 200
    # The agent refuses the service: its ca_bundle is another CA's. The service's line must
    # say it was the client that refused, not the service.
    assert fleet.connect(good, ca_cert=other_cert).request("GET", "/v1/bindings").status == 0
    fleet.close_clients()
    code, err = _stop(process)
    assert code == 0, err
    refusals = [line for line in err.splitlines() if "handshake-refused" in line]
    assert len(refusals) == 4, err
    assert all(re.search(r"127\.0\.0\.1:\d+", line) for line in refusals)
    assert "refused a TLS handshake from 127.0.0.1:" in refusals[0]
    assert "unable to get local issuer certificate" in refusals[0]
    assert "certificate has expired" in refusals[1]
    assert "no client certificate" in refusals[2]
    assert all(line.endswith("refused_by=service") for line in refusals[:3])
    assert "the client at 127.0.0.1:" in refusals[3]
    assert "refused the service's certificate" in refusals[3]
    assert "tlsv1 alert unknown ca" in refusals[3]
    assert "refused a TLS handshake" not in refusals[3]
    assert refusals[3].endswith("refused_by=client")
    assert "stopping" in err
    assert "Traceback" not in err


def test_refused_handshakes_are_rate_limited() -> None:
    from policy.service import HandshakeLog

    now = [0.0]
    records: list[str] = []

    class Capture:
        def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
            records.append(message % args)

    import policy.service as service

    saved = service.log
    service.log = Capture()  # type: ignore[assignment]
    try:
        limiter = HandshakeLog(burst=3, window_s=60, clock=lambda: now[0])
        for _ in range(10):
            limiter.refused(("192.0.2.1", 4000), TimeoutError())
        now[0] = 61.0
        limiter.refused(("192.0.2.1\x1b[31m", 4001), ConnectionResetError())
    finally:
        service.log = saved
    assert len(records) == 5
    assert records[3] == "refused 7 more TLS handshake(s) in 60 s, not logged one by one"
    assert "\x1b" not in records[4]


# ---------------------------------------------------------------------- 4. proxy mode
class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def _post(conn: http.client.HTTPConnection, body: object, cert_pem: bytes,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    sent = {"Content-Type": "application/json",
            "X-Client-Cert": urllib.parse.quote(cert_pem.decode()), **(headers or {})}
    try:
        conn.request("POST", "/v1/report", body=json.dumps(body), headers=sent)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_proxy_mode_on_a_unix_socket_only_the_proxys_group_can_open(fleet: Fleet,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "run" / "serve.sock"
    path.parent.mkdir()
    process = _serve(fleet, f'tls = false\nunix_socket = "{path}"')
    assert _started(process, r"listening on (http\+unix://\S+)") == f"http+unix://{path}"
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        client = fleet.client("socket-host")
        status, body = _post(_UnixHTTP(str(path)), report("socket-host", 1, [
            observation("/a.pem", "a" * 64)]), client.cert_pem)
        assert status == 200, body
        assert [o.host for o in fleet.observations()] == ["socket-host"]
    finally:
        assert _stop(process)[0] == 0


def test_proxy_mode_over_tcp_with_a_shared_secret(fleet: Fleet, tmp_path: Path) -> None:
    secret = tmp_path / "proxy-secret"
    secret.write_text("correct horse battery staple 42\n")
    os.chmod(secret, 0o600)
    process = _serve(fleet, f'tls = false\ntrusted_proxies = ["127.0.0.1"]\n'
                            f'proxy_secret_file = "{secret}"')
    port = int(_started(process, r"listening on http://127\.0\.0\.1:(\d+)"))
    try:
        client = fleet.client("proxied-host")
        body = report("proxied-host", 1, [observation("/a.pem", "a" * 64)])

        def post(headers: dict[str, str] | None) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            return _post(conn, body, client.cert_pem, headers)[0]

        # Anyone who reaches the port with a (public) client certificate: refused.
        assert post(None) == 403
        assert post({"X-Certescrow-Proxy-Secret": "guess"}) == 403
        assert fleet.journal_count() == 0
        assert post({"X-Certescrow-Proxy-Secret": "correct horse battery staple 42"}) == 200
    finally:
        code, err = _stop(process)
    assert code == 0
    assert "correct horse" not in err


@pytest.mark.parametrize(("extra", "says"), [
    ("admission_wait_ms = 60001", "admission_wait_ms: 0 to 60000"),
    ("admission_wait_ms = -1", "admission_wait_ms: 0 to 60000"),
    ("max_waiting_batches = -1", "max_waiting_batches: 0 to 100000"),
    ("max_waiting_batches = 100001", "max_waiting_batches: 0 to 100000"),
    ('max_waiting_batches = "many"', "max_waiting_batches: wrong type"),
    ("body_timeout_ms = 999", "body_timeout_ms: 1000 to 600000"),
    ("max_body_bytes = -1", "max_body_bytes: 1024 to 1073741824"),
    ("max_observations = 0", "max_observations: 1 to 100000"),
    ("max_observations = -5", "max_observations: 1 to 100000"),
    ("header_timeout_ms = 99", "header_timeout_ms: 100 to 600000"),
    ("header_timeout_ms = 600001", "header_timeout_ms: 100 to 600000"),
    ('header_timeout_ms = "10s"', "header_timeout_ms: wrong type"),
    ("max_connections_per_host = 0", "max_connections_per_host: 1 to 10000"),
    ("max_connections_per_host = 10001", "max_connections_per_host: 1 to 10000"),
    ("max_handshakes = 0", "max_handshakes: 1 to 100000"),
    ("max_handshakes = true", "max_handshakes: wrong type"),
])
def test_serve_settings_out_of_range_are_refused_by_name(fleet: Fleet, extra: str,
                                                                 says: str) -> None:
    process = _serve(fleet, extra)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 31, err
    assert says.encode() in err
    assert b"Traceback" not in err


def test_the_service_refreshes_expired_cached_actions_when_it_starts(fleet: Fleet) -> None:
    """A contract recorded long ago has cached actions that expired: the service evaluates
    it again at its start (then hourly), so the desk's ``policy actions`` reads it from the
    projection instead of evaluating it on every run."""
    from datetime import UTC, datetime

    from policy.ledger import Ledger
    from policy.tokyo import tokyo_date
    from tests.policy.ledger_fixtures import accepted

    long_ago = datetime(2025, 6, 1, 3, tzinfo=UTC)
    with Ledger.open(fleet.ledger) as ledger:
        ledger.append(accepted("C-1", at=long_ago), now=long_ago)
    days = {tokyo_date(datetime.now(UTC)).isoformat()}  # noqa: TID251 - the service's clock
    process = _serve(fleet, "")
    try:
        _started(process, r"listening on https://127\.0\.0\.1:(\d+)")
        deadline = time.monotonic() + 30
        evaluated = ""
        while time.monotonic() < deadline:
            with Ledger.open(fleet.ledger) as ledger:
                row = ledger._retry(lambda: ledger._sql_projection_row("C-1"))
            evaluated = row[0].evaluated_on if row else ""
            if evaluated != "2025-06-01":
                break
            time.sleep(0.2)
    finally:
        _, err = _stop(process)
    days.add(tokyo_date(datetime.now(UTC)).isoformat())  # noqa: TID251 - midnight may pass
    assert evaluated in days
    assert "projection refreshed: 1 contract(s) evaluated again" in err


def test_an_agents_client_certificate_that_is_no_certificate_is_named(fleet: Fleet,
                                                                     tmp_path: Path) -> None:
    from tests.fleet.test_agent_process import Agent
    from tests.fleet.test_outbox_exit_status import _run_once

    agent = Agent(tmp_path / "web1", fleet, "web1", port=1)
    (agent.root / "client.pem").write_text("[report]\nnot a certificate\n")
    done = _run_once(agent)
    assert done.returncode == 41, done.stderr
    assert (f"Error: [report] client_certificate {agent.root / 'client.pem'}: not a PEM "
            "certificate") in done.stderr
    assert "no key in the vault matches" not in done.stderr


def test_sighup_is_logged_and_the_service_keeps_serving(fleet: Fleet) -> None:
    # SIGHUP's default action ended the service silently (exit 129, no stopping line).
    process = _serve(fleet, "")
    fleet.port = int(_started(process, r"listening on https://127\.0\.0\.1:(\d+)"))
    try:
        process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert process.poll() is None
        good = fleet.client("good-host")
        assert fleet.connect(good).request("GET", "/v1/bindings").status == 200
        fleet.close_clients()
    finally:
        code, err = _stop(process)
    assert code == 0, err
    assert "warning reload-ignored: SIGHUP: policy serve does not reload; it keeps running" \
        in err, err
    assert "stopping" in err


def test_a_ca_key_that_is_not_the_ca_certificates_is_refused_at_start(fleet: Fleet) -> None:
    """``ca_key`` set to the service's own TLS key (it sits beside ``key``): the service
    started, and every renewal it signed would be a certificate it refuses, each host locked
    out as it renews (the re-review of session 14). Refused at start, naming both."""
    process = _serve(fleet, f'ca_key = "{fleet.server_key_id}"')
    _, err = process.communicate(timeout=60)
    text = err.decode()
    assert process.returncode == 31, text
    [line] = text.splitlines()
    assert (f"[serve] ca_key (vault entry {fleet.server_key_id}) is not the key of "
            "ca_certificate") in line
    # the fleet CA's own key entry starts as before
    started = _serve(fleet, f'ca_key = "{fleet.ca_key_id}"')
    try:
        _started(started, r"listening on (\S+)")
    finally:
        _stop(started)
