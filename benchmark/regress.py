"""CI regression of metric tables: a fixed suite, a committed baseline, calibrated tolerances.

**The suite** (:data:`SUITE`): every registered method, at 16 and 32 bits, method seed 0 and
split seed 0, CPU, the methods' shipped configs, on
  - ``digits`` / ``query300-db1497`` (bundled with scikit-learn, always runs; quality rows only:
    its searches take about a millisecond, too short for a speed ratio to mean anything), and
  - ``cifar10`` / ``query500-train2k-db10k`` when the data root holds CIFAR-10 **and** the frozen
    features each method needs are already cached under ``$HASHBENCH_CACHE/features/``
    (``--features extract`` computes missing ones: ~11 min for the 60k images on 2 cores, too
    slow for CI, whose cache starts empty, so CI skips CIFAR-10 with a notice).
A method whose bit length a previous run of it already evaluated (DRQ: one 32-bit training
evaluates 8/16/24/32) is not trained again, and ``float`` methods (exhaustive search) run once,
at the longest length; rows at bit lengths outside the suite's are dropped. The CIFAR-10 entry
shortens HashNet's and DRQ's schedules (20 and 8 epochs, :data:`SUITE`).

**Where runs go**: outside the result stores, under ``results/regress-runs/`` (:data:`WORK_DIR`,
git-ignored), one folder per suite run holding ``suite.json``; ``hashbench report`` passes over
such folders (and anything named ``regress-runs``) unless it is pointed at one, so a
regression run never changes a report.

**The regression table** (:data:`TABLE_COLUMNS`, one row per dataset × protocol × method ×
settings × run_bits × bits × metric × variant; ``settings`` is the runs' recorded departures
from the shipped config, e.g. the CIFAR-10 entry's ``epochs=20``) keeps every metric row of the runs except times in seconds
(training, feature extraction, search). ``kind`` is ``quality`` (compared as values) or
``speed_ratio`` (``speedup_wallclock@k``: exhaustive float search time / the method's search
time, both measured in the same process, so a uniformly slower or busier machine cancels out;
compared on a log scale).

**Tolerance rule** (per row key, measured by :func:`calibrate` over S method seeds, S ≥ 2):
  - quality:      tol = max(3 · σ, 0.005),        σ = sample std (ddof=1) over seeds of the value;
  - speed_ratio:  tol = max(3 · σ_log, ln 3),     σ_log = sample std over seeds of ln(ratio);
  - a row without a calibrated tolerance gets the floor (0.005, or ln 3).
The floor keeps bit-exact seed-independent rows (exhaustive search, σ = 0) from failing on
floating-point differences between machines; ln 3 means "search became three times slower
relative to float search" (two runs of one suite on a machine shared with two other jobs
differed by up to ×0.54, so a factor of 2 would let a busy machine fail a run).

**Verdicts** (:func:`compare`), with delta = now − baseline (quality) or ln(now / baseline)
(speed): ``worse`` when delta < −tol (fails), ``better`` when delta > tol (reported, passes),
``ok`` otherwise; ``missing`` when a baseline row is absent from the run (fails) unless its
dataset was skipped; ``new`` when a run row has no baseline (passes). NaN: both NaN is ``ok``,
finite → NaN is ``worse``, NaN → finite is ``better``. Every metric kept is higher-is-better.

With fixed seeds on one CPU the suite is bit-for-bit repeatable (quality rows; timing ratios
are not), which ``tests/test_regress.py`` checks.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from hashbench import paths
from hashbench.benchmark import store

QUALITY_FLOOR = 0.005
SPEED_FLOOR = math.log(3.0)
SIGMAS = 3.0

TABLE_COLUMNS = ["dataset", "protocol", "method", "settings", "run_bits", "bits", "metric", "variant", "value", "kind",
                 "git_revision", "hardware"]
KEY = ["dataset", "protocol", "method", "settings", "run_bits", "bits", "metric", "variant"]

#: Registered methods not yet in the committed baseline (added after the last calibration):
#: their rows compare as "new". Empty this set when make regress-calibrate has covered them.
UNCALIBRATED: frozenset[str] = frozenset()

BASELINE = paths.REGRESS_BASELINE
TOLERANCES = paths.REGRESS_TOLERANCES
WORK_DIR = paths.REGRESS_WORK_DIR


@dataclass(frozen=True)
class SuiteEntry:
    """One dataset of the suite: protocol, code lengths and whether its features must be cached."""

    dataset: str
    protocol: str
    bits: tuple[int, ...] = (16, 32)
    needs_cached_features: bool = False
    #: whether its speed ratios are compared (False where every search takes about a millisecond
    #: and the ratio is timing noise)
    compare_speed: bool = True
    #: per-method config overrides of this entry (shorter schedules keep the suite small)
    overrides: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def overrides_for(self, method: str) -> dict[str, Any]:
        return dict(dict(self.overrides).get(method, ()))


SUITE = (
    # 300 queries against 1,497 items: each search takes about a millisecond, so its speed ratios
    # are noise (a hash-table ratio moved ×0.22 between two runs of the same code on a busy
    # machine): quality only. Speed regressions are caught on the CIFAR-10 entry (10k items).
    SuiteEntry("digits", "query300-db1497", compare_speed=False),
    # Frozen EfficientNet-Lite0 features; HashNet and DRQ validate every epoch, so their CIFAR-10
    # schedules are shortened (shipped: 100 and 32 epochs) to keep this entry at ~3 min on 2 cores.
    SuiteEntry("cifar10", "query500-train2k-db10k", needs_cached_features=True,
               overrides=(("hashnet", (("epochs", 20),)), ("drq", (("epochs", 8),)))),
)


@dataclass
class SuiteResult:
    """A finished suite run: its regression table, skipped datasets/methods with reasons, timings."""

    table: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    directory: Path | None = None


# ----------------------------------------------------------------------------- table


def kind_of(metric: str) -> str | None:
    """``speed_ratio`` for wall-clock speed-ups, None for times in seconds (excluded), else ``quality``."""
    if "seconds" in metric:
        return None
    if metric.startswith("speedup_wallclock@"):
        return "speed_ratio"
    return "quality"


def regression_table(metrics: pd.DataFrame, run_bits: int, keep_bits: Iterable[int] | None = None,
                     speed: bool = True) -> pd.DataFrame:
    """The regression rows (:data:`TABLE_COLUMNS`) of one run's long metric table: timing rows
    dropped, ``kind`` set, code lengths restricted to ``keep_bits`` when given, speed ratios
    dropped when ``speed`` is false."""
    m = metrics.copy()
    m["variant"] = m["variant"].fillna("").astype(str)
    m["settings"] = m["settings"].fillna("").astype(str)
    m["kind"] = m["metric"].map(kind_of)
    m = m[m["kind"].notna() & (speed | (m["kind"] != "speed_ratio"))]
    if keep_bits is not None:
        m = m[m["bits"].astype(int).isin([int(b) for b in keep_bits])]
    m = m.assign(run_bits=int(run_bits), bits=m["bits"].astype(int))
    return m[TABLE_COLUMNS].reset_index(drop=True)


def suite_settings(dataset: str, method: str) -> str:
    """The ``settings`` a default suite run of ``method`` on ``dataset`` records (the entry's
    own overrides): how tables written before the column existed are read."""
    entry = next((e for e in SUITE if e.dataset == dataset), None)
    return store.request_settings({"method": method, "dataset": dataset,
                                   "overrides": entry.overrides_for(method) if entry else {}})


def read_table(path: Path) -> pd.DataFrame:
    """A regression/tolerance CSV (``#`` lines are the header comment), variants and settings as
    strings; a table written before the ``settings`` column gets the suite's own
    (:func:`suite_settings`)."""
    frame = pd.read_csv(path, comment="#", keep_default_na=False, na_values=["nan", "NaN"])
    if "settings" not in frame and {"dataset", "method"} <= set(frame.columns):
        pairs = {(d, m): suite_settings(d, m) for d, m in set(zip(frame["dataset"], frame["method"]))}
        frame.insert(int(frame.columns.get_loc("method")) + 1, "settings",
                     [pairs[(d, m)] for d, m in zip(frame["dataset"], frame["method"])])
    for col in ("variant", "settings"):
        if col in frame:
            frame[col] = frame[col].astype(str)
    for col in ("value", "tolerance", "std", "mean"):
        if col in frame:
            frame[col] = pd.to_numeric(frame[col].replace("", np.nan), errors="raise").astype(float)
    return frame


def write_table(frame: pd.DataFrame, path: Path, header: Iterable[str] = ()) -> None:
    """Write ``frame`` as CSV preceded by ``# ``-prefixed header lines (atomically)."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            for line in header:
                fh.write(f"# {line}\n")
            frame.to_csv(fh, index=False, na_rep="nan")

    store.write_atomic(path, write)


# ----------------------------------------------------------------------------- running


def parse_overrides(pairs: Iterable[str]) -> dict[str | None, dict[str, Any]]:
    """``["epochs=1", "hashnet.lr=0.01"]`` → ``{None: {"epochs": 1}, "hashnet": {"lr": 0.01}}``
    (a prefix before the first dot that names a registered method scopes the override to it)."""
    from hashbench import methods
    from hashbench.benchmark.config import scoped_overrides

    scoped = scoped_overrides(list(pairs), methods.available())
    out: dict[str | None, dict[str, Any]] = {None: scoped.common} if scoped.common else {}
    out.update(scoped.per_method)
    return out


def _feature_needs(method: str, loaded, overrides: dict[str, Any]) -> list[tuple[str, int | None]] | str:
    """The frozen feature files (backbone, image size) a run of ``method`` reads, the reference
    features first; a string reason when the method would fine-tune a backbone instead."""
    from hashbench.benchmark.plan import plan_run

    fp = plan_run(method, loaded.name, (), None, overrides).features(loaded.data)
    if not fp.frozen:
        return f"{method} fine-tunes {fp.backbone} (too slow for the CPU suite)"
    return fp.feature_files()


def missing_features(method: str, loaded, overrides: dict[str, Any]) -> str | None:
    """Why ``method`` cannot run from cached features on ``loaded`` (None when it can)."""
    from hashbench.benchmark import data as data_mod
    from hashbench.methods.backbones import build_backbone

    needs = _feature_needs(method, loaded, overrides)
    if isinstance(needs, str):
        return needs
    for name, size in needs:
        if name in ("flatten", "identity"):
            continue
        bb = build_backbone(name, pretrained=True, in_channels=data_mod.in_channels_of(loaded.data), image_size=size,
                            in_dim=data_mod.in_dim_of(loaded.data))
        path = data_mod.feature_cache_path(loaded.name, loaded.data, bb)
        if not path.exists():
            return f"{bb.name} features not cached ({path})"
    return None


def _features_dir() -> Path:
    from hashbench.datasets import cache_dir

    return cache_dir() / "features"


def _any_cached_features(dataset: str) -> bool:
    """Whether any feature file of ``dataset`` is cached (checked before loading the data)."""
    return any(_features_dir().glob(f"{dataset}-*.npy"))


def _entry_precheck(entry: SuiteEntry, data_root: str | None, features: str) -> str | None:
    """Why a needs-cached-features entry is skipped before any data is loaded (None: go on)."""
    from hashbench import datasets as dataset_registry

    if not entry.needs_cached_features:
        return None
    if features == "off":
        return "skipped (--features off)"
    if dataset_registry.data_root(data_root) is None:
        return "skipped: no data root (set HASHBENCH_DATA or pass --data-root to include it)"
    if features == "auto" and not _any_cached_features(entry.dataset):
        return (f"skipped: no cached {entry.dataset} features under {_features_dir()} (extracting them takes "
                "~11 min on 2 cores, too slow for the suite; --features extract computes them once)")
    return None


def _evaluated_lengths(run_dir: Path) -> set[int]:
    import yaml

    cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    return {int(b) for b in cfg.get("evaluation_lengths", {})}


def run_suite(out: Path, seed: int = 0, datasets: Iterable[str] | None = None, methods: Iterable[str] | None = None,
              overrides: dict[str | None, dict[str, Any]] | None = None, data_root: str | None = None,
              features: str = "auto", speed: bool = True, log: Callable[[str], None] = print) -> SuiteResult:
    """Run the suite into ``out`` (run directories under ``out/runs/<dataset>/``) and write
    ``out/regress.csv`` and ``out/suite.json``. ``datasets``/``methods`` restrict it (tests);
    ``overrides`` maps a method (or None: every method) to config overrides; ``features``:
    ``auto`` (needs-cache entries skip methods whose features are not cached), ``extract``
    (compute them), ``off`` (skip those entries)."""
    from hashbench import methods as registry

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = overrides or {}
    names = list(methods) if methods is not None else registry.available()
    unselected = [m for m in registry.available() if m not in names]
    entries = [e for e in SUITE if datasets is None or e.dataset in set(datasets)]
    tables, skipped, seconds = [], {}, {}
    for e in SUITE:
        if e not in entries:
            skipped[e.dataset] = "not selected (--datasets)"
    t_all = time.time()
    for entry in entries:
        t0 = time.time()
        loaded = _load_entry(entry, data_root, features, skipped, log)
        if loaded is None:
            continue
        skipped.update({f"{entry.dataset}/{m}": "not selected (--methods)" for m in unselected})
        ran = 0
        for name in names:
            ov = {**entry.overrides_for(name), **overrides.get(None, {}), **overrides.get(name, {})}
            found = _run_method(entry, name, ov, loaded, out, seed, data_root, features, speed, skipped, log)
            tables += found
            ran += len(found)
        if ran == 0 and entry.dataset not in skipped:
            skipped[entry.dataset] = "skipped: no method could run"
        seconds[entry.dataset] = time.time() - t0
    seconds["total"] = time.time() - t_all
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=TABLE_COLUMNS)
    table = table.sort_values(KEY, kind="stable").reset_index(drop=True)
    write_table(table, out / "regress.csv", [f"regression suite run, seed {seed}, {store.now_stamp()}"])
    store.write_text_atomic(json.dumps({
        "seed": seed, "skipped": skipped, "seconds": seconds, "git_revision": store.git_revision(),
        "hardware": store.hardware_description("cpu"), "datasets": [e.dataset for e in entries],
        "overrides": {str(k): v for k, v in overrides.items()}, "timestamp": store.now_stamp(),
        "partial": datasets is not None or methods is not None,
    }, indent=2, default=str), out / "suite.json")
    return SuiteResult(table, skipped, seconds, out)


