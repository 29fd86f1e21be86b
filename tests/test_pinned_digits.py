"""Pinned digits metrics, one small seeded CPU run per registered method (16 bits, seed 0, split
seed 0, the shipped configs): a change that moves any of these values fails ``make test``, not
only ``make regress``.

Closed-form methods run their shipped configs unchanged; their values are the 16-bit rows of
results/baselines/regress.csv (checked when pinned). The trainable methods run their shipped
configs with fewer epochs (``EPOCHS``) to keep this file fast; ``make regress`` covers their full
schedules. Every run is repeatable bit for bit on one machine (seeded, CPU, one thread for the
small heads); the tolerance only absorbs float summation-order differences across CPUs.
"""
from __future__ import annotations

import pytest

from hashbench import methods
from hashbench.benchmark.runner import RunRequest, load_data, run_one

#: shortened schedules of the trainable methods (shipped digits configs otherwise)
EPOCHS = {"hashnet": 3, "drq": 4, "dht": 2, "cascade-dht": 2, "dht-th": 1, "dht-vq": 1}
TOL = 1e-6

MAP = ("map@all", "denominator=relevant_retrieved,empty=zero,ties=expected")
P1, P100 = ("precision@1", "ties=expected"), ("precision@100", "ties=expected")
R100 = ("recall@100", "ties=expected")
HP1 = ("precision@1", "rerank=embedding,s=1,search=hash_table")
HP16 = ("precision@16", "rerank=embedding,s=1,search=hash_table")
SUF16 = ("suf@16", "rerank=embedding,s=1")
MAPC = ("map@candidates", "denominator=all_relevant,rerank=embedding,s=1")
NMI = ("nmi_kmeans", "on=query_embedding")

PINNED: dict[str, dict[tuple[str, str], float]] = {
    # DHT family re-pinned 2026-12-06 (issue 22): stage 1 no longer decays the trunk and Embed
    # biases (FC weight decay on weights only); each value moved by < 0.02 (SUF@16 by < 0.51)
    "cascade-dht": {HP1: 0.9333333333333333, HP16: 0.7960416666666666, SUF16: 10.84154113557358,
                    MAPC: 0.26206253963312914},
    "dht": {HP1: 0.9766666666666667, HP16: 0.858125, SUF16: 4.604170511164422, MAPC: 0.4382243745863919},
    "dht-th": {HP1: 0.96, HP16: 0.8404166666666667, SUF16: 9.08337041381821, MAPC: 0.36532121074963103},
    "dht-vq": {HP1: 0.9466666666666667, HP16: 0.903125, SUF16: 13.32878257256485, MAPC: 0.6195229957642819},
    "drq": {MAP: 0.9481571693918472, P1: 0.9633333333333334, P100: 0.9612999999999999, R100: 0.6421967446915459},
    # closed form: equal to the 16-bit digits rows of results/baselines/regress.csv (exhaustive:
    # its single run at 32 bits there), except rq, whose baseline row (map 0.67112) predates a
    # change of its codes: the value here is what this revision computes, within regress's tolerance
    "exhaustive": {MAP: 0.6615214050712228, P1: 0.9866666666666667, P100: 0.7229333333333333,
                   NMI: 0.6851543589371566},
    "hashnet": {MAP: 0.6189730872055313, P1: 0.8337122395988095, P100: 0.649810494010735, R100: 0.43401470185449287,
                NMI: 0.7653945631841774},
    "itq": {MAP: 0.6227689211611929, P1: 0.9086691086691087, P100: 0.6726708666980891, R100: 0.44888314150231434,
            NMI: 0.6722332239123279},
    "lsh": {MAP: 0.3156546681530545, P1: 0.6660686304436304, P100: 0.3656432599402517, R100: 0.2440955102124762,
            NMI: 0.5530693005098966},
    "pq": {MAP: 0.6784381113328174, P1: 0.9716666666666667, P100: 0.7373, R100: 0.492576008620605},
    "rq": {MAP: 0.6684888850250149, P1: 0.9866666666666667, P100: 0.7326666666666667, R100: 0.4894689811159143},
}


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", None, 0, None)


@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
    """Lazily, one run per method (shared by its tests): metric -> value of the 16-bit rows."""
    import faiss

    cache: dict[str, dict[tuple[str, str], float]] = {}
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)          # PQ/RQ training: same values, several times faster on a busy machine

    def get(name: str) -> dict[tuple[str, str], float]:
        if name not in cache:
            req = RunRequest(method=name, dataset="digits", bits=16, seed=0, device="cpu", speed=False,
                             epochs=EPOCHS.get(name), out_dir=tmp_path_factory.mktemp(name))
            _, frame = run_one(req, digits)
            frame = frame[frame["bits"] == 16]
            cache[name] = {(m, v): float(x) for m, v, x in zip(frame["metric"], frame["variant"], frame["value"])}
        return cache[name]

    yield get
    faiss.omp_set_num_threads(threads)


def test_every_registered_method_is_pinned():
    assert sorted(PINNED) == methods.available()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_digits_values(name, runs):
    got = runs(name)
    for key, want in PINNED[name].items():
        assert key in got, f"{name}: no row {key}"
        assert got[key] == pytest.approx(want, abs=TOL), f"{name} {key}: {got[key]!r} != pinned {want!r}"
