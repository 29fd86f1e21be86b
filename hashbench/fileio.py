"""Writing files for a shared filesystem, used by the harness and the dataset loaders alike
(``datasets/`` may not import ``benchmark/``, so the one helper lives here).

:func:`write_atomic` is the only way hashbench writes a file that another process may read at
the same time (result stores, feature and dataset caches, sweep manifests): the content goes to
a temporary file beside the target, which gets the mode a plain ``open`` would give (0644 under
umask 022, where ``tempfile`` would make it 0600) and is moved onto the target with
``os.replace``; a reader sees the old file or the new one, never a torn one, and a write that
fails leaves no temporary file behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def shareable(path: Path) -> Path:
    """Give ``path`` the mode a plain ``mkdir``/``open`` would: 0777 (folders) or 0666 (files)
    less the umask, i.e. 0755/0644 under the usual umask 022."""
    base = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, base & ~_umask())
    return Path(path)


def write_atomic(path: Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same suffix, so ``np.save`` and
    ``np.savez`` add none), make it shareable and ``os.replace`` it onto ``path``; the temporary
    file is removed when ``write`` raises. Creates the parent folder. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        shareable(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(text: str, path: Path) -> Path:
    """Write ``text`` to ``path`` with :func:`write_atomic`."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))
