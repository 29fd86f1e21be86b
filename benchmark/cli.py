"""Command line: ``hashbench {run,evaluate,list,report,regress,sweep}`` (also ``python -m hashbench``).

Bad input (unknown method/dataset/protocol/backbone, impossible bits, missing data or weights,
a NaN loss) ends with one ``error:`` line and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import typing
import warnings
from pathlib import Path

ERROR_EXIT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one ``error:`` line (exit 2) instead of the usage block and a prefixed message."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(ERROR_EXIT, f"error: {message} (see '{self.prog} --help')\n")


def _ints(text: str, minimum: int | None = None) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    if minimum is not None and min(values) < minimum:
        raise argparse.ArgumentTypeError(f"every value must be >= {minimum}, got {text!r}")
    return values


def _at_least(minimum: int, many: bool = False):
    """argparse type: an integer (or comma list of integers) ≥ ``minimum``."""
    def parse(text: str):
        values = _ints(text, minimum)
        if many:
            return values
        if len(values) != 1:
            raise argparse.ArgumentTypeError(f"expected one integer, got {text!r}")
        return values[0]
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _path(text: str) -> Path:
    """A path as typed, with ``~`` expanded (relative paths stay relative to the working directory)."""
    return Path(text).expanduser()


def build_parser() -> argparse.ArgumentParser:
    """The ``hashbench`` argument parser: one sub-command per job (each added by its own function)."""
    p = _Parser(prog="hashbench", description="hashbench: deep hashing benchmark harness")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show third-party warnings and chatter (faiss clustering sizes, Lightning) that are "
                        "silenced or summarised once by default")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_parser(sub)
    e = sub.add_parser("evaluate", help="metrics of an --encode-only run, or recomputed ones of a run, from its "
                                        "codes.npz (no retraining)")
    e.add_argument("run_dirs", nargs="+", type=_path)
    sub.add_parser("list", help="registered methods, datasets with protocols, backbones")

    from hashbench.benchmark.sweep.cli import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    _add_report_parser(sub)
    _add_regress_parser(sub)
    return p


def _add_run_parser(sub) -> None:
    r = sub.add_parser("run", help="train + evaluate methods on a dataset, write run directories")
    r.add_argument("--method", default="all", help="method name, comma list, or 'all' (default)")
    r.add_argument("--dataset", default="digits")
    r.add_argument("--protocol", default=None, help="named protocol (default: the dataset's default)")
    r.add_argument("--bits", type=_at_least(1, many=True), default=[16, 32, 48])
    r.add_argument("--seeds", type=_at_least(0, many=True), default=[0])
    r.add_argument("--split-seed", type=_at_least(0), default=0, help="seed of the protocol's split (fixed across methods)")
    r.add_argument("--epochs", type=_at_least(1), default=None)
    r.add_argument("--backbone", default=None)
    r.add_argument("--variant", default=None, help="named config variant of the method")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="[METHOD.]KEY=VALUE",
                   help="override a config key for every method, or for one with a METHOD. prefix (repeatable); "
                        "checked before any work: unknown keys, wrong types and out-of-range values are errors")
    r.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    r.add_argument("--devices", type=_at_least(1), default=1)
    r.add_argument("--out", type=_path, default=Path("results/runs"))
    r.add_argument("--data-root", default=None, help="data root (default: $HASHBENCH_DATA)")
    r.add_argument("--download", action="store_true", help="let torchvision download a dataset that supports it")
    r.add_argument("--no-speed", action="store_true", help="skip wall-clock speed measurements")
    r.add_argument("--logger", dest="loggers", action="append", default=[], metavar="{csv,tensorboard,mlflow}",
                   help="experiment tracker through Lightning's loggers, offline (repeatable; csv is always on): "
                        "tensorboard -> <run>/tensorboard/, mlflow -> <out>/mlruns or $MLFLOW_TRACKING_URI")
    r.add_argument("--encode-only", action="store_true",
                   help="train and encode only: each run keeps codes.npz and no metrics; "
                        "`hashbench evaluate RUN_DIR` computes them later, on any machine")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="Lightning's progress bar (default: on when stderr is a terminal)")
    r.add_argument("--resume", action="store_true",
                   help="skip runs already finished under --out (same identity); continue a killed one from "
                        "its last checkpoint; leave a run another process is running alone")


def _add_report_parser(sub) -> None:
    rep = sub.add_parser("report", help="aggregate run directories into tables and figures")
    rep.add_argument("run_dirs", nargs="+", type=_path)
    rep.add_argument("--out", type=_path, default=Path("results/report"))
    rep.add_argument("--metric", default=None, help="metric for the main table (default: each dataset's mAP)")
    rep.add_argument("--reference", nargs="?", const="all", default=None, metavar="METHODS",
                     help="add the papers' published numbers for the same protocol, marked 'reported by the paper' "
                          "(all, or a comma list of published method names, e.g. DRQ,DTQ)")
    rep.add_argument("--compare", nargs=2, metavar=("A", "B"), default=None,
                     help="paired test of methods A and B over the same queries (per-query AP)")
    rep.add_argument("--test", choices=["permutation", "wilcoxon"], default="permutation",
                     help="paired test for --compare (default: paired sign-flip permutation test)")
    rep.add_argument("--duplicates", choices=["newest", "oldest", "error", "all"], default="newest",
                     help="runs of one cell (method, dataset, protocol, bits, seed, settings): keep the newest "
                          "(default) or oldest, stop with an error, or pool all; dropped runs are listed in table.md")
    rep.add_argument("--no-ci", dest="ci", action="store_false", help="skip the bootstrap intervals over queries")
    rep.add_argument("--skip-unreadable", action="store_true",
                     help="report the readable runs and list those whose metrics.csv cannot be read "
                          "(default: stop at the first, naming it)")
    rep.add_argument("--no-figures", dest="figures", action="store_false")


def _add_regress_parser(sub) -> None:
    from hashbench import paths

    g = sub.add_parser("regress", help="CI regression: run the fixed suite, compare with the committed baseline")
    g.add_argument("action", nargs="?", default="run", choices=["run", "compare", "accept", "calibrate"],
                   help="run (default: run the suite, then compare), compare (the last run again), accept (make the "
                        "last run the baseline), calibrate (run over --seeds, write tolerances)")
    g.add_argument("--work", type=Path, default=paths.REGRESS_WORK_DIR,
                   help="where suite runs go (default: results/regress-runs, which reports pass over)")
    g.add_argument("--run", type=Path, default=None, help="suite run directory for compare/accept (default: the last)")
    g.add_argument("--baseline", type=Path, default=paths.REGRESS_BASELINE)
    g.add_argument("--tolerances", type=Path, default=paths.REGRESS_TOLERANCES)
    g.add_argument("--seed", type=_at_least(0), default=0, help="method seed of the suite (default 0)")
    g.add_argument("--seeds", type=_at_least(0, many=True), default=[0, 1, 2, 3, 4], help="calibration seeds (default 0,1,2,3,4)")
    g.add_argument("--datasets", default=None, help="comma list restricting the suite's datasets")
    g.add_argument("--methods", default=None, help="comma list restricting the suite's methods")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="[METHOD.]KEY=VALUE",
                   help="config override for every method, or for one with a METHOD. prefix (repeatable)")
    g.add_argument("--features", choices=["auto", "extract", "off"], default="auto",
                   help="datasets needing deep features: auto = only from the cache, extract = compute, off = skip")
    g.add_argument("--data-root", default=None, help="data root (default: $HASHBENCH_DATA)")
    g.add_argument("--show", type=int, default=25, help="rows within tolerance shown after the failing ones")
    g.add_argument("--force", action="store_true", help="accept a partial or overridden run as the baseline")


def _quiet_libraries(verbose: bool = False) -> None:
    """Third-party warnings and chatter off (``verbose``: left on, and hashbench's own logger at
    DEBUG, which also lets faiss print its clustering-size warnings instead of one summary)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if verbose:
        logging.getLogger("hashbench").setLevel(logging.DEBUG)
        return
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.filterwarnings("ignore")
    import pytorch_lightning  # noqa: F401  (sets its own logger levels on import: override after)

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "faiss", "faiss.loader"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cmd_run(args) -> int:
    from hashbench.benchmark import report
    from hashbench.benchmark.loggers import check as check_loggers
    from hashbench.benchmark.resume import BUSY_EXIT
    from hashbench.benchmark.runner import load_data

    loggers = check_loggers(args.loggers)
    plans, skipped = _plan_methods(args)
    loaded = load_data(args.dataset, args.protocol, args.split_seed, args.data_root, args.download)
    print(f"# {args.dataset} / {loaded.protocol.name}: " + ", ".join(f"{k} {v}" for k, v in loaded.split.sizes().items()),
          file=sys.stderr)
    frames, busy = _run_plans(args, plans, loaded, loggers)
    for s in skipped:
        print(f"  skipped: {s}", file=sys.stderr)
    import pandas as pd

    if not frames:
        return BUSY_EXIT if busy else 0
    table = report.comparison_table(pd.concat(frames, ignore_index=True))
    print(table)
    return BUSY_EXIT if busy else 0


