"""Method registry: name → class. Methods register themselves with :func:`register`; third-party
packages add theirs through the entry-point group :data:`ENTRY_POINT_GROUP` (see :func:`load_plugins`)."""
from __future__ import annotations

from pathlib import Path

from hashbench.methods.base import HashingMethod
from hashbench.plugins import load_entry_points

ENTRY_POINT_GROUP = "hashbench.methods"

_REGISTRY: dict[str, type[HashingMethod]] = {}
#: name → "distribution version" of each method a plugin supplied
_ORIGIN: dict[str, str] = {}
#: entry point → one-line reason, for every plugin that failed to load
PLUGIN_ERRORS: dict[str, str] = {}


def register(cls: type[HashingMethod]) -> type[HashingMethod]:
    """Class decorator adding ``cls`` under ``cls.name``; a name may be registered once."""
    if not cls.name or not cls.code_type:
        raise TypeError(f"{cls.__name__} must set name and code_type")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"method name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def get_method(name: str) -> type[HashingMethod]:
    """The class registered as ``name``; ValueError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(available())}") from None


def origin(name: str) -> str | None:
    """The distribution ("name version") that supplied method ``name`` as a plugin; None for built-ins."""
    return _ORIGIN.get(name)


def config_file(name: str) -> Path | None:
    """The YAML config a registered method ships beside its code (its ``config_file`` attribute),
    or None. Built-in methods keep theirs in ``methods/configs/<name>.yaml`` instead."""
    cls = _REGISTRY.get(name)
    path = getattr(cls, "config_file", None) if cls is not None else None
    return Path(path) if path else None


def _register_plugin(ep, dist: str) -> None:
    obj = ep.load()
    if not (isinstance(obj, type) and issubclass(obj, HashingMethod)):
        raise TypeError(f"{ep.value} is not a HashingMethod subclass")
    if obj.name != ep.name:
        raise ValueError(f"entry point name {ep.name!r} differs from the class's name {obj.name!r}")
    register(obj)
    _ORIGIN[obj.name] = dist


def load_plugins() -> None:
    """Register the methods of every installed distribution's ``hashbench.methods`` entry points.

    Each entry point names a :class:`HashingMethod` subclass (``name = "pkg.module:Class"``) and its
    name must equal the class's ``name``. Safe to call again (e.g. after installing a plugin)."""
    load_entry_points(ENTRY_POINT_GROUP, _register_plugin, PLUGIN_ERRORS, "method")
