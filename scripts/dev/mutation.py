"""Mutation testing of the evaluation glue, metrics, search backends, the flow solver and the
methods' losses (mutmut 3, ``pip install -e '.[mutation]'``; ``make mutation``).

mutmut derives a mutant's module name from its file path, but the folders benchmark/, methods/,
datasets/ are imported as ``hashbench.benchmark`` etc. (pyproject ``package-dir``). So each
module group is run in a staging copy laid out as the import namespace —
``STAGE/hashbench/{benchmark,methods,datasets}`` plus ``STAGE/tests`` — where mutmut's copy
(``STAGE/mutants``, first on sys.path) shadows the editable install. A group mutates only its
files (and, for the methods, only the loss functions: a mutant-name filter) and runs only its
test files, with ``--workers`` processes (default 1: the machine is shared).

Writes ``OUT/scores.csv`` (group, killed, survived, other, total) and ``OUT/survivors.txt``
(each surviving mutant with its diff). ``--rev`` stages a git revision instead of the working
tree (the before/after comparison in results/mutation/NOTES.md).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tarfile
import io
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: group -> (files to mutate, test files, mutant-name globs (None: every mutant of the files))
LOSS_NAMES = [
    # HashNet: the pairwise likelihood, its weights/factors, the two streams and their assembly
    "hashbench.methods.hashnet.x_continuous_similarity_factor__mutmut_*",
    "hashbench.methods.hashnet.x_pair_weights__mutmut_*",
    "hashbench.methods.hashnet.x_pairwise_likelihood_loss__mutmut_*",
    "hashbench.methods.hashnet.x_two_stream_split__mutmut_*",
    "hashbench.methods.hashnet.xǁHashNetǁloss_on__mutmut_*",
    "hashbench.methods.hashnet.xǁ_ScaleGradientǁ*__mutmut_*",
    # Deep Hash Table: class means, pairs, stage-1 and stage-2 (masked) loss assembly
    "hashbench.methods.dht.x_class_means__mutmut_*",
    "hashbench.methods.dht.x_anchor_positive_pairs__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁmetric_loss__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁunaries__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁnormalise_levels__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁsolve_codes__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁcode_labels__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁbatch_codes__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁmasked_loss__mutmut_*",
    "hashbench.methods.dht.xǁDeepHashTableǁhash_loss__mutmut_*",
    # cascade: level-wise codes, dynamic labels, per-level sum
    "hashbench.methods.cascade_dht.x_cascade_class_codes__mutmut_*",
    "hashbench.methods.cascade_dht.x_dynamic_labels__mutmut_*",
    "hashbench.methods.cascade_dht.xǁCascadeDHTǁnormalise_levels__mutmut_*",
    "hashbench.methods.cascade_dht.xǁCascadeDHTǁsolve_codes__mutmut_*",
    "hashbench.methods.cascade_dht.xǁCascadeDHTǁcode_labels__mutmut_*",
    "hashbench.methods.cascade_dht.xǁCascadeDHTǁmasked_loss__mutmut_*",
    # DRQ: the stage losses assembled in a training step
    "hashbench.methods.drq.xǁDRQǁtraining_loss__mutmut_*",
]
#: evaluate.py without its two wall-clock functions (speed_metrics_rows, _sparse_speed: 404 of its
#: 1,262 mutants, mostly option strings of timing rows), which the time budget left out
EVALUATE_NAMES = [f"hashbench.benchmark.evaluate.x_{f}__mutmut_*" for f in (
    "map_name", "_chunks", "_ranked_queries", "_float_sq_l2", "tie_groups", "ranking_metrics", "_key", "nmi_rows", "_relevance_of",
    "_exact_excluding", "sparse_metrics", "_candidate_relevance", "_n_relevant", "evaluate")] + [
    "hashbench.benchmark.evaluate.xǁEvalResultǁadd__mutmut_*"]
GROUPS: dict[str, tuple[list[str], list[str], list[str] | None]] = {
    # unit tests only: the end-to-end runs (tests/test_harness_e2e.py) also reach evaluate.py but
    # train every method, seconds per mutant
    "evaluate": (["benchmark/evaluate.py"], ["test_evaluate_glue.py"], EVALUATE_NAMES),
    "metrics_small": (["benchmark/metrics/candidates.py", "benchmark/metrics/speed.py", "benchmark/metrics/nmi.py"],
                      ["test_metrics_groups.py", "test_metrics_nmi.py", "test_metrics_speed.py", "test_dht.py",
                       "test_evaluate_glue.py", "test_metrics_input_errors.py"], None),
    "search_sparse": (["benchmark/search/sparse.py"], ["test_search_sparse.py", "test_cascade_dht.py",
                                                      "test_evaluate_glue.py"], None),
    "metrics": (["benchmark/metrics/*.py"],
                ["test_metrics_ranking.py", "test_metrics_groups.py", "test_metrics_nmi.py",
                 "test_metrics_speed.py", "test_evaluate_glue.py", "test_metrics_input_errors.py", "test_dht.py",
                 "test_evaluate_onepass.py", "test_metrics_edges.py"], None),
    "search": (["benchmark/search/*.py"],
               ["test_search_additive.py", "test_search_binary.py", "test_search_flat_timing.py",
                "test_search_sparse.py", "test_search_sparse_fast.py", "test_search_scale.py", "test_search_edges.py",
                "test_evaluate_glue.py"], None),
    "min_cost_flow": (["methods/min_cost_flow.py"],
                      ["test_min_cost_flow.py", "test_loss_assembly.py"], None),
    "metric_losses": (["methods/metric_losses.py"],
                      ["test_dht.py", "test_drq.py", "test_loss_assembly.py"], None),
    "drq_losses": (["methods/drq_losses.py"], ["test_drq.py", "test_loss_assembly.py"], None),
    "method_losses": (["methods/hashnet.py", "methods/dht.py", "methods/cascade_dht.py", "methods/drq.py"],
                      ["test_hashnet.py", "test_dht.py", "test_cascade_dht.py", "test_drq.py",
                       "test_loss_assembly.py"], LOSS_NAMES),
    # the same, one method family at a time
    "hashnet_loss": (["methods/hashnet.py"], ["test_hashnet.py", "test_loss_assembly.py"],
                     [n for n in LOSS_NAMES if ".hashnet." in n]),
    "dht_loss": (["methods/dht.py", "methods/cascade_dht.py"],
                 ["test_dht.py", "test_cascade_dht.py", "test_loss_assembly.py"],
                 [n for n in LOSS_NAMES if ".dht." in n or ".cascade_dht." in n]),
    "drq_loss": (["methods/drq.py"], ["test_drq.py", "test_loss_assembly.py"],
                 [n for n in LOSS_NAMES if ".drq." in n]),
}
#: whole method modules (issue 24), one group each, with the fast tests that exercise the module
#: (no end-to-end harness runs); tests/test_config_wiring.py where present
METHOD_TESTS = {
    "dht": ["test_dht.py", "test_cascade_dht.py", "test_loss_assembly.py", "test_param_groups.py",
            "test_schedules.py", "test_dht_units.py", "test_config_wiring.py"],
    "cascade_dht": ["test_cascade_dht.py", "test_dht.py", "test_loss_assembly.py", "test_param_groups.py",
                    "test_cascade_dht_units.py", "test_config_wiring.py"],
    "drq": ["test_drq.py", "test_loss_assembly.py", "test_param_groups.py", "test_schedules.py",
            "test_drq_units.py", "test_config_wiring.py"],
    "hashnet": ["test_hashnet.py", "test_loss_assembly.py", "test_param_groups.py", "test_schedules.py",
                "test_hashnet_units.py", "test_config_wiring.py"],
    "base": ["test_closed_form_methods.py", "test_dht.py", "test_drq.py", "test_base_units.py",
             "test_config_wiring.py"],
    **{m: ["test_closed_form_methods.py", "test_closed_form_units.py", "test_config_wiring.py"]
       for m in ("itq", "lsh", "pq", "rq")},
}
GROUPS.update({f"method_{m}": ([f"methods/{m}.py"], tests, None) for m, tests in METHOD_TESTS.items()})
#: files some tests read by their checkout path (methods/configs/*.yaml; methods/*.py, whose text
#: test_config_wiring checks the planted bugs against; scripts/: test_config_wiring reads
#: scripts/dev/plant_wiring_bugs.py, test_sweep_slurm starts scripts/dev/slurm_localhost.sh)
ALSO_COPY = ["methods", "scripts"]
FOLDERS = {"benchmark": "hashbench/benchmark", "methods": "hashbench/methods", "datasets": "hashbench/datasets",
           "hashbench": "hashbench", "tests": "tests",
           "scripts": "scripts"}


def export_tree(rev: str | None, dest: Path) -> None:
    """The files of ``rev`` (or of the working tree: tracked + untracked-not-ignored) under ``dest``,
    re-laid as the import namespace."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if rev:
        blob = subprocess.run(["git", "archive", rev, *FOLDERS], cwd=ROOT, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            members = tar.getmembers()
            for m in members:
                top, _, rest = m.name.partition("/")
                if top in FOLDERS and m.isfile():
                    if any(m.name.startswith(extra + "/") for extra in ALSO_COPY):
                        tar.extract(m, dest, filter="data")
                    m.name = f"{FOLDERS[top]}/{rest}" if rest else FOLDERS[top]
                    tar.extract(m, dest, filter="data")
        return
    for extra in ALSO_COPY:
        shutil.copytree(ROOT / extra, dest / extra)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", *FOLDERS], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        top, _, rest = f.partition("/")
        if (ROOT / f).is_file():
            target = dest / FOLDERS[top] / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, target)


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def write_config(stage: Path, files: list[str], tests: list[str]) -> list[str]:
    present = [t for t in tests if (stage / "tests" / t).exists()]
    mutate = [f"hashbench/{f}" for f in files]
    (stage / "pyproject.toml").write_text(f"""
[tool.mutmut]
source_paths = ["hashbench"]
only_mutate = {toml_list(mutate)}
pytest_add_cli_args_test_selection = {toml_list(["tests/" + t for t in present])}
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:timeout"]
also_copy = {toml_list(ALSO_COPY)}
process_isolation = "forkserver"
use_git_change_detection = false

[tool.pytest.ini_options]
testpaths = ["tests"]
markers = ["slow: long runs", "gpu: needs CUDA", "data: needs real data"]
addopts = "-m 'not slow and not gpu and not data' -q"
""")
    return present


