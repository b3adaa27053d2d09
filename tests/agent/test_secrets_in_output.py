"""No key material in any output: malformed keys of every type through every reader output.

cryptography's error for a PKCS#8 key with blank lines between its base64 lines quotes that
line: the whole Ed25519 key. ``scan --json``, ``agent run --once`` and the daemon's
``file-error`` log printed it. Library error text is now mapped to the agent's own sentences;
these tests feed malformed keys (RSA, EC, Ed25519, Ed448, DSA; PKCS#8, traditional, OpenSSH and
DER; encrypted and not; blank lines, trailing whitespace and CRLF, flipped and cut bodies)
through each output and look for any 16-character run of their base64 or hex.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent.reader import read_file
from agent.records import ReadLimits
from tests.agent.hostile_keys import hostile_key_files, key_material_windows, leaked_windows
from tests.certfactory import make_cert
from tests.clirun import CERTESCROW, clean_env

AT = "2026-03-01T00:00:00Z"


def _store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    (store / "cert.pem").write_bytes(make_cert(sans=("ok.example",)).pem)
    for name, content in hostile_key_files().items():
        path = store / name
        path.write_bytes(content)
        path.chmod(0o600)
    return store


def _env(home: Path) -> dict[str, str]:
    return clean_env(home, at=AT, PYTHONWARNINGS="error")


def _run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CERTESCROW), *args], capture_output=True, text=True,
                          env=_env(home), timeout=120, check=False)


def _windows() -> set[str]:
    return key_material_windows(hostile_key_files().values())


def test_the_windows_would_catch_the_quoted_key_line() -> None:
    # The check itself: cryptography's own message for the blank-line Ed25519 key is caught.
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = hostile_key_files()["ed25519-pkcs8-plain-blank.pem"]
    with pytest.raises(ValueError, match="InvalidHeader") as info:
        load_pem_private_key(data, None)
    assert leaked_windows(str(info.value), _windows())


def test_every_reader_message_about_a_malformed_key_is_ours(tmp_path: Path) -> None:
    store = _store(tmp_path)
    windows = _windows()
    for name in hostile_key_files():
        result = read_file(store / name, limits=ReadLimits(), passwords=(b"correct horse",))
        texts = [f.message for f in result.findings]
        texts += [e.message for e in result.cert_errors]
        if result.error is not None:
            texts.append(result.error.message)
        if result.skipped is not None:
            texts.append(result.skipped.message)
        assert not leaked_windows(" | ".join(texts), windows), name
        assert result.keys or result.error is not None, name


@pytest.mark.parametrize("fmt", ["--json", "--csv", "--table"])
def test_scan_prints_no_key_material(tmp_path: Path, fmt: str) -> None:
    store = _store(tmp_path)
    done = _run("scan", *([fmt] if fmt != "--table" else []), str(store), home=tmp_path)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, done.stderr[-4000:]
    assert "Warning" not in done.stderr  # library warnings are findings, never stderr
    assert not leaked_windows(output, _windows())
    assert "ok.example" in done.stdout


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_agent_run_once_prints_and_logs_no_key_material(tmp_path: Path, log_format: str) -> None:
    store = _store(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/ledger.sqlite3"\n'
                      f'[agent]\nlog_format = "{log_format}"\n'
                      f'[[agent.stores]]\npath = "{store}"\n')
    done = _run("--config", str(config), "agent", "run", "--once", home=tmp_path)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, done.stderr[-4000:]
    assert "file-error" in done.stderr  # the log lines under test were written
    assert not leaked_windows(output, _windows())


@pytest.mark.slow
def test_the_daemon_file_error_log_holds_no_key_material(tmp_path: Path) -> None:
    # The running daemon reads a key file that appears after start-up (the watch path) and
    # logs file-error for it.
    store = tmp_path / "store"
    store.mkdir()
    (store / "cert.pem").write_bytes(make_cert(sans=("ok.example",)).pem)
    config = tmp_path / "config.toml"
    config.write_text(f'[policy]\nledger = "{tmp_path}/ledger.sqlite3"\n'
                      '[agent]\nquiet_period_ms = 100\nresync_interval_s = 3600\n'
                      f'[[agent.stores]]\npath = "{store}"\n')
    log = tmp_path / "daemon.log"
    with log.open("w") as stderr:
        daemon = subprocess.Popen([str(CERTESCROW), "--config", str(config), "agent", "run"],
                                  stdout=subprocess.DEVNULL, stderr=stderr, env=_env(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while "ok.example" not in log.read_text() and "reported" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            assert daemon.poll() is None, log.read_text()
            time.sleep(0.1)
        hostile = hostile_key_files()
        for name in ("ed25519-pkcs8-plain-blank.pem", "rsa-pkcs8-plain-blank.pem",
                     "ec-traditional-plain-flip.pem", "dsa-der-plain-cut.der"):
            path = store / name
            path.write_bytes(hostile[name])
            path.chmod(0o600)
        while log.read_text().count("file-error") < 4:
            assert time.monotonic() < deadline, log.read_text()
            assert daemon.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    text = log.read_text()
    assert "Traceback" not in text
    assert not leaked_windows(text, _windows())
