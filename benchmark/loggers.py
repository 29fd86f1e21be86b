"""Experiment trackers through Lightning's loggers, offline: ``hashbench run --logger csv|tensorboard|mlflow``.

- ``csv`` (always on): Lightning's ``CSVLogger``, ``<run>/logs/metrics.csv``, the run directory's
  training log;
- ``tensorboard``: ``TensorBoardLogger`` event files in ``<run>/tensorboard/`` (``[tensorboard]`` extra);
- ``mlflow``: ``MLFlowLogger`` into MLflow's local file store ``<out>/mlruns`` (or
  ``$MLFLOW_TRACKING_URI`` when set), experiment ``hashbench``, one MLflow run per hashbench run,
  named after its run directory (``[mlflow]`` extra). MLflow 3 keeps the file store only on
  request: ``MLFLOW_ALLOW_FILE_STORE=true`` is set for a ``file:`` URI.

Each tracker gets the training curves the Trainer logs, the resolved config as hyperparameters,
and the run's final metric table (:func:`log_metric_table`): one scalar per finite row, named by
:func:`metric_key`, plus the table itself (TensorBoard: as text; MLflow: ``metrics.csv`` as an
artifact). The run directory's ``metrics.csv`` stays the source of truth.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

NAMES = ("csv", "tensorboard", "mlflow")
#: logger → (module it needs, extra that installs it)
NEEDS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
EXPERIMENT = "hashbench"


def check(names: Iterable[str] | None) -> list[str]:
    """The loggers to use, ``csv`` first and each once; ValueError for an unknown name or one
    whose package is not installed (saying which extra installs it), before any work starts."""
    out = ["csv"]
    for name in names or ():
        if name not in NAMES:
            raise ValueError(f"unknown logger {name!r}; valid: {', '.join(NAMES)}")
        module, extra = NEEDS.get(name, (None, None))
        if module and importlib.util.find_spec(module) is None:
            raise ValueError(f"--logger {name} needs the {module} package: pip install 'hashbench[{extra}]'")
        if name not in out:
            out.append(name)
    return out


def mlflow_uri(out_dir: Path) -> str:
    """``$MLFLOW_TRACKING_URI``, else the file store ``<out_dir>/mlruns`` as a ``file:`` URI."""
    return os.environ.get("MLFLOW_TRACKING_URI") or Path(out_dir).expanduser().resolve().joinpath("mlruns").as_uri()


def make(names: Iterable[str], run_path: Path, run_name: str, out_dir: Path) -> list:
    """Lightning loggers for ``names`` (as :func:`check` returns them) writing into the run
    directory being built (``run_path``) and, for MLflow, the tracking store of :func:`mlflow_uri`."""
    from pytorch_lightning.loggers import CSVLogger

    loggers = []
    for name in names:
        if name == "csv":
            loggers.append(CSVLogger(str(run_path), name="logs", version=""))
        elif name == "tensorboard":
            from pytorch_lightning.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(str(run_path), name="tensorboard", version="", default_hp_metric=False))
        elif name == "mlflow":
            from pytorch_lightning.loggers import MLFlowLogger

            uri = mlflow_uri(out_dir)
            if uri.startswith("file:"):
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            loggers.append(MLFlowLogger(experiment_name=EXPERIMENT, run_name=run_name, tracking_uri=uri))
    return loggers


def trackers(loggers: list) -> list:
    """The loggers other than the CSV log (those that receive the final metric table)."""
    from pytorch_lightning.loggers import CSVLogger

    return [lg for lg in loggers if not isinstance(lg, CSVLogger)]


def metric_key(bits: int, metric: str, variant: str) -> str:
    """Tracker name of one metric row: ``eval/<metric>/<bits>b[/<variant>]`` with every character
    MLflow refuses in a key (anything but letters, digits, ``_ - . / : space``) replaced by ``_``."""
    key = f"eval/{metric}/{int(bits)}b" + (f"/{variant}" if variant else "")
    return re.sub(r"[^\w\-./: ]", "_", key)


def log_config(loggers: list, config: dict[str, Any]) -> None:
    """The run's context and resolved config as hyperparameters of every tracker."""
    flat = {k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in config.items()}
    for lg in trackers(loggers):
        lg.log_hyperparams(flat)


def log_metric_table(loggers: list, metrics: pd.DataFrame, csv_path: Path, step: int = 0) -> None:
    """Log the final metric table (``metrics.csv`` rows) to every tracker: one scalar per finite
    row at ``step`` (:func:`metric_key`), and the table as TensorBoard text / an MLflow artifact."""
    values = {metric_key(r.bits, r.metric, r.variant if isinstance(r.variant, str) else ""): float(r.value)
              for r in metrics.itertuples() if math.isfinite(float(r.value))}
    for lg in trackers(loggers):
        lg.log_metrics(values, step=step)
        kind = type(lg).__name__
        if kind == "TensorBoardLogger":
            table = metrics[["bits", "metric", "variant", "value"]].to_markdown(index=False)
            lg.experiment.add_text("eval/metrics.csv", table, global_step=step)
        elif kind == "MLFlowLogger":
            lg.experiment.log_artifact(lg.run_id, str(csv_path))


def finalize(loggers: list, status: str) -> None:
    """Close every logger (``status`` ``success`` or ``failed``; MLflow records it on the run)."""
    for lg in loggers:
        lg.finalize(status)
