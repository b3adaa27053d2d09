"""The scan a user would write instead of ``certescrow scan --json``: the baseline of
``bench_scan.py`` (issue 12).

A short script with ``cryptography``: walk the tree, load each file, print subject, issuer,
SANs, serial, dates and SHA-256 as JSON lines. It classifies nothing, explains nothing, pairs
no keys, reads only PEM certificates (one per file) and trusts its input: it is the least a
useful inventory does, written the obvious way.

    python bench/diy_scan.py DIR [DIR ...] > inventory.jsonl
"""

from __future__ import annotations

import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes


def describe(path: str) -> dict[str, object]:
    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = [str(name.value) for name in san]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "path": path,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "sans": sans,
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def main(roots: list[str]) -> int:
    write = sys.stdout.write
    for root in roots:
        for directory, subdirs, names in os.walk(root):
            subdirs.sort()
            for name in sorted(names):
                path = os.path.join(directory, name)
                try:
                    row = describe(path)
                except (OSError, ValueError) as exc:
                    row = {"path": path, "error": str(exc)}
                write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
