"""Errors of the agent (configuration, reading stores, the daemon)."""

from __future__ import annotations

__all__ = ["AgentError", "ConfigError", "LiveChainError", "OutputError", "OutputFileError"]


class AgentError(Exception):
    """Root of the agent's errors. ``exit_code`` is stable across releases."""

    exit_code = 30


class ConfigError(AgentError):
    """The configuration file is unreadable, not TOML, or has an unknown key or a wrong type.
    The message names the file and the key."""

    exit_code = 31


class LiveChainError(AgentError):
    """A live server could not be read: connection refused, timeout, not TLS, no certificate.
    The message names ``host:port`` and the reason."""

    exit_code = 35


class OutputError(AgentError):
    """Standard output could not be written (a full disk, an I/O error): what was written is
    incomplete, whichever command wrote it."""

    exit_code = 36


class OutputFileError(AgentError):
    """A file named to be written (``--out``, ``--csr-out``) cannot be written or is refused: a
    directory that does not exist, no permission, a directory, a link or a device, the vault,
    its key file or the ledger. Nothing was stored or registered unless the message says so.
    Not :class:`ConfigError`: its 31 sent the operator to a configuration file that is fine."""

    exit_code = 37