def _plan_methods(args) -> tuple[list, list[str]]:
    """(one :class:`~hashbench.benchmark.plan.RunPlan` per method of ``run``, skipped lengths as
    messages), every check done before any work: methods, dataset, protocol, ``--set`` scopes,
    config values and code lengths (a method named explicitly must accept every length asked)."""
    from hashbench import methods
    from hashbench.benchmark.config import scoped_overrides
    from hashbench.benchmark.config_check import check_method_config
    from hashbench.benchmark.plan import plan_run
    from hashbench.benchmark.train import accelerator_for
    from hashbench.datasets import get_dataset

    names = methods.available() if args.method == "all" else [m.strip() for m in args.method.split(",") if m.strip()]
    if not names:
        raise ValueError(f"--method {args.method!r} names no method; valid: all, {', '.join(methods.available())}")
    if args.device == "gpu":
        accelerator_for("gpu")  # no CUDA: one error line now, not a traceback after data loading
    scoped = scoped_overrides(args.overrides, methods.available())
    get_dataset(args.dataset).protocol(args.protocol)  # unknown dataset or protocol: before any work
    for scope in scoped.scopes():
        if scope not in names:
            raise ValueError(f"--set {scope}.… names method {scope!r}, which this run does not train ({', '.join(names)})")
    plans, skipped = [], []
    for n in names:
        check_method_config(methods.get_method(n), n, args.dataset, args.variant, scoped.for_method(n), args.bits)
        plan = plan_run(n, args.dataset, args.bits, args.variant, scoped.for_method(n), args.epochs, args.backbone)
        if args.method != "all":
            for b in args.bits:
                plan.require(b)
        skipped += [str(err) for err in plan.rejected.values()]
        plans.append((plan, scoped.for_method(n)))
    return plans, skipped


