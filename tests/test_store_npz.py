"""A run's arrays (codes.npz, per_query.npz): written at deflate level 1, read back exactly."""
import zipfile
import zlib

import numpy as np

from hashbench.benchmark import store


def test_write_npz_round_trips_every_array_and_uses_deflate_level_1(tmp_path):
    writer = store.RunWriter(tmp_path, "run")
    rng = np.random.default_rng(0)
    arrays = {"code_type": np.array("additive"), "rerank": np.array(True),
              "database_embedding": rng.standard_normal((300, 7)).astype(np.float32),
              "query_codes": rng.integers(0, 256, (5, 4)), "labels": np.eye(3, dtype=np.uint8)}
    writer.write_npz("codes.npz", **arrays)
    path = writer.path / "codes.npz"
    with np.load(path) as z:
        assert sorted(z.files) == sorted(arrays)
        for name, value in arrays.items():
            assert z[name].dtype == value.dtype and np.array_equal(z[name], value)
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_DEFLATED
            raw = zf.read(info)
            level1 = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate, as in a zip member
            assert info.compress_size == len(level1.compress(raw) + level1.flush())