def keep_constructors(stage: Path, files: list[str]) -> None:
    """Mark every ``def __init__`` of the mutated method files ``# pragma: no mutate block``: a
    trampolined constructor hides its frame from Lightning's ``save_hyperparameters`` (hparams
    would be empty); constructors are not loss assembly."""
    for pattern in files:
        for f in stage.glob(f"hashbench/{pattern}"):
            lines = f.read_text().splitlines(keepends=True)
            for i, line in enumerate(lines):
                if line.lstrip().startswith("def __init__("):
                    j = i                       # the pragma goes on the header's last line (the colon)
                    while not lines[j].rstrip().endswith(":"):
                        j += 1
                    lines[j] = lines[j].rstrip("\n") + "  # pragma: no mutate block\n"
            f.write_text("".join(lines))


def run_group(name: str, stage_root: Path, rev: str | None, workers: int, log,
              only: list[str] | None = None) -> dict:
    files, tests, names = GROUPS[name]
    names = only or names
    stage = stage_root / name
    export_tree(rev, stage)
    if any(f.startswith("methods/") for f in files):
        keep_constructors(stage, files)
    present = write_config(stage, files, tests)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("HASHBENCH_DATA", None)
    mutmut = [str(Path(sys.executable).with_name("mutmut"))]
    t0 = time.time()
    cmd = mutmut + ["run", "--max-children", str(workers), *(names or [])]
    shown = ["mutmut", *cmd[1:]]  # the log is committed under results/: no machine paths in it
    log.write(f"== {name}: {' '.join(shown)} (tests: {', '.join(present)})\n")
    log.flush()
    subprocess.run(cmd, cwd=stage, env=env, stdout=log, stderr=subprocess.STDOUT)
    return collect(name, stage, names, t0, present)


