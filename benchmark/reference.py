"""Published numbers, as data: what the papers report, transcribed from the project's method
notes (``docs/methods.md`` §4.8 for DRQ, §5.7 for HashNet).

Every row is **reported by the paper**, never measured here: tables show these rows apart from
the computed ones, labelled as such, and they never enter a mean, a std, a ranking (bold /
underline), a confidence interval or a test. A row names the harness protocol and metric it is
comparable with (``harness_protocol`` / ``metric``) when there is one; rows whose protocol the
harness does not reproduce have ``harness_protocol=None`` and are listed, never placed in a
table of computed runs. ``confidence`` carries the note's marker: ``paper`` (transcribed from
the paper's table), ``2nd`` (quoted by a secondary source), ``unverified``.
"""
from __future__ import annotations

import pandas as pd

LABEL = "reported by the paper"

COLUMNS = ["method", "dataset", "harness_protocol", "metric", "bits", "value", "source", "protocol_note",
           "confidence"]

_DRQ = "Song et al., IJCAI 2019 (DRQ)"
_HASHNET = "Cao et al., ICCV 2017 (HashNet)"

# DRQ Table 3 (setting 2: protocol of DTQ), mAP as printed, 8/16/24/32 bits, column groups
# CIFAR-10 (mAP@54000 = the whole 54,000-image database), NUS-WIDE (mAP@5000), ImageNet (mAP@5000).
_DRQ_TABLE3 = {
    "DTQ": ([0.785, 0.789, 0.790, 0.792], [0.795, 0.798, 0.800, 0.801], [0.641, 0.644, 0.647, 0.651]),
    "DVSQ": ([0.715, 0.727, 0.730, 0.733], [0.780, 0.790, 0.792, 0.797], [0.500, 0.502, 0.505, 0.518]),
    "DSH": ([0.592, 0.625, 0.651, 0.659], [0.653, 0.688, 0.695, 0.699], [0.332, 0.398, 0.487, 0.537]),
    "DHN": ([0.512, 0.568, 0.594, 0.603], [0.668, 0.702, 0.713, 0.716], [0.358, 0.426, 0.531, 0.556]),
    "SQ": ([0.567, 0.583, 0.602, 0.615], [0.653, 0.691, 0.698, 0.716], [0.465, 0.536, 0.592, 0.611]),
    "SDH": ([0.356, 0.461, 0.496, 0.520], [0.645, 0.688, 0.704, 0.711], [0.385, 0.516, 0.570, 0.605]),
    "DRQ": ([0.803, 0.824, 0.832, 0.837], [0.748, 0.810, 0.817, 0.821], [0.551, 0.583, 0.585, 0.587]),
}
# DRQ Table 1 (setting 1: protocol of PQNet, CIFAR-10, mAP@5000), 16/24/36/48 bits.
_DRQ_TABLE1 = {
    "PQNet": [0.947, 0.947, 0.946, 0.947],
    "DSDH": [0.935, 0.940, 0.939, 0.939],
    "DTSH": [0.915, 0.923, 0.925, 0.926],
    "DRQ": [0.942, 0.943, 0.943, 0.943],
}
# DRQ Table 2 (setting 1, NUS-WIDE 21 concepts, mAP@5000), 12/24/36/48 bits.
_DRQ_TABLE2 = {
    "PQNet": [0.795, 0.819, 0.823, 0.830],
    "DSDH": [0.776, 0.808, 0.820, 0.829],
    "FASTH": [0.779, 0.807, 0.816, 0.825],
    "SDH": [0.780, 0.804, 0.815, 0.824],
    "DTSH": [0.773, 0.808, 0.812, 0.824],
    "DRQ": [0.772, 0.838, 0.840, 0.843],
}
# HashNet (AlexNet), 16/32/48/64 bits: 48 bits quoted by DeepHash-pytorch's README (2nd), the
# other lengths unverified against the paper PDF.
_HASHNET_TABLE = {
    ("imagenet100", "map@1000"): [0.5059, 0.6306, 0.6633, 0.6835],
    ("nuswide81", "map@5000"): [0.6623, 0.6988, 0.7114, 0.7163],
    ("coco", "map@5000"): [0.6873, 0.7184, 0.7301, 0.7362],
}


