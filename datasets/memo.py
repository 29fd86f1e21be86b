"""In-process memo of arrays read from cache files, for long-lived processes (the warm workers of
a local sweep, :mod:`hashbench.benchmark.sweep.worker`) that run many cells on the same data.

Off by default: a plain ``hashbench run`` reads its files once anyway, and keeping them would only
hold memory. :func:`enable` turns it on for this process. An entry is keyed by the file's
absolute path, size, modification time (ns) and inode, so a cache file rewritten or replaced
(``os.replace`` gives a new inode) is read again. Memoized arrays are made read-only: one cell
cannot change what the next one reads (an in-place write raises instead). Least recently used
entries are dropped beyond ``max_bytes``.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

_lock = threading.Lock()
_entries: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
_derived: dict[tuple, tuple[Any, tuple[np.ndarray, ...]]] = {}
_max_bytes: int | None = None  # None: off


def enable(max_bytes: int = 8 * 2**30) -> None:
    """Memoize :func:`read` calls in this process, keeping at most ``max_bytes`` of arrays."""
    global _max_bytes
    _max_bytes = int(max_bytes)


def disable() -> None:
    """Stop memoizing and drop every entry."""
    global _max_bytes
    with _lock:
        _max_bytes = None
        _entries.clear()
        _derived.clear()


def file_key(path: str | os.PathLike) -> tuple:
    """(absolute path, size, mtime_ns, inode) of ``path``: what identifies its content here."""
    st = os.stat(path)
    return os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino


def _arrays(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, np.ndarray)]
    return []


def read(path: str | os.PathLike, reader: Callable[[str | os.PathLike], Any]) -> Any:
    """``reader(path)``; with the memo on, the value read last time when the file is unchanged
    (:func:`file_key`). Values memoized are arrays or dicts of arrays, made read-only."""
    if _max_bytes is None:
        return reader(path)
    key = file_key(path)
    with _lock:
        hit = _entries.get(key)
        if hit is not None:
            _entries.move_to_end(key)
            return hit[0]
    value = reader(path)
    arrays = _arrays(value)
    for a in arrays:
        a.flags.writeable = False
    size = sum(a.nbytes for a in arrays)
    with _lock:
        for old in [k for k in _entries if k[0] == key[0]]:  # an older version of the same file
            del _entries[old]
        if _max_bytes is not None and size <= _max_bytes:
            _entries[key] = (value, size)
            while sum(s for _, s in _entries.values()) > _max_bytes:
                _entries.popitem(last=False)
        held = _held_ids()
        for k in [k for k, (_, arrs) in _derived.items() if not all(id(a) in held for a in arrs)]:
            del _derived[k]  # computed from arrays the memo no longer holds
    return value


def _held_ids() -> set[int]:
    return {id(a) for value, _ in _entries.values() for a in _arrays(value)}


def derived(name: str, arrays: tuple[np.ndarray, ...], compute: Callable[[], Any]) -> Any:
    """``compute()``, a value that depends only on the content of ``arrays`` (a fingerprint);
    kept while every one of ``arrays`` is an array the memo holds (read-only, so its content
    is what it was), computed each time otherwise."""
    with _lock:
        if _max_bytes is None or not all(id(a) in _held_ids() for a in arrays):
            memoizable = False
        else:
            memoizable = True
            hit = _derived.get((name, *map(id, arrays)))
            if hit is not None and all(x is y for x, y in zip(hit[1], arrays)):
                return hit[0]
    value = compute()
    if memoizable:
        with _lock:
            _derived[(name, *map(id, arrays))] = (value, tuple(arrays))
    return value


def held_bytes() -> int:
    """Bytes of arrays the memo holds now."""
    with _lock:
        return sum(s for _, s in _entries.values())
