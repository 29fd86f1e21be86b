"""Loading third-party plugins from entry points (``importlib.metadata``), shared by the method and
dataset registries: each entry point is loaded on its own, and one that fails is reported in one
line naming it, so a broken plugin never takes the built-ins (or the other plugins) down."""
from __future__ import annotations

import logging
from importlib.metadata import entry_points
from typing import Callable

log = logging.getLogger("hashbench")


def load_entry_points(group: str, add: Callable, errors: dict[str, str], kind: str) -> None:
    """Call ``add(entry_point, "dist version")`` for each entry point of ``group`` not yet in
    ``errors``; one that raises is recorded in ``errors`` (key ``"<name> (<dist> <version>)"``) and
    reported in one warning line naming the entry point and its distribution."""
    for ep in entry_points(group=group):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "unknown distribution"
        key = f"{ep.name} ({dist})"
        if key in errors:
            continue
        try:
            add(ep, dist)
        except Exception as err:  # noqa: BLE001 - a broken plugin must not take the built-ins down
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            errors[key] = reason
            log.warning("hashbench: %s plugin %r from %s not loaded: %s", kind, ep.name, dist, reason)
