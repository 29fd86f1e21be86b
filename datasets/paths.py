"""Where data and the decoded-array cache live."""

from __future__ import annotations

import os
import pathlib

DATA_ENV = "HASHBENCH_DATA"
CACHE_ENV = "HASHBENCH_CACHE"


def data_root(cli_value: str | None = None) -> pathlib.Path | None:
    """The data root: the CLI value if given, else env HASHBENCH_DATA if set and non-empty, else None."""
    value = cli_value if cli_value else os.environ.get(DATA_ENV) or None
    return None if value is None else pathlib.Path(value).expanduser()


def cache_dir() -> pathlib.Path:
    """The cache folder: env HASHBENCH_CACHE, else ~/.cache/hashbench; created if absent."""
    value = os.environ.get(CACHE_ENV)
    path = pathlib.Path(value).expanduser() if value else pathlib.Path.home() / ".cache" / "hashbench"
    path.mkdir(parents=True, exist_ok=True)
    return path
