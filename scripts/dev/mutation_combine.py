"""A group's after-score from an earlier full run plus a re-run of part of its mutants.

Only tests were added between the two runs (and the functions listed by the re-run's globs were
re-run whole, because their code changed), so every mutant the earlier run killed outside the
re-run set stays killed: a mutant is killed when some test fails on it, and adding tests cannot
make that test pass. The earlier run's non-killed mutants (its survivors file, one
``# name: status`` header per mutant) are all in the re-run set.

    python scripts/dev/mutation_combine.py STAGE_DIR RERUN_NAMES EARLIER_SURVIVORS GROUP OUT_DIR

STAGE_DIR: the re-run's staging directory (``mutmut results --all true`` is read there); several,
comma-separated, when the re-run was split (a second run with later tests over the first's open
mutants): a later directory's status replaces an earlier one's for every mutant it ran;
RERUN_NAMES: the ``--only`` file of the re-run (names or globs). Appends to OUT_DIR/scores.csv
(revision, group, killed, survived, not_run, other, total, ...), writes OUT_DIR/open-GROUP.txt
(every re-run mutant not killed, with its status; ``scripts/dev/mutation.py --collect`` writes their
diffs) and prints the counts.
"""
from __future__ import annotations

import csv
import fnmatch
import subprocess
import sys
from pathlib import Path


def statuses(stage: Path) -> dict[str, str]:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=stage, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        key, _, st = line.strip().rpartition(": ")
        if key:
            found[key] = st
    return found


def main(stage, rerun_names, earlier, group, out_dir) -> int:
    out_dir = Path(out_dir)
    patterns = Path(rerun_names).read_text().split()
    earlier_open = {line[2:].split(": ")[0] for line in Path(earlier).read_text().splitlines()
                    if line.startswith("# hashbench")}
    status: dict[str, str] = {}
    for one in stage.split(","):                              # later runs replace what they ran
        status.update({k: v for k, v in statuses(Path(one)).items() if v != "not checked" or k not in status})
    in_rerun = {k for k in status if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    missing = earlier_open - set(status)
    assert not (earlier_open & set(status)) - in_rerun, "an earlier non-killed mutant was not re-run"
    carried = len(set(status) - in_rerun)                     # killed by the earlier run
    rerun = {k: status[k] for k in in_rerun}
    killed = carried + sum(v == "killed" for v in rerun.values())  # timeouts are "other", as in session 2
    survived = [k for k, v in rerun.items() if v == "survived"]
    not_run = [k for k, v in rerun.items() if v == "not checked"]
    other = [k for k, v in rerun.items() if v not in ("killed", "survived", "not checked")]
    row = dict(revision="worktree", group=group, killed=killed, survived=len(survived), not_run=len(not_run),
               other=len(other), total=len(status), carried_killed=carried, rerun=len(rerun),
               earlier_names_gone=len(missing))
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "scores.csv", "a", newline="") as f:
        w = csv.DictWriter(f, list(row))
        if f.tell() == 0:
            w.writeheader()
        w.writerow(row)
    (out_dir / f"open-{group}.txt").write_text("".join(f"{k}: {rerun[k]}\n" for k in sorted(survived + other + not_run)))
    print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