def _load_entry(entry: SuiteEntry, data_root: str | None, features: str, skipped: dict[str, str],
                log: Callable[[str], None]):
    """The loaded data of ``entry``, or None with the reason recorded in ``skipped``."""
    from hashbench.benchmark.runner import load_data
    from hashbench.datasets import MissingDataError

    why = _entry_precheck(entry, data_root, features)
    if not why:
        try:
            return load_data(entry.dataset, entry.protocol, 0, data_root)
        except MissingDataError as err:
            why = f"skipped: no data ({err})"
    skipped[entry.dataset] = why
    log(f"regress: {entry.dataset}: {why}")
    return None


def _run_method(entry: SuiteEntry, name: str, ov: dict[str, Any], loaded, out: Path, seed: int,
                data_root: str | None, features: str, speed: bool, skipped: dict[str, str],
                log: Callable[[str], None]) -> list[pd.DataFrame]:
    """The regression tables of ``name``'s runs on ``entry``: the longest length first, a length
    another run already evaluated is not trained again; refusals are recorded in ``skipped``."""
    from hashbench.benchmark.plan import plan_run
    from hashbench.benchmark.runner import RunRequest, run_one

    if entry.needs_cached_features and features == "auto":
        reason = missing_features(name, loaded, ov)
        if reason:
            skipped[f"{entry.dataset}/{name}"] = f"skipped: {reason}"
            log(f"regress: {entry.dataset}/{name}: skipped: {reason}")
            return []
    plan = plan_run(name, entry.dataset, entry.bits, None, ov)
    covered: set[int] = set()
    tables = []
    for bits in sorted(entry.bits, reverse=True):
        if bits in covered:
            continue
        if bits in plan.rejected:
            skipped[f"{entry.dataset}/{name}/{bits}"] = f"skipped: {plan.rejected[bits]}"
            continue
        req = RunRequest(method=name, dataset=entry.dataset, protocol=entry.protocol, bits=bits, seed=seed,
                         split_seed=0, overrides=ov or None, device="cpu", out_dir=out / "runs" / entry.dataset,
                         data_root=data_root, speed=speed, progress=False)
        t1 = time.time()
        path, frame = run_one(req, loaded)
        covered |= _evaluated_lengths(path)
        if plan.cls.code_type == "float":  # no code length: one run stands for every length
            covered |= set(entry.bits)
        tables.append(regression_table(frame, bits, entry.bits, speed=entry.compare_speed))
        log(f"regress: {entry.dataset:<8} {name:<11} {bits:>3} bits  seed {seed}  {time.time() - t1:6.1f} s")
    return tables


