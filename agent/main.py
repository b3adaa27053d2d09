"""The ``certescrow`` command: one click group assembled from each package's own ``cli.py``.

This is the outermost shell. It is the only place that turns exceptions into exit codes: a
certescrow error prints ``Error: <message>`` (one line, no traceback) and exits with the error's
stable code; anything else is a bug and is shown with its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from policy.certsource import READER_KEY
from policy.cli import contract_group, policy_group
from policy.cliutil import SETTINGS_KEY
from policy.errors import PolicyError
from vault.cli import vault_group
from vault.errors import VaultError

from .cli import agent_group, inspect_command, scan_command
from .config import CONFIG_KEY, config_from_raw, load_raw_config, refuse_readable_secrets
from .errors import AgentError
from .fleet_cli import enroll_command, fleet_group, serve_command
from .policy_reader import read_certificate_file
from .untrusted import for_terminal

__all__ = ["certescrow", "main"]

KNOWN_ERRORS: tuple[type[Exception], ...] = (PolicyError, VaultError, AgentError)


class _Root(click.Group):
    """The root group; it remembers the command line so that its callback can tell
    ``agent check-config FILE`` and ``--help`` apart from every other command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV_KEY] = list(args)
        return super().parse_args(ctx, args)


_ARGV_KEY = "certescrow.argv"


@click.group(cls=_Root,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
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
                           READER_KEY: read_certificate_file}
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


certescrow.add_command(policy_group)
certescrow.add_command(contract_group)
certescrow.add_command(vault_group)
certescrow.add_command(scan_command)
certescrow.add_command(inspect_command)
certescrow.add_command(agent_group)
# The fleet (issue 13): these need cryptography and the vault, so they live in agent/.
certescrow.add_command(fleet_group)
policy_group.add_command(serve_command)
agent_group.add_command(enroll_command)


def main(argv: list[str] | None = None) -> None:
    try:
        rv = certescrow.main(args=argv, prog_name="certescrow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KNOWN_ERRORS as exc:
        # Our messages quote file names and other text an attacker may have written.
        click.echo(f"Error: {for_terminal(str(exc))}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 1)))
    except BrokenPipeError:
        # `certescrow ... | head`: the reader went away; that is not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
