"""The agent: reads certificate stores, classifies with the policy core, reports, escrows."""

# The names below are imported when first used (PEP 562), not with the package: every
# ``certescrow`` command imports some module of this package, and importing all of them
# (the reader, the ledger, the live-chain client ...) cost every command, ``policy actions``
# included, a large share of its start.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import AgentError, ConfigError
    from .livechain import LiveChain, LiveChainError, fetch_chain, verify_chain
    from .reader import read_file
    from .records import (
        ERROR_CODES,
        CertificateRecord,
        FileError,
        FileResult,
        KeyRecord,
        ReadLimits,
    )
    from .report import EXIT_STATUS, CertificateRow, FileRow, ScanReport, build_report
    from .scan import iter_store_files, scan_paths

_EXPORTS: dict[str, str] = {
    "AgentError": ".errors",
    "ConfigError": ".errors",
    "LiveChain": ".livechain",
    "LiveChainError": ".livechain",
    "fetch_chain": ".livechain",
    "verify_chain": ".livechain",
    "read_file": ".reader",
    "ERROR_CODES": ".records",
    "CertificateRecord": ".records",
    "FileError": ".records",
    "FileResult": ".records",
    "KeyRecord": ".records",
    "ReadLimits": ".records",
    "EXIT_STATUS": ".report",
    "CertificateRow": ".report",
    "FileRow": ".report",
    "ScanReport": ".report",
    "build_report": ".report",
    "iter_store_files": ".scan",
    "scan_paths": ".scan",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ERROR_CODES",
    "EXIT_STATUS",
    "AgentError",
    "CertificateRecord",
    "CertificateRow",
    "ConfigError",
    "FileError",
    "FileResult",
    "FileRow",
    "KeyRecord",
    "LiveChain",
    "LiveChainError",
    "ReadLimits",
    "ScanReport",
    "build_report",
    "fetch_chain",
    "iter_store_files",
    "read_file",
    "scan_paths",
    "verify_chain",
]