def _run_plans(args, plans, loaded, loggers) -> tuple[list, list]:
    """Run every (method, length, seed) of ``plans``; (metric tables, busy errors)."""
    from hashbench.benchmark.resume import RunBusyError
    from hashbench.benchmark.runner import RunRequest, run_one

    frames, busy = [], []
    for plan, overrides in plans:
        for bits in plan.training_lengths():
            for seed in args.seeds:
                req = RunRequest(method=plan.method, dataset=args.dataset, protocol=loaded.protocol.name, bits=bits,
                                 seed=seed, split_seed=args.split_seed, epochs=args.epochs, backbone=args.backbone,
                                 variant=args.variant, overrides=overrides, device=args.device,
                                 devices=args.devices, out_dir=args.out, data_root=args.data_root,
                                 speed=not args.no_speed, encode_only=args.encode_only,
                                 progress=sys.stderr.isatty() if args.progress is None else args.progress,
                                 loggers=loggers, resume=args.resume)
                label = f"  {plan.method:<12} {bits:>3} bits  seed {seed}"
                try:
                    path, frame = run_one(req, loaded)
                except RunBusyError as err:
                    print(f"{label}  skipped: {err}", file=sys.stderr)
                    busy.append(err)
                    continue
                if args.encode_only and path.exists():
                    print(f"{label}  -> {path} (codes only)", file=sys.stderr)
                if frame.empty:  # encode-only, or a DDP worker process (rank 0 reports)
                    continue
                print(f"{label}  -> {path}", file=sys.stderr)
                frames.append(frame)
    return frames, busy


