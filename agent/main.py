"""The ``certescrow`` command: one click group assembled from each package's own ``cli.py``.

This is the outermost shell. It is the only place that turns exceptions into exit codes: a
certescrow error prints ``Error: <message>`` (one line, no traceback) and exits with the error's
stable code; anything else is a bug and is shown with its traceback.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from policy.certsource import READER_KEY
from policy.cliutil import FILE_THE_COMMAND_READS, SETTINGS_KEY
from policy.errors import PolicyError
from untrusted.text import for_terminal
from vault import nocore
from vault.errors import VaultError

from .config import CONFIG_KEY, config_from_raw, load_raw_config, refuse_readable_secrets
from .errors import AgentError, OutputError

if TYPE_CHECKING:
    from policy.certsource import CertificateFile

__all__ = ["certescrow", "main"]

KNOWN_ERRORS: tuple[type[Exception], ...] = (PolicyError, VaultError, AgentError)


_COMMANDS: dict[str, str] = {
    "policy": "policy.cli:policy_group",
    "contract": "policy.cli:contract_group",
    "vault": "vault.cli:vault_group",
    "scan": "agent.cli:scan_command",
    "inspect": "agent.cli:inspect_command",
    "agent": "agent.daemon_cli:agent_group",
    # The fleet (issue 13): these need cryptography and the vault, so they live in agent/.
    "fleet": "agent.fleet_cli:fleet_group",
}
"""Each command and where it lives. Imported when the command line names it (``--help``
lists them all): ``policy actions`` needs neither the X.509 reader nor aiohttp, and importing
every command group cost each command about 0.4 s of CPU before it did anything."""
_SUBCOMMANDS: dict[str, dict[str, str]] = {
    "policy": {"serve": "agent.fleet_cli:serve_command"},
    "agent": {"enroll": "agent.fleet_cli:enroll_command"},
}
"""Commands of the fleet that sit in another package's group (also imported when named)."""


def _load(spec: str) -> click.Command:
    module, _, name = spec.partition(":")
    command = getattr(importlib.import_module(module), name)
    if not isinstance(command, click.Command):
        raise TypeError(f"{spec} is not a click command")
    return command


class _LazyGroup(click.Group):
    """A group whose commands in ``lazy`` are imported the first time they are asked for."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = self.lazy.get(cmd_name)
        if spec is not None:
            command = _load(spec)  # an import error propagates; the name stays lazy
            del self.lazy[cmd_name]
            for sub_name, sub_spec in _SUBCOMMANDS.get(cmd_name, {}).items():
                if isinstance(command, click.Group):
                    command.add_command(_LazyCommand(sub_name, sub_spec), sub_name)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


class _LazyCommand(click.Command):
    """A subcommand of another package's group, imported only when it runs or shows help."""

    def __init__(self, name: str, spec: str) -> None:
        super().__init__(name)
        self._spec = spec
        self._real: click.Command | None = None

    def _command(self) -> click.Command:
        if self._real is None:
            self._real = _load(self._spec)
        return self._real

    def get_short_help_str(self, limit: int = 45) -> str:
        return self._command().get_short_help_str(limit)

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        return self._command().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self._command().invoke(ctx)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return self._command().get_params(ctx)


