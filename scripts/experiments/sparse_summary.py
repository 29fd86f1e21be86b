"""Summary table of sparse-code runs (Deep Hash Table family): per dataset × method × sparsity s,
mean ± std over seeds of the hash-table P@1/4/16, SUF@16, bucket NMI, mAP over the re-ranked
candidates, wall-clock speed-up (with recall of the exact top-100) against faiss IndexFlatL2 on
the reference features and on the re-ranking embedding, and exhaustive search's P@k in the
re-ranking embedding. Writes Markdown and CSV.

    python scripts/experiments/sparse_summary.py RUN_DIR... --out results/sparse/summary
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hashbench.benchmark.report import load_runs

#: (column, metric, regex the variant must match)
COLUMNS = [
    ("P@1", "precision@1", "search=hash_table"), ("P@4", "precision@4", "search=hash_table"),
    ("P@16", "precision@16", "search=hash_table"), ("SUF@16", "suf@16", "^rerank=[^,]*,s=\\d+$"),
    ("NMI buckets", "nmi_buckets", "table=database"),
    ("mAP candidates", "map@candidates", "denominator=relevant_retrieved"),
    ("speed-up vs flat (features)", "speedup_wallclock@100", "faiss_flat_l2_features"),
    ("recall@100 (features)", "recall_of_exact@100", "faiss_flat_l2_features"),
    ("speed-up vs flat (embedding)", "speedup_wallclock@100", "faiss_flat_l2_embedding"),
    ("exhaustive P@1", "precision@1", "^search=exhaustive_embedding$"),
    ("exhaustive P@16", "precision@16", "^search=exhaustive_embedding$"),
]


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset × method × s: ``mean ± std`` (ddof 1) over seeds, and the seed count."""
    variant = frame["variant"].fillna("")
    s_of_run = (frame[frame["metric"] == "suf@16"].assign(s=variant.str.extract(r"(?:^|,)s=(\d+)", expand=False))
                .drop_duplicates("run_dir").set_index("run_dir")["s"])
    frame = frame.assign(s=frame["run_dir"].map(s_of_run))
    out = {}
    for name, metric, pattern in COLUMNS:
        rows = frame[(frame["metric"] == metric) & variant.str.contains(pattern, regex=True)]
        g = rows.groupby(["dataset", "method_base", "s"])["value"]
        out[name] = g.agg(lambda v: f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}")
        out.setdefault("seeds", g.size())
    return pd.DataFrame(out).reset_index().rename(columns={"method_base": "method"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    table = summary(load_runs(args.run_dirs))
    text = table.to_markdown(index=False)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text + "\n")
        table.to_csv(args.out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