def collect(name: str, stage: Path, names: list[str] | None, t0: float, present: list[str]) -> dict:
    """Scores and survivor diffs of a group's staging directory (also of a run still under way:
    mutants not yet run count as ``other``)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    mutmut = [str(Path(sys.executable).with_name("mutmut"))]
    out = subprocess.run(mutmut + ["results", "--all", "true"], cwd=stage, env=env, capture_output=True,
                         text=True).stdout
    status: dict[str, str] = {}
    for line in out.splitlines():
        key, _, st = line.strip().rpartition(": ")
        if key and (names is None or any(_match(key, n) for n in names)):
            status[key] = st
    survivors = [k for k, v in status.items() if v not in ("killed", "not checked")]
    (stage / "status.txt").write_text("".join(f"{k}: {v}\n" for k, v in status.items()))
    diffs = [subprocess.run(mutmut + ["show", k], cwd=stage, env=env, capture_output=True, text=True).stdout
             for k in survivors]
    counts = {"killed": sum(v == "killed" for v in status.values()),
              "survived": sum(v == "survived" for v in status.values())}
    counts["other"] = len(status) - counts["killed"] - counts["survived"]
    return {"group": name, **counts, "total": len(status), "seconds": round(time.time() - t0),
            "tests": " ".join(present), "diffs": diffs}


def _match(key: str, pattern: str) -> bool:
    import fnmatch
    return fnmatch.fnmatchcase(key, pattern)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rev", help="stage this git revision instead of the working tree")
    p.add_argument("--groups", default=",".join(GROUPS), help=f"comma-separated, of {', '.join(GROUPS)}")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--stage", type=Path, default=ROOT / ".mutation")
    p.add_argument("--out", type=Path, default=ROOT / "results/mutation/latest")
    p.add_argument("--collect", action="store_true", help="only read the results already in the staging dirs")
    p.add_argument("--only", type=Path, help="a file of mutant names (one a line, ``name: status`` allowed): run "
                   "just those, e.g. the survivors of an earlier run after tests were added (mutants it "
                   "killed stay killed when only tests change)")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    label = a.rev or "worktree"
    rows = []
    with open(a.out / "mutmut.log", "a") as log:
        for g in a.groups.split(","):
            stage = a.stage / label.replace("/", "_")
            only = None
            if a.only:  # names (``name: status`` lines allowed) or globs, kept when they are this group's
                only = [ln.split(": ")[0].strip() for ln in a.only.read_text().splitlines() if ln.strip()]
                modules = ["hashbench." + f.removesuffix(".py").replace("/", ".") + ".*" for f in GROUPS[g][0]]
                only = [n for n in only if any(_match(n, m) for m in modules)
                        and any(_match(n, pat) for pat in (GROUPS[g][2] or ["*"]))]
                if not only:
                    continue
            if a.collect:
                r = collect(g, stage / g, only or GROUPS[g][2], time.time(), GROUPS[g][1])
            else:
                r = run_group(g, stage, a.rev, a.workers, log, only)
            rows.append(r)
            print(f"{g}: killed {r['killed']}/{r['total']} (survived {r['survived']}, other {r['other']}) "
                  f"in {r['seconds']} s", flush=True)
            with open(a.out / f"survivors-{g}.txt", "w") as f:
                f.write("\n".join(r["diffs"]))
            shutil.copy2(stage / g / "status.txt", a.out / f"status-{g}.txt")
    new = not (a.out / "scores.csv").exists()
    with open(a.out / "scores.csv", "a", newline="") as f:
        w = csv.DictWriter(f, ["revision", "group", "killed", "survived", "other", "total", "seconds", "tests"])
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({"revision": label, **{k: r[k] for k in w.fieldnames if k != "revision"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
