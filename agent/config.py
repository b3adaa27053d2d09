"""Configuration file loading (placeholder: replaced by the full validated schema)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["default_config_paths", "load_raw_config"]


def default_config_paths() -> tuple[Path, ...]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return (Path(xdg) / "certescrow" / "config.toml", Path("/etc/certescrow/config.toml"))


def load_raw_config(path: Path | None) -> tuple[dict[str, Any], Path | None]:
    if path is None:
        path = next((p for p in default_config_paths() if p.is_file()), None)
        if path is None:
            return {}, None
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh), path
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
