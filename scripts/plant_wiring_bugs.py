"""Plant hand-over bugs one at a time and record which wiring rows catch each (issue 24).

Each bug is an exact source replacement in one method module: a configured value passed to the
wrong place or ignored. For each one (and first for the unpatched code, the control) the script
copies the package folders and tests to a temporary directory, applies the replacement there
(the checkout is never edited), points the ``hashbench`` import mapping at the copy, runs
``pytest tests/test_config_wiring.py`` and reads the failed rows from its JUnit XML.

Usage (from the repository root)::

    nice -n 19 .venv/bin/python scripts/plant_wiring_bugs.py --out results/wiring/planted_bugs.csv

The CSV has one row per bug: the bug, file, replacement, pytest's exit status, the number of
rows run and failed, the failed rows (``method:key``), seconds, git revision and timestamp. An
existing CSV is replaced only with ``--overwrite``; writes are atomic.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: import name → folder, as ``[tool.setuptools.package-dir]`` in pyproject.toml maps them
PACKAGE_DIRS = {"hashbench": "hashbench", "hashbench.benchmark": "benchmark",
                "hashbench.datasets": "datasets", "hashbench.methods": "methods"}
TEST_FILE = "tests/test_config_wiring.py"


@dataclass(frozen=True)
class Bug:
    """Replace ``old`` (exactly once) by ``new`` in ``path``."""

    name: str
    path: str
    old: str
    new: str
    description: str


BUGS = [
    Bug("cascade-penalties-swapped", "methods/cascade_dht.py",
        "float(self.hparams.sibling_penalty), float(self.hparams.pairwise_penalty))",
        "float(self.hparams.pairwise_penalty), float(self.hparams.sibling_penalty))",
        "cascade passes the global penalty as the sibling one and vice versa to the flow solver"),
    Bug("drq-mu-nu-swapped", "methods/drq.py",
        "L.codebook_objective(qx, q.soft, q.hard, full, hp.tau, hp.mu, hp.nu)",
        "L.codebook_objective(qx, q.soft, q.hard, full, hp.tau, hp.nu, hp.mu)",
        "DRQ passes nu as the hard-quantisation weight mu and mu as the joint-central weight nu"),
    Bug("hashnet-norm-decay-from-bias", "methods/hashnet.py",
        "1.0, self.norm_decay_mult),",
        "1.0, self.bias_decay_mult),",
        "HashNet decays BatchNorm scales by bias_decay_mult instead of norm_decay_mult (equal, 0, by default)"),
    Bug("dht-hash-margin-from-metric", "methods/dht.py",
        "return ML.semihard_triplet_from_distances(dist, pos, neg, float(self.hparams.hash_margin))",
        "return ML.semihard_triplet_from_distances(dist, pos, neg, float(self.hparams.metric_margin))",
        "DHT's stage-2 code-masked triplet uses the stage-1 margin metric_margin instead of hash_margin"),
    Bug("drq-encoder-warmup-ignored", "methods/drq.py",
        "return lambda t: schedules.lr_factor(hp.lr_schedule, t, total, int(hp.warmup_steps), decay)",
        "return lambda t: schedules.lr_factor(hp.lr_schedule, t, total, 0, decay)",
        "DRQ's encoder schedule ignores warmup_steps"),
]

#: run in the child: map the hashbench packages onto the copy, then run pytest
BOOTSTRAP = """
import sys
mapping = {mapping!r}
for finder in sys.meta_path:
    module = sys.modules.get(getattr(finder, "__module__", ""))
    if "hashbench" in getattr(module, "MAPPING", {{}}):
        module.MAPPING.update(mapping)
        break
else:
    sys.exit("no editable install of hashbench to point at the copy")
