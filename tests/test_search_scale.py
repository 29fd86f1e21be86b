"""The scale benchmark end to end on a tiny database: its rows are measured, the exact
references have recall 1, the hash table agrees with its Python loop, results are not
overwritten, and the report renders the table and figures."""

import pandas as pd
import pytest

from hashbench.tools import scale_report, search_scale


def test_scale_benchmark_tiny(tmp_path):
    args = ["--n", "3000", "--classes", "20", "--queries", "40", "--buckets", "64", "--sparsity", "2",
            "--loop-queries", "20", "--skip", "hnsw", "additive", "cascade", "--nlist", "16", "--short-sweep",
            "--out", str(tmp_path)]
    search_scale.main(args)
    df = pd.read_csv(tmp_path / "n3000_c20_q40.csv")
    flat = df[df.backend == "IndexFlatL2"].iloc[0]
    assert flat.recall == 1.0 and flat.recall_emb == 1.0
    assert df[df.backend == "IndexBinaryFlat"].iloc[0].recall == 1.0
    hash_rows = df[df.backend == "hash table s=2"]
    assert len(hash_rows) >= 2 and (hash_rows.qps_1t > 0).all() and (hash_rows.candidates >= 100).all()
    # more expansion never loses recall of the exact top-100 in the embedding
    assert hash_rows.recall.is_monotonic_increasing
    assert (df.backend == "hash table s=2 [Python loop]").any()
    ivf = df[df.backend.str.startswith("IndexIVFFlat")]
    assert ivf.value.astype(int).iloc[-1] == 16 and ivf.recall.iloc[-1] == 1.0  # nprobe = nlist: exhaustive
    with pytest.raises(FileExistsError):
        search_scale.main(args)
    scale_report.main(["--runs", str(tmp_path), "--out", str(tmp_path)])
    text = (tmp_path / "table.md").read_text()
    assert "Python loop" in text and "Cost per candidate" in text
    assert (tmp_path / "qps_recall_n3000_c20_sparse_d_64.png").exists()
