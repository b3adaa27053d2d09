"""The agent: reads certificate stores, classifies with the policy core, reports, escrows."""

# Re-exported names are imported when first used (vault/lazyexports.py says why).
from __future__ import annotations

from typing import TYPE_CHECKING

from vault.lazyexports import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
