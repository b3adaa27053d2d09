"""The agent: reads certificate stores, classifies with the policy core, reports, escrows."""

from .errors import AgentError, ConfigError
from .reader import read_file
from .records import (
    ERROR_CODES,
    CertificateRecord,
    FileError,
    FileResult,
    KeyRecord,
    ReadLimits,
)
from .scan import iter_store_files, scan_paths

__all__ = [
    "ERROR_CODES",
    "AgentError",
    "CertificateRecord",
    "ConfigError",
    "FileError",
    "FileResult",
    "KeyRecord",
    "ReadLimits",
    "iter_store_files",
    "read_file",
    "scan_paths",
]
