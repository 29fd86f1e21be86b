"""Plant each bug of issue 13, one at a time, in a copy of the working tree laid out as the import
namespace (scripts/dev/mutation.py's staging, imported first through PYTHONPATH; the checkout itself is
never modified), run the test files that should catch it and record the first failing test.
Usage (from the repository root): ``.venv/bin/python scripts/dev/plant_bugs.py [INDEX ...]``
-> results/mutation/planted.csv (rewritten; with indices, rows appended)."""
from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
G, L, C = "tests/test_evaluate_glue.py", "tests/test_loss_assembly.py", "tests/test_closed_form_methods.py"
P = "tests/test_pinned_digits.py"
PLANTS = [
    ("recall@k computed as precision@k", "benchmark/evaluate.py",
     'keep(f"r@{k}", ranking.recall_at_k(n, r, k))', 'keep(f"r@{k}", ranking.precision_at_k(n, r, k))', [G]),
    ("mAP ignores the cut-off (evaluate)", "benchmark/evaluate.py",
     "ranking.average_precision(n, r, k=map_at, **opts)", "ranking.average_precision(n, r, k=None, **opts)", [G]),
    ("mAP ignores the protocol's map@1000 (runner)", "benchmark/runner.py",
     "        return protocol.map_at\n", "        return None\n", [G]),
    ("sparse P@k: exhaustive reference shifted by one", "benchmark/evaluate.py",
     "rel_x = _relevance_of(exact[:, :k],", "rel_x = _relevance_of(exact[:, 1:k + 1],", [G]),
    ("sparse: exact reference keeps the query itself", "benchmark/evaluate.py",
     "row = row[row != exclude[i]][:k]", "row = row[:k]", [G]),
    ("self-exclusion dropped (evaluate)", "benchmark/evaluate.py",
     "excl = None if inp.query_in_database is None else inp.query_in_database[sl]", "excl = None", [G]),
    ("self-exclusion dropped (runner)", "benchmark/runner.py",
     "return where if (where >= 0).any() else None", "return None", [G]),
    ("DHT stage-2 code mask replaced by all ones", "methods/dht.py",
     "dist = ML.masked_l1_distances(F.normalize(f, dim=1), codes)",
     "dist = ML.masked_l1_distances(F.normalize(f, dim=1), torch.ones_like(codes))", [L]),
    ("HashNet stream 2 given stream 1's labels", "methods/hashnet.py",
     "h1, h2, y1, y2 = h[i1], h[i2], y[i1], y[i2]", "h1, h2, y1, y2 = h[i1], h[i2], y[i1], y[i1]", [L]),
    ("cascade: last level only instead of the sum", "methods/cascade_dht.py",
     "total = total + super().masked_loss(", "total = super().masked_loss(", [L]),
    ("DRQ: mu and nu swapped in the stage loss", "methods/drq.py",
     "L.codebook_objective(qx, q.soft, q.hard, full, hp.tau, hp.mu, hp.nu)",
     "L.codebook_objective(qx, q.soft, q.hard, full, hp.tau, hp.nu, hp.mu)", [L]),
    ("DRQ: stage B quantises only the first step", "methods/drq.py",
     "m = self.n_steps if full else 1", "m = 1", [L]),
    ("ITQ: rotation transposed (R = U Vᵀ)", "methods/itq.py", "r = vt.T @ u.T", "r = u @ vt", [C]),
    ("LSH: features not mean-centred", "methods/lsh.py", "(to_numpy(x) - self.mean) @ self.projection",
     "to_numpy(x) @ self.projection", [C]),
    ("PQ: codebooks in the wrong sub-space", "methods/pq.py", "books[j, :, j * dsub:(j + 1) * dsub] = cents[j]",
     "books[j, :, (m - 1 - j) * dsub:(m - j) * dsub] = cents[j]", [C]),
    ("RQ: beam size ignored", "methods/rq.py", 'rq.max_beam_size = int(self.hparams.get("max_beam_size", 5))',
     "rq.max_beam_size = 5", [C]),
    ("exhaustive: embedding truncated to 8 dims", "methods/exhaustive.py",
     'return {"embedding": self.embed(x)}', 'return {"embedding": self.embed(x)[:, :8]}', [C]),
    ("ITQ: one iteration fewer (49)", "methods/itq.py", 'self.hparams.get("n_iter", 50)',
     'self.hparams.get("n_iter", 49)', [P]),
    ("HashNet: alpha = 12/K instead of 10/K", "methods/hashnet.py", "return 10.0 / int(bits)",
     "return 12.0 / int(bits)", [P]),
]


def main() -> int:
    import importlib.util
    import os
    import shutil
    import tempfile

    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts/dev/mutation.py")
    mutation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutation)
    stage = Path(tempfile.mkdtemp(prefix="hashbench-plant-"))
    mutation.export_tree(None, stage)
    shutil.copy2(ROOT / "pyproject.toml", stage / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(stage), "PYTHONDONTWRITEBYTECODE": "1"}
    rows = []
    only = sys.argv[1:]
    for i, (name, path, old, new, tests) in enumerate(PLANTS):
        if only and str(i) not in only:
            continue
        top, _, rest = path.partition("/")
        f = stage / mutation.FOLDERS[top] / rest
        text = f.read_text()
        assert text.count(old) == 1, (name, text.count(old))
        f.write_text(text.replace(old, new))
        try:
            out = subprocess.run([str(ROOT / ".venv/bin/pytest"), "-x", "-q", "-p", "no:cacheprovider", *tests],
                                 cwd=stage, env=env, capture_output=True, text=True).stdout
        finally:
            f.write_text(text)
        failed = re.findall(r"^FAILED (\S+)", out, re.M)
        rows.append({"bug": name, "file": path, "caught": bool(failed), "first_failing_test": failed[0] if failed else ""})
        print(rows[-1], flush=True)
    with open(ROOT / "results/mutation/planted.csv", "a" if only else "w", newline="") as fh:
        w = csv.DictWriter(fh, ["bug", "file", "caught", "first_failing_test"])
        if not only:
            w.writeheader()
        w.writerows(rows)
    return 0 if all(r["caught"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