def _rows() -> list[dict]:
    rows = []
    for method, (c10, nus, inet) in _DRQ_TABLE3.items():
        for bits, v in zip((8, 16, 24, 32), c10):
            rows.append(dict(method=method, dataset="cifar10", harness_protocol="query1k-train5k-db54k", metric="map@all",
                             bits=bits, value=v, source=f"{_DRQ}, Table 3", confidence="paper",
                             protocol_note="setting 2 (DTQ): 100 queries + 500 training images per class, database "
                                           "the other 54,000; mAP@54000 = mAP over the whole database"))
        for bits, v in zip((8, 16, 24, 32), nus):
            rows.append(dict(method=method, dataset="nuswide21", harness_protocol=None, metric="map@5000", bits=bits,
                             value=v, source=f"{_DRQ}, Table 3", confidence="paper",
                             protocol_note="setting 2: 21 concepts, 5,000 random queries, 10,000 training images "
                                           "from the database"))
        for bits, v in zip((8, 16, 24, 32), inet):
            rows.append(dict(method=method, dataset="imagenet100", harness_protocol=None, metric="map@5000", bits=bits,
                             value=v, source=f"{_DRQ}, Table 3", confidence="paper",
                             protocol_note="setting 2: 100 random classes (DVSQ), queries = their validation images, "
                                           "100 training images per class"))
    for method, values in _DRQ_TABLE1.items():
        for bits, v in zip((16, 24, 36, 48), values):
            rows.append(dict(method=method, dataset="cifar10", harness_protocol=None, metric="map@5000", bits=bits,
                             value=v, source=f"{_DRQ}, Table 1", confidence="paper",
                             protocol_note="setting 1 (PQNet): 5,000 per class sampled from the pooled 60k as "
                                           "database = training set, the other 10,000 are queries"))
    for method, values in _DRQ_TABLE2.items():
        for bits, v in zip((12, 24, 36, 48), values):
            rows.append(dict(method=method, dataset="nuswide21", harness_protocol=None, metric="map@5000", bits=bits,
                             value=v, source=f"{_DRQ}, Table 2", confidence="paper",
                             protocol_note="setting 1: 1,000 queries per concept, 5,000 training images per concept"))
    for (dataset, metric), values in _HASHNET_TABLE.items():
        for bits, v in zip((16, 32, 48, 64), values):
            rows.append(dict(method="HashNet", dataset=dataset, harness_protocol="lists", metric=metric, bits=bits,
                             value=v, source=f"{_HASHNET}, AlexNet", confidence="2nd" if bits == 48 else "unverified",
                             protocol_note="HashNet's shipped list files"))
    return rows


def reference_table() -> pd.DataFrame:
    """Every transcribed published number, one row each (:data:`COLUMNS`)."""
    return pd.DataFrame.from_records(_rows(), columns=COLUMNS)


def matching(dataset: str, protocol: str, metric: str, bits: list[int] | None = None,
             methods: list[str] | None = None) -> pd.DataFrame:
    """Published rows comparable with a harness table column group: same dataset, a harness
    protocol equal to ``protocol``, same metric name, and (optionally) code length in ``bits``
    and method name (case-insensitive) in ``methods``."""
    ref = reference_table()
    sel = (ref["dataset"] == dataset) & (ref["harness_protocol"] == protocol) & (ref["metric"] == metric)
    if bits is not None:
        sel &= ref["bits"].isin([int(b) for b in bits])
    if methods is not None:
        wanted = {m.lower() for m in methods}
        sel &= ref["method"].str.lower().isin(wanted)
    return ref[sel].reset_index(drop=True)