import hashbench.methods
assert hashbench.methods.__file__.startswith(mapping["hashbench.methods"]), hashbench.methods.__file__
import pytest
sys.exit(pytest.main({args!r}))
"""


def copy_tree(dest: Path) -> None:
    """The package folders, tests and pyproject of the checkout (no results, caches or .git)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in [*PACKAGE_DIRS.values(), "tests"]:
        shutil.copytree(ROOT / folder, dest / folder, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def plant(dest: Path, bug: Bug) -> None:
    """Apply ``bug`` in the copy; ValueError unless its text occurs exactly once."""
    path = dest / bug.path
    text = path.read_text()
    if text.count(bug.old) != 1:
        raise ValueError(f"{bug.name}: {bug.old!r} occurs {text.count(bug.old)} times in {bug.path}, not once")
    path.write_text(text.replace(bug.old, bug.new))


def junit_outcomes(junit: Path) -> dict[str, str]:
    """Test id (``method:key`` for a row) → ``pass`` / ``fail`` / ``skip`` from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        name = name[name.index("[") + 1:-1] if "[" in name else name
        bad = case.find("failure") is not None or case.find("error") is not None
        out[name] = "fail" if bad else "skip" if case.find("skipped") is not None else "pass"
    return out


def run_wiring_test(bug: Bug | None) -> tuple[dict[str, str], dict]:
    """Copy, plant ``bug`` (None: the control), run the wiring test: (outcome of every test,
    the CSV row)."""
    with tempfile.TemporaryDirectory(prefix="wiring-bug-") as tmp:
        dest = Path(tmp)
        copy_tree(dest)
        if bug is not None:
            plant(dest, bug)
        mapping = {name: str(dest / folder) for name, folder in PACKAGE_DIRS.items()}
        junit = dest / "junit.xml"
        args = [TEST_FILE, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", BOOTSTRAP.format(mapping=mapping, args=args)], cwd=dest,
                              capture_output=True, text=True)
        seconds = time.time() - t0
        if not junit.exists():
            raise RuntimeError(f"{bug.name if bug else 'control'}: pytest wrote no report\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        outcomes = junit_outcomes(junit)
    failed = [name for name, outcome in outcomes.items() if outcome == "fail"]
    run = len(outcomes)
    return outcomes, {"bug": bug.name if bug else "none (control)", "file": bug.path if bug else "",
            "description": bug.description if bug else "unpatched code",
            "replacement": f"{bug.old} -> {bug.new}" if bug else "",
            "exit_status": proc.returncode, "rows_run": run, "rows_failed": len(failed),
            "failed_rows": ";".join(failed), "seconds": round(seconds, 1)}


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def wiring_table(outcomes: dict[str, str]) -> str:
    """Markdown table of every row of the wiring test: method, key, the value it is changed to
    (and the context), the observables that must / may change, the value check, the outcome."""
    sys.path.insert(0, str(ROOT / "tests"))
    import test_config_wiring as T

    lines = ["| method | key | changed to (context) | must change | may change | value check | result |",
             "|---|---|---|---|---|---|---|"]
    for method, key in T.CASES:
        row = T.row_for(method, key)
        harness = key in T.HARNESS_KEYS
        context = {**(T.HARNESS_CONTEXT if harness else {}), **row.context}
        must = sorted(row.changes | row.extra.get(method, frozenset()))
        check = " ".join((row.check.__doc__ or "value asserted").split()) if row.check else ""
        value = f"{row.value!r}" + (f" ({', '.join(f'{k}={v!r}' for k, v in context.items())})" if context else "")
        lines.append("| " + " | ".join(_cell(x) for x in (
            method, key, value, " ".join(must), " ".join(sorted(row.may)) or "-",
            f"{row.doc}; {check}" if row.check else row.doc, outcomes.get(f"{method}:{key}", "not run"))) + " |")
    return "\n".join(lines) + "\n"


def git_revision() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def write_text(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` atomically; FileExistsError for an existing file without ``overwrite``."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv(path: Path, rows: list[dict], overwrite: bool) -> None:
    """Write ``rows`` as CSV atomically (see :func:`write_text`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue(), overwrite)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "wiring" / "planted_bugs.csv")
    parser.add_argument("--bugs", nargs="*", help="names of the bugs to plant (default: all)")
    parser.add_argument("--table", type=Path, help="also write the markdown table of every row with the control's results")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing CSV / table")
    args = parser.parse_args(argv)
    chosen = [b for b in BUGS if not args.bugs or b.name in args.bugs]
    stamp, revision = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), git_revision()
    rows, control = [], {}
    for bug in [None, *chosen]:
        outcomes, row = run_wiring_test(bug)
        control = control or outcomes
        rows.append({**row, "git_revision": revision, "timestamp": stamp})
        print(f"{row['bug']}: exit {row['exit_status']}, {row['rows_failed']}/{row['rows_run']} rows failed: "
              f"{row['failed_rows'] or '-'} ({row['seconds']} s)", flush=True)
    write_csv(args.out, rows, args.overwrite)
    if args.table:
        write_text(args.table, wiring_table(control), args.overwrite)
    control_ok = rows[0]["rows_failed"] == 0
    caught = all(r["rows_failed"] > 0 for r in rows[1:])
    return 0 if control_ok and caught else 1


if __name__ == "__main__":
    sys.exit(main())
