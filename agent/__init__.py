"""The agent: reads certificate stores, classifies with the policy core, reports, escrows."""

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