def cmd_evaluate(args) -> int:
    import numpy as np
    import yaml

    from hashbench.benchmark import store
    from hashbench.benchmark.runner import evaluate_encoded_run, evaluate_lengths, inputs_from_npz

    for run in args.run_dirs:
        if not (run / "codes.npz").exists():
            raise FileNotFoundError(f"{run} has no codes.npz (not a run directory)")
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        if cfg.get("encode_only") and not (run / "metrics.csv").exists():
            print(f"{run}: encoded-only run evaluated -> {evaluate_encoded_run(run)}")
            continue
        old = store.read_run_metrics(run)
        with np.load(run / "codes.npz") as z:
            inp = inputs_from_npz(z)
        n_classes = inp.query_labels.shape[1]
        rows = evaluate_lengths(inp, cfg["evaluation_lengths"], cfg["map_at"], n_classes, int(old["seed"].iloc[0]),
                                speed=False)[0]
        ctx = old.iloc[0][["method", "dataset", "protocol", "backbone", "seed", "config_hash", "settings",
                           "hardware"]].to_dict()
        ctx.update(git_revision=store.git_revision(), timestamp=store.now_stamp())
        frame = store.metric_rows(ctx, rows)
        out = run / f"metrics.recomputed-{store.now_stamp().replace(':', '')}.csv"
        store.write_csv_atomic(frame, out)
        print(f"{run}: {len(frame)} metric rows recomputed -> {out}")
    return 0


def cmd_list(_args) -> int:
    from hashbench import datasets
    from hashbench import methods
    from hashbench.methods.backbones import available_backbones

    plugin = lambda dist: f"  [plugin: {dist}]" if dist else ""  # noqa: E731
    print("methods:")
    for name in methods.available():
        cls = methods.get_method(name)
        print(f"  {name:<14} {cls.code_type:<9} {cls.description}{plugin(methods.origin(name))}")
    print("datasets (protocols; * = default):")
    for name in datasets.available():
        spec = datasets.get_dataset(name)
        protos = ", ".join(("*" if p == spec.default_protocol else "") + p for p in spec.protocols)
        print(f"  {name:<14} {protos}{plugin(datasets.origin(name))}")
    print(f"  {datasets.hf.NAME + ':<folder>':<14} {datasets.hf.PROTOCOL_HELP}")
    print("backbones:")
    print("  " + ", ".join(available_backbones()))
    return 0


def cmd_report(args) -> int:
    from hashbench.benchmark import report

    ref = None if args.reference is None else (True if args.reference == "all" else
                                                 [m.strip() for m in args.reference.split(",") if m.strip()])
    written = report.write_report(args.run_dirs, args.out, metric=args.metric, reference=ref,
                                  ci=args.ci, figures=args.figures, duplicates=args.duplicates,
                                  skip_unreadable=args.skip_unreadable)
    for path in written:
        print(path)
    if args.compare:
        table, paths = report.write_comparison(args.run_dirs, args.out, args.compare[0], args.compare[1],
                                               test=args.test, duplicates=args.duplicates,
                                               skip_unreadable=args.skip_unreadable)
        print(table)
        for path in paths:
            print(path)
    return 0


def _last_suite(args) -> Path:
    if args.run is not None:
        return args.run
    pointer = args.work / "LAST"
    if not pointer.exists():
        raise FileNotFoundError(f"no regression run under {args.work}; run `make regress` first")
    return Path(pointer.read_text().strip())


def _compare_suite(args, suite: Path) -> int:
    import json

    from hashbench.benchmark import regress, store

    if not args.baseline.exists():
        raise FileNotFoundError(f"no baseline at {args.baseline}; create it with `make regress-accept`")
    info = json.loads((suite / "suite.json").read_text())
    tol = regress.read_table(args.tolerances) if args.tolerances.exists() else None
    if tol is None:
        print(f"regress: no tolerances at {args.tolerances}; floors used (run `make regress-calibrate`)", file=sys.stderr)
    cmp = regress.compare(regress.read_table(args.baseline), regress.read_table(suite / "regress.csv"), tol,
                          skipped=info.get("skipped", {}))
    store.write_csv_atomic(cmp, suite / "comparison.csv")
    text = regress.format_comparison(cmp, show=args.show)
    store.write_text_atomic(text + "\n", suite / "comparison.md")
    for key, why in info.get("skipped", {}).items():
        print(f"regress: notice: {key}: {why}")
    print(f"regress: baseline {args.baseline} vs run {suite} (suite wall time {info['seconds'].get('total', 0):.0f} s)")
    print(text)
    return 1 if cmp["fails"].any() else 0


