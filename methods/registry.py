"""Method registry: name → class. Methods register themselves with :func:`register`."""
from __future__ import annotations

from typing import Callable

from hashbench.methods.base import HashingMethod

_REGISTRY: dict[str, type[HashingMethod]] = {}


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


Factory = Callable[..., HashingMethod]