# ----------------------------------------------------------------------------- tolerances


def calibrate(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-row tolerances from suite tables of different seeds (see the module's rule):
    columns KEY + kind, n_seeds, mean, std, tolerance (in the row's comparison scale)."""
    if len(tables) < 2:
        raise ValueError("calibration needs the suite run with at least 2 seeds")
    both = pd.concat(tables, ignore_index=True)
    for c in ("variant", "settings"):
        both[c] = both[c].fillna("").astype(str)
    speed = both["kind"] == "speed_ratio"
    with np.errstate(divide="ignore", invalid="ignore"):
        both["scaled"] = np.where(speed, np.log(both["value"].astype(float)), both["value"].astype(float))
    g = both.groupby(KEY + ["kind"], sort=True, dropna=False)["scaled"]
    tol = g.agg(n_seeds="count", mean="mean", std=lambda v: float(np.std(v.dropna(), ddof=1)) if v.notna().sum() > 1
                else np.nan).reset_index()
    floor = np.where(tol["kind"] == "speed_ratio", SPEED_FLOOR, QUALITY_FLOOR)
    tol["tolerance"] = np.fmax(SIGMAS * tol["std"].fillna(0.0).to_numpy(), floor)
    tol["scale"] = np.where(tol["kind"] == "speed_ratio", "log", "abs")
    return tol


def tolerance_header(seeds: list[int], seconds: list[float]) -> list[str]:
    """Header comment of ``tolerances.csv``: the rule and how it was measured."""
    return [
        "Regression tolerances, measured by `make regress-calibrate` (hashbench regress calibrate).",
        f"Rule: quality rows: tolerance = max({SIGMAS:g} * sigma, {QUALITY_FLOOR}) with sigma the sample std (ddof=1)",
        "of the value over method seeds; speed_ratio rows (speedup_wallclock@k, float search time / the method's",
        f"search time in the same process): tolerance = max({SIGMAS:g} * sigma(ln ratio), ln 3 = {SPEED_FLOOR:.4f}),",
        "compared as ln(now / baseline). A row fails when it got worse by more than its tolerance.",
    ] + measurement_lines(seeds, seconds)


def measurement_lines(seeds: list[int], seconds: list[float]) -> list[str]:
    """The part of the tolerance header that says how one calibration was measured: seeds, suite
    wall time per seed, hardware, git revision and date."""
    return [
        f"Seeds: {','.join(str(s) for s in seeds)}; suite wall time per seed (s): "
        + ", ".join(f"{s:.0f}" for s in seconds) + f"; hardware: {store.hardware_description('cpu')};",
        f"git revision: {store.git_revision()}; measured {store.now_stamp()}. 'mean' and 'std' are in the scale column's units.",
    ]


# ----------------------------------------------------------------------------- comparison


def compare(baseline: pd.DataFrame, now: pd.DataFrame, tolerances: pd.DataFrame | None = None,
            skipped: Iterable[str] = ()) -> pd.DataFrame:
    """Row-by-row comparison (see the module's verdict rules), worst first: columns KEY + kind,
    baseline, now, delta, tolerance, tolerance_source, verdict, fails."""
    def norm(f: pd.DataFrame) -> pd.DataFrame:
        f = f.copy()
        for c in ("variant", "settings"):
            f[c] = f[c].fillna("").astype(str)
        for c in ("run_bits", "bits"):
            f[c] = f[c].astype(int)
        return f

    base, cur = norm(baseline), norm(now)
    merged = base[KEY + ["kind", "value"]].merge(cur[KEY + ["kind", "value"]], on=KEY, how="outer",
                                                 suffixes=("_base", "_now"), indicator=True)
    merged["kind"] = merged["kind_base"].fillna(merged["kind_now"])
    merged = merged.drop(columns=["kind_base", "kind_now"]).rename(columns={"value_base": "baseline",
                                                                            "value_now": "now"})
    skipped = set(skipped)
    not_run = merged.apply(lambda r: r["dataset"] in skipped or f"{r['dataset']}/{r['method']}" in skipped, axis=1) \
        if len(merged) else pd.Series([], dtype=bool)
    merged = merged[~((merged["_merge"] == "left_only") & not_run)].copy()

    if tolerances is not None and len(tolerances):
        t = norm(tolerances)[KEY + ["tolerance"]]
        merged = merged.merge(t, on=KEY, how="left")
        merged["tolerance_source"] = np.where(merged["tolerance"].notna(), "calibrated", "floor")
    else:
        merged["tolerance"] = np.nan
        merged["tolerance_source"] = "floor"
    speed = merged["kind"] == "speed_ratio"
    merged["tolerance"] = merged["tolerance"].fillna(pd.Series(np.where(speed, SPEED_FLOOR, QUALITY_FLOOR),
                                                               index=merged.index))
    b, n = merged["baseline"].astype(float), merged["now"].astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        merged["delta"] = np.where(speed, np.log(n / b), n - b)

    def verdict(r) -> str:
        if r["_merge"] == "left_only":
            return "missing"
        if r["_merge"] == "right_only":
            return "new"
        if np.isnan(r["baseline"]) and np.isnan(r["now"]):
            return "ok"
        if np.isnan(r["now"]):
            return "worse"
        if np.isnan(r["baseline"]):
            return "better"
        if r["delta"] < -r["tolerance"]:
            return "worse"
        if r["delta"] > r["tolerance"]:
            return "better"
        return "ok"

    merged["verdict"] = merged.apply(verdict, axis=1) if len(merged) else pd.Series([], dtype=str)
    merged["fails"] = merged["verdict"].isin(["worse", "missing"])
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (merged["delta"] / merged["tolerance"]).astype(float)
    score = score.where(np.isfinite(score) | merged["verdict"].eq("new"), np.where(merged["fails"], -np.inf, np.inf))
    merged["_passes"], merged["_score"] = ~merged["fails"], score
    merged = merged.sort_values(["_passes", "_score"] + KEY, kind="stable", na_position="last")
    cols = KEY + ["kind", "baseline", "now", "delta", "tolerance", "tolerance_source", "verdict", "fails"]
    return merged[cols].reset_index(drop=True)


def _fmt(v: float, speed: bool, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "—"
    if speed and signed:
        return f"×{math.exp(v):.2f}"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def format_comparison(cmp: pd.DataFrame, show: int = 25) -> str:
    """The comparison as one Markdown table, worst first: every failing row plus the ``show``
    worst of the others, then a one-line summary. Speed rows show delta and tolerance as
    factors (×0.62 = 0.62 times the baseline's speed-up; tolerance ×0.50 = fails below half)."""
    fails = cmp[cmp["fails"]]
    rest = cmp[~cmp["fails"]].head(show)
    part = pd.concat([fails, rest])
    rows = []
    for _, r in part.iterrows():
        speed = r["kind"] == "speed_ratio"
        rows.append({
            "dataset": r["dataset"], "method": r["method"] + (f" [{r['settings']}]" if r["settings"] else ""),
            "bits": f"{r['bits']} (run {r['run_bits']})"
            if r["bits"] != r["run_bits"] else str(r["bits"]),
            "metric": r["metric"] + (f" [{r['variant']}]" if r["variant"] else ""),
            "baseline": _fmt(r["baseline"], speed), "now": _fmt(r["now"], speed),
            "delta": _fmt(r["delta"], speed, signed=True),
            "tolerance": (f"×{math.exp(-r['tolerance']):.2f}" if speed else f"±{r['tolerance']:.4f}")
            + ("" if r["tolerance_source"] == "calibrated" else " (floor)"),
            "verdict": r["verdict"].upper() if r["fails"] else r["verdict"],
        })
    table = pd.DataFrame(rows, columns=["dataset", "method", "bits", "metric", "baseline", "now", "delta",
                                        "tolerance", "verdict"])
    counts = cmp["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("worse", "missing", "better", "new", "ok"))
    hidden = len(cmp) - len(part)
    text = table.to_markdown(index=False) if len(table) else "(no rows)"
    tail = f"\n\n{len(cmp)} rows: {summary}" + (f"; {hidden} more rows within tolerance not shown" if hidden else "")
    verdict = "FAIL: a metric got worse beyond its tolerance, or a row disappeared" if cmp["fails"].any() else "PASS"
    return f"{text}{tail}\nregress: {verdict}"


def replace_pairs(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` plus the rows of ``old`` whose (dataset, method) pair ``new`` does not contain:
    how a restricted suite (``--methods``/``--datasets``) updates a baseline or tolerance table
    without dropping the parts it did not run."""
    if not len(old):
        return new.reset_index(drop=True)
    pairs = set(zip(new["dataset"], new["method"]))
    kept = old[[(d, m) not in pairs for d, m in zip(old["dataset"], old["method"])]]
    return pd.concat([t for t in (new, kept) if len(t)], ignore_index=True).sort_values(KEY, kind="stable") \
        .reset_index(drop=True)


def header_lines(path: Path) -> list[str]:
    """The ``# `` header comment lines of a regression/tolerance CSV, without the prefix."""
    return [line[2:].rstrip("\n") for line in open(path) if line.startswith("# ")] if Path(path).exists() else []


def accept(run_table: Path, baseline: Path = BASELINE, skipped: Iterable[str] = (), partial: bool = False) -> Path:
    """Make a suite run's table the baseline, recording the accepting git revision. Baseline
    rows of datasets (or dataset/method pairs) the run skipped are kept, so accepting on a
    machine without CIFAR-10 features does not drop the CIFAR-10 rows; a ``partial`` run (a
    restricted suite) replaces only the (dataset, method) pairs it ran."""
    table = read_table(run_table)
    skipped = set(skipped)
    kept = pd.DataFrame(columns=TABLE_COLUMNS)
    old = read_table(baseline) if Path(baseline).exists() else kept
    if partial:
        merged = replace_pairs(old, table)
    else:
        if skipped and len(old):
            keep = old.apply(lambda r: r["dataset"] in skipped or f"{r['dataset']}/{r['method']}" in skipped, axis=1)
            kept = old[keep]
        merged = pd.concat([t for t in (table, kept) if len(t)], ignore_index=True) if len(kept) else table
        merged = merged.sort_values(KEY, kind="stable").reset_index(drop=True)
    n_kept = len(merged) - len(table)
    what = "rows of pairs the partial run did not cover" if partial else "rows of skipped parts"
    header = [
        "Regression baseline: the metric table of `make regress` (hashbench regress), compared by",
        "`make regress` against each new run with the tolerances of tolerances.csv. Rewritten by `make regress-accept`",
        f"from {Path(run_table).parent.name} (git {table['git_revision'].iloc[0] if len(table) else '?'}); accepted at "
        f"git revision {store.git_revision()}, {store.now_stamp()}; {n_kept} {what} kept.",
    ]
    write_table(merged, baseline, header)
    return Path(baseline)


def tolerance_summary(tol: pd.DataFrame) -> pd.DataFrame:
    """The calibrated tolerance of each method's mAP (default variant), dataset × bits columns."""
    from hashbench.benchmark.report import DEFAULT_MAP_VARIANT

    sel = tol[tol["metric"].str.startswith("map@") & (tol["variant"] == DEFAULT_MAP_VARIANT)]
    cell = sel.assign(cell=[f"±{t:.4f} (σ {s:.4f})" for t, s in zip(sel["tolerance"], sel["std"].fillna(0.0))],
                      column=sel["dataset"] + " " + sel["bits"].astype(str) + "b")
    return cell.pivot_table(index="method", columns="column", values="cell", aggfunc="first").reset_index()
