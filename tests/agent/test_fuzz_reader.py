"""A fixed-seed mutation corpus through the reader and ``scan --json``.

The corpus is made at test time from real certificates, chains, PKCS#7, PKCS#12 and private
keys (nothing committed), mutated with a fixed seed so a failure reproduces: bit flips, cuts,
insertions, deleted and duplicated slices, splices of two inputs, stray BEGIN lines, blank lines
and CRLF. Every file must be accounted for (certificates, keys, a coded error or a coded skip),
no exception may escape, nothing may reach stderr (warnings are errors in this suite), no
message may carry key material, and time must stay linear in size (checked loosely: a bound
per KiB far above the real cost, which only a quadratic or exponential path would cross).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from agent.reader import read_file
from agent.records import ERROR_CODES, SKIP_CODES, FileResult, ReadLimits
from tests.agent.hostile_keys import key_material_windows, leaked_windows
from tests.certfactory import fresh_key, make_ca, make_cert, shared_key

pytestmark = pytest.mark.slow  # ~25 s on two busy cores; still run by .ci/run

SEED = 20260914
CORPUS_SIZE = 3000
CLI_SUBSET = 400
CERTESCROW = Path(sys.executable).with_name("certescrow")
_PASSWORD = b"fuzz-password"
_SECONDS_PER_KIB = 0.05
_SECONDS_BASE = 2.0


def _seeds() -> tuple[dict[str, bytes], list[bytes]]:
    """Real inputs, and the private keys among them (whose bytes must never be printed)."""
    ca = make_ca()
    leaf = make_cert(sans=("fuzz.example", "www.fuzz.example"))
    rsa_leaf = make_cert(sans=("rsa.fuzz.example",), key=shared_key("rsa"))
    ed_key = fresh_key("ed25519")
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    pkcs8, none = serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    keys = [
        leaf.key_pem(),
        leaf.key_pem(b"pass"),
        rsa_leaf.key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, none),
        ed_key.private_bytes(pem, pkcs8, none),
        ed_key.private_bytes(pem, serialization.PrivateFormat.OpenSSH, none),
        ed_key.private_bytes(der, pkcs8, none),
    ]
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr.example")]))
           .sign(shared_key(), hashes.SHA256()))  # type: ignore[arg-type]
    seeds = {
        "leaf.pem": leaf.pem,
        "leaf.der": leaf.der,
        "fullchain.pem": leaf.pem + ca.cert.public_bytes(pem),
        "combined.pem": rsa_leaf.pem + keys[2],
        "chain.p7b": pkcs7.serialize_certificates([leaf.cert, ca.cert], pem),
        "chain.p7c": pkcs7.serialize_certificates([leaf.cert, ca.cert], der),
        "bundle.p12": pkcs12.serialize_key_and_certificates(
            b"x", leaf.key, leaf.cert, [ca.cert], none),  # type: ignore[arg-type]
        "locked.p12": pkcs12.serialize_key_and_certificates(
            b"x", leaf.key, leaf.cert, None,  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(_PASSWORD)),
        "req.pem": csr.public_bytes(pem),
        "README": b"This directory contains your keys and certificates.\n",
    }
    for i, key in enumerate(keys):
        seeds[f"key{i}.pem" if key.startswith(b"-----") else f"key{i}.der"] = key
    return seeds, keys


def _mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        size = len(out)
        op = rng.randrange(9)
        at = rng.randrange(size + 1) if size else 0
        if op == 0 and size:
            out[min(at, size - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del out[at:]
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and size:
            end = min(size, at + rng.randint(1, 64))
            del out[at:end]
        elif op == 4 and size:
            end = min(size, at + rng.randint(1, 256))
            out[at:at] = out[at:end] * rng.randint(1, 3)
        elif op == 5:
            cut = rng.randrange(len(other) + 1)
            out = out[:at] + bytearray(other[cut:])
        elif op == 6:
            out[at:at] = b"-----BEGIN " + rng.choice([b"CERTIFICATE", b"PRIVATE KEY", b"PKCS7",
                                                      b"X"]) + b"-----\n"
        elif op == 7:
            out = bytearray(bytes(out).replace(b"\n", rng.choice([b"\r\n", b"\n\n", b"\n  "])))
        elif op == 8 and size:
            out[min(at, size - 1)] = rng.choice([0x00, 0x30, 0x80, 0xFF, 0x2D])
    return bytes(out)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes], set[str]]:
    seeds, keys = _seeds()
    names = sorted(seeds)
    rng = random.Random(SEED)
    directory = tmp_path_factory.mktemp("fuzz")
    files: dict[str, bytes] = {}
    for i in range(CORPUS_SIZE):
        name = rng.choice(names)
        data = _mutate(rng, seeds[name], seeds[rng.choice(names)])
        filename = f"{i:05d}-{name}"
        (directory / filename).write_bytes(data)
        files[filename] = data
    return directory, files, key_material_windows(keys)


def _accounted(result: FileResult) -> bool:
    if result.error is not None:
        return result.error.code in ERROR_CODES and not result.certificates
    if result.skipped is not None:
        return result.skipped.code in SKIP_CODES and not result.certificates and not result.keys
    return bool(result.certificates or result.keys)


def _texts(result: FileResult) -> str:
    texts = [f.message for f in result.findings]
    texts += [e.message for e in result.cert_errors]
    for record in result.certificates:
        texts += [f.message for f in record.findings]
    if result.error is not None:
        texts.append(result.error.message)
    if result.skipped is not None:
        texts.append(result.skipped.message)
    return "\n".join(texts)


def test_every_mutated_file_is_accounted_for_quietly_and_in_linear_time(
    corpus: tuple[Path, dict[str, bytes], set[str]], capfd: pytest.CaptureFixture[str],
) -> None:
    directory, files, windows = corpus
    worst = 0.0
    slowest = ""
    for filename, data in files.items():
        started = time.perf_counter()
        result = read_file(directory / filename, limits=ReadLimits(), passwords=(_PASSWORD,))
        elapsed = time.perf_counter() - started
        assert _accounted(result), (filename, result)
        assert not leaked_windows(_texts(result), windows), filename
        budget = _SECONDS_BASE + _SECONDS_PER_KIB * len(data) / 1024
        if elapsed / budget > worst:
            worst, slowest = elapsed / budget, filename
    assert worst < 1.0, f"{slowest} took {worst:.0%} of its time budget"
    captured = capfd.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_scan_json_accounts_for_every_mutated_file_with_nothing_on_stderr(
    corpus: tuple[Path, dict[str, bytes], set[str]], tmp_path: Path,
) -> None:
    directory, files, windows = corpus
    subset = tmp_path / "subset"
    subset.mkdir()
    for filename in sorted(files)[:CLI_SUBSET]:
        os.link(directory / filename, subset / filename)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTESCROW_", "XDG_"))}
    env.update(HOME=str(tmp_path), CERTESCROW_TESTONLY_NOW="2026-03-01T00:00:00Z",
               PYTHONWARNINGS="error")
    done = subprocess.run([str(CERTESCROW), "scan", "--json", str(subset)], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    stderr = [line for line in done.stderr.splitlines()
              if "CERTESCROW_TESTONLY_NOW" not in line and not line.startswith("UNKNOWN")]
    assert stderr == [], done.stderr[-4000:]
    assert done.returncode in (0, 1, 2, 3)
    objects = json.loads(done.stdout)
    assert {Path(o["path"]).name for o in objects} == set(sorted(files)[:CLI_SUBSET])
    assert not leaked_windows(done.stdout, windows)