def cmd_regress(args) -> int:
    import json

    from hashbench.benchmark import regress, store

    split = lambda text: None if text is None else [t.strip() for t in text.split(",") if t.strip()]  # noqa: E731
    overrides = regress.parse_overrides(args.overrides)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    common = dict(datasets=split(args.datasets), methods=split(args.methods), overrides=overrides,
                  data_root=args.data_root, features=args.features, log=log)
    if args.action == "run":
        suite = args.work / f"{store.now_stamp().replace(':', '')}_s{args.seed}"
        regress.run_suite(suite, seed=args.seed, **common)
        store.write_text_atomic(str(suite.resolve()) + "\n", args.work / "LAST")
        return _compare_suite(args, suite)
    if args.action == "compare":
        return _compare_suite(args, _last_suite(args))
    if args.action == "accept":
        suite = _last_suite(args)
        info = json.loads((suite / "suite.json").read_text())
        if any(info.get("overrides", {}).values()) and not args.force:
            raise ValueError(f"refusing to accept {suite}: it ran with config overrides "
                             "(pass --force to accept it anyway)")
        path = regress.accept(suite / "regress.csv", args.baseline, skipped=info.get("skipped", {}),
                              partial=bool(info.get("partial")))
        print(f"regress: baseline {path} rewritten from {suite}")
        return 0
    tables, seconds = [], []
    root = args.work / f"calibrate-{store.now_stamp().replace(':', '')}"
    for seed in args.seeds:
        res = regress.run_suite(root / f"s{seed}", seed=seed, **common)
        tables.append(res.table)
        seconds.append(res.seconds["total"])
        log(f"regress: calibration seed {seed}: {res.seconds['total']:.0f} s")
    tol = regress.calibrate(tables)
    header = regress.tolerance_header(args.seeds, seconds)
    if common["datasets"] is not None or common["methods"] is not None:
        # a restricted calibration replaces only the (dataset, method) pairs it ran
        old_header = regress.header_lines(args.tolerances)
        if old_header:
            header = old_header + [f"Recalibrated pairs: methods {args.methods or 'all'} on datasets "
                                   f"{args.datasets or 'all'}: " + " ".join(regress.measurement_lines(args.seeds, seconds))]
        if args.tolerances.exists():
            tol = regress.replace_pairs(regress.read_table(args.tolerances), tol)
    regress.write_table(tol, args.tolerances, header)
    print(regress.tolerance_summary(tol).to_markdown(index=False))
    print(f"regress: tolerances of {len(tol)} rows -> {args.tolerances}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hashbench.benchmark.store import git_revision

    git_revision()  # pin the revision of the code this process loaded
    _quiet_libraries(args.verbose)
    from hashbench.datasets import MissingDataError
    from hashbench.methods.backbones import MissingWeightsError

    from hashbench.benchmark.train import NonFiniteLossError

    from hashbench.benchmark.sweep.cli import cmd_sweep

    handlers = {"run": cmd_run, "evaluate": cmd_evaluate, "list": cmd_list, "report": cmd_report,
                "regress": cmd_regress, "sweep": cmd_sweep}
    try:
        return handlers[args.command](args)
    except (MissingDataError, MissingWeightsError, NonFiniteLossError, ValueError, FileNotFoundError) as err:
        if os.environ.get("HASHBENCH_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return ERROR_EXIT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as stop:
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        if isinstance(stop.__context__, KeyboardInterrupt):
            # Lightning turns Ctrl-C during training into exit(1) after its own teardown
            print("error: interrupted", file=sys.stderr)
            return 130
        if not isinstance(stop, SIGTERMException):  # Lightning's, a SystemExit without a code (status 0)
            raise
        print("error: terminated by SIGTERM (with --resume a rerun continues from the last checkpoint)",
              file=sys.stderr)
        return 128 + 15