class _Root(_LazyGroup):
    """The root group; it remembers the command line so that its callback can tell
    ``agent check-config FILE`` and ``--help`` apart from every other command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV_KEY] = list(args)
        return super().parse_args(ctx, args)


def _read_certificate_file(path: Path) -> CertificateFile:
    """The agent's reader for policy commands that take certificate files, imported only by
    them (it brings cryptography's X.509 in)."""
    from .policy_reader import read_certificate_file

    return read_certificate_file(path)


_ARGV_KEY = "certescrow.argv"


@click.group(cls=_Root, lazy=_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    # Not click's checks: the file is refused as every configuration file is (a directory,
    # FIFO or device included), by agent.config.read_config_file, exit 31.
    type=FILE_THE_COMMAND_READS,
    envvar="CERTESCROW_CONFIG",
    help="Configuration file (TOML). Default: $CERTESCROW_CONFIG, then "
    "~/.config/certescrow/config.toml, then /etc/certescrow/config.toml, else built-in defaults.",
)
@click.version_option(package_name="certescrow")
@click.pass_context
def certescrow(ctx: click.Context, config_path: Path | None) -> None:
    """Keep server certificates, and the contract that governs them, honest."""
    # The configuration is read and validated here, once, for every command: a typo such as
    # `notice_lead_day` is the same error (exit 31, naming the file and the key) whether the
    # command is `scan`, `contract` or `agent run`. `agent check-config FILE` checks FILE itself.
    raw, used = load_raw_config(config_path)
    if not _checks_another_file(ctx):
        config = config_from_raw(raw, source=used)
        if used is not None:
            refuse_readable_secrets(config, used)
    else:
        config = None
    # Policy commands that take certificate files read them with the agent's reader: the
    # policy package itself never parses X.509.
    obj: dict[str, Any] = {"config": raw, "config_path": used, CONFIG_KEY: config,
                           READER_KEY: _read_certificate_file}
    if config is not None:
        obj[SETTINGS_KEY] = config.policy.settings
    ctx.obj = obj


def _checks_another_file(ctx: click.Context) -> bool:
    """``agent check-config FILE`` (or ``--help``): the default configuration must not stand in
    the way of checking another file or reading the help."""
    argv: list[str] = ctx.meta.get(_ARGV_KEY, [])
    if "--" in argv:
        argv = argv[:argv.index("--")]
    if any(arg in ("-h", "--help") for arg in argv):
        return True
    if "check-config" not in argv:
        return False
    after = argv[argv.index("check-config") + 1:]
    return any(not arg.startswith("-") for arg in after)



def main(argv: list[str] | None = None) -> None:
    # First, before any configuration, key or password is read: a core dump of any command
    # (the daemon and `policy serve` hold keys for their whole life) would put them on disk.
    nocore.forbid_core_dumps()
    _hold_standard_descriptors()
    sys.exit(_run(argv))


def _hold_standard_descriptors() -> None:
    """Started with standard output or error closed (``>&-``, a careless supervisor), Python
    leaves ``sys.stdout`` ``None`` (every command then ended in a traceback) and the next file
    opened takes descriptor 1 or 2, where a library's write would land in it (a ledger, a
    vault). Such a descriptor is held open on /dev/null: the output is lost, as asked, and the
    exit status still says what happened."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_RDWR)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
        setattr(sys, name, open(fd, "r" if fd == 0 else "w",
                                encoding="utf-8", errors="surrogateescape", closefd=False))


def _run(argv: list[str] | None) -> int:
    try:
        rv = certescrow.main(args=argv, prog_name="certescrow", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except KNOWN_ERRORS as exc:
        # Our messages quote file names and other text an attacker may have written.
        click.echo(f"Error: {for_terminal(str(exc))}", err=True)
        return int(getattr(exc, "exit_code", 1))
    except OSError as exc:
        return _output_failed(exc)
    try:
        sys.stdout.flush()  # what is still buffered fails here, not in the interpreter's exit
    except OSError as exc:
        return _output_failed(exc)
    return code


_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})
"""Errors of a write to standard output (``scan --json > /dev/full``). An error of a file we
read or write by name carries its name and is each command's own to report."""


def _output_failed(exc: OSError) -> int:
    if isinstance(exc, BrokenPipeError):
        # `certescrow ... | head`: the reader went away; that is not an error of ours.
        _discard_stdout()
        sys.stderr.close()
        return 0
    if exc.filename is not None or exc.errno not in _OUTPUT_ERRNOS:
        raise exc
    _discard_stdout()
    name = errno.errorcode.get(exc.errno or 0, "error")
    click.echo(f"Error: cannot write to standard output ({name}: {exc.strerror}); what "
               "was written is incomplete", err=True)
    return OutputError.exit_code


def _discard_stdout() -> None:
    """Point standard output at /dev/null: what is still buffered would otherwise fail again
    when the interpreter exits, as an unraisable traceback on stderr."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no standard output to redirect (closed, or not a file)
        pass


if __name__ == "__main__":  # pragma: no cover
    main()
