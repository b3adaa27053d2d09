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
from policy.errors import PolicyError
from vault.cli import vault_group
from vault.errors import VaultError

from .cli import agent_group, inspect_command, scan_command
from .config import load_raw_config
from .errors import AgentError
from .fleet_cli import enroll_command, fleet_group, serve_command
from .policy_reader import read_certificate_file

__all__ = ["certescrow", "main"]

KNOWN_ERRORS: tuple[type[Exception], ...] = (PolicyError, VaultError, AgentError)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    raw, used = load_raw_config(config_path)
    # Policy commands that take certificate files read them with the agent's reader: the
    # policy package itself never parses X.509.
    obj: dict[str, Any] = {"config": raw, "config_path": used,
                           READER_KEY: read_certificate_file}
    ctx.obj = obj


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
        click.echo(f"Error: {exc}", err=True)
        sys.exit(int(getattr(exc, "exit_code", 1)))
    except BrokenPipeError:
        # `certescrow ... | head`: the reader went away; that is not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
