"""One-off migration (issue 25): the committed results written before run records kept their
paths portably carry the absolute paths of the machines they ran on (``data_source``, cache
paths, ``request.out_dir``, sweep ``out``, logs). This rewrites them the way new runs write them
(:func:`hashbench.paths.portable`): data roots as ``$HASHBENCH_DATA``, cache roots as
``$HASHBENCH_CACHE``, the checkout as a relative path; the GPU machine's environment as
``$VIRTUAL_ENV`` and its home as ``~``. Every other byte is kept: no metric value, key or hash
changes (metrics.csv files hold none of these roots and are not touched; ``/tmp`` scratch paths,
which name datasets on the GPU runs, are left as recorded).

    python scripts/migrations/migrate_portable_paths.py            # rewrite, print the files changed
    python scripts/migrations/migrate_portable_paths.py --check    # exit 1 when a file would change
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: (absolute root as recorded, portable spelling), the longest first where one contains another.
ROOTS = [
    ("/work/main/.gpu-carry/part1/", "$HASHBENCH_DATA/"),   # the GPU machine's data root (a carried copy)
    ("/work/main/.gpu-carry/cache/", "$HASHBENCH_CACHE/"),
    ("/work/main/.dev/drq/data/", "$HASHBENCH_DATA/"),
    ("/work/shared/data/", "$HASHBENCH_DATA/"),
    ("/usr/share/datasets/", "$HASHBENCH_DATA/"),
    ("/root/.cache/hashbench/", "$HASHBENCH_CACHE/"),       # the default cache root (~/.cache/hashbench)
    ("/work/cache/", "$HASHBENCH_CACHE/"),
    ("/work/main/", ""),                                     # the checkout: relative paths
    ("/opt/torch/.venv/", "$VIRTUAL_ENV/"),
    ("/root/", "~/"),
]
#: Machine-written records (notes are edited by hand; metric tables hold none of the roots).
SUFFIXES = (".yaml", ".json", ".log", ".txt")


def portable(text: str) -> str:
    """``text`` with every root of :data:`ROOTS` replaced, in order."""
    for root, name in ROOTS:
        text = text.replace(root, name)
    return text


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.splitlines() if line.endswith(SUFFIXES)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a file would change; write nothing")
    check = parser.parse_args(argv).check
    changed = []
    for path in tracked_files():
        text = path.read_text()
        new = portable(text)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    for path in changed:
        print(path.relative_to(REPO))
    print(f"{len(changed)} files {'would change' if check else 'rewritten'}", file=sys.stderr)
    return 1 if check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
