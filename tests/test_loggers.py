"""``run --logger``: Lightning's TensorBoard and MLflow loggers, offline, receive the training curves
and the final metric table; read back from the event files and MLflow's local file store."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from hashbench.benchmark import loggers
from hashbench.benchmark.cli import main
from hashbench.benchmark.runner import RunRequest, load_data, run_one

DEFAULT_MAP = ("map@all", "denominator=relevant_retrieved,empty=zero,ties=expected")


def test_logger_names_are_checked_before_any_work(monkeypatch, capsys):
    assert loggers.check(None) == ["csv"] and loggers.check(["csv", "csv"]) == ["csv"]
    with pytest.raises(ValueError, match="unknown logger 'wandb'; valid: csv, tensorboard, mlflow"):
        loggers.check(["wandb"])
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'hashbench\[mlflow\]'"):
        loggers.check(["mlflow"])
    assert main(["run", "--method", "lsh", "--logger", "wandb", "--out", "/nonexistent/never-written"]) == 2
    assert "unknown logger 'wandb'" in capsys.readouterr().err
    assert loggers.metric_key(16, "map@all", "ties=expected,empty=zero") == "eval/map_all/16b/ties_expected_empty_zero"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One trained run (HashNet, 1 epoch, digits) logged to the available trackers."""
    names = ["csv"] + [n for n in ("tensorboard", "mlflow") if loggers.importlib.util.find_spec(n)]
    out = tmp_path_factory.mktemp("runs")
    req = RunRequest(method="hashnet", dataset="digits", bits=16, epochs=1, out_dir=out, device="cpu", speed=False,
                     loggers=names)
    path, metrics = run_one(req, load_data("digits", None, 0, None))
    return out, path, metrics


def _expected(metrics: pd.DataFrame) -> dict[str, float]:
    return {loggers.metric_key(r.bits, r.metric, r.variant if isinstance(r.variant, str) else ""): r.value
            for r in metrics.itertuples() if math.isfinite(r.value)}


def test_tensorboard_event_files_hold_curves_and_metric_table(run):
    pytest.importorskip("tensorboard", reason="tensorboard not installed (the [tensorboard] extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, path, metrics = run
    events = EventAccumulator(str(path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss_step", "val/map"} <= scalars  # the Trainer's curves
    expected = _expected(metrics)
    assert set(expected) <= scalars
    for key, value in expected.items():
        assert events.Scalars(key)[-1].value == pytest.approx(value, rel=1e-6, abs=1e-7)
    key = loggers.metric_key(16, *DEFAULT_MAP)
    assert 0.1 < events.Scalars(key)[-1].value <= 1
    text = events.Tensors("eval/metrics.csv/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "map@all" in text and "denominator=relevant_retrieved" in text


def test_mlflow_file_store_holds_run_params_metrics_and_table(run):
    pytest.importorskip("mlflow", reason="mlflow not installed (the [mlflow] extra)")
    from mlflow.tracking import MlflowClient

    out, path, metrics = run
    client = MlflowClient(tracking_uri=loggers.mlflow_uri(out))
    (found,) = client.search_runs([client.get_experiment_by_name(loggers.EXPERIMENT).experiment_id])
    assert found.info.run_name == path.name and found.info.status == "FINISHED"
    assert found.data.params["method"] == "hashnet" and found.data.params["epochs"] == "1"
    assert "train/loss_step" in found.data.metrics
    for key, value in _expected(metrics).items():
        assert found.data.metrics[key] == pytest.approx(value, rel=1e-9)
    (artifact,) = client.list_artifacts(found.info.run_id)
    assert artifact.path == "metrics.csv"
    logged = pd.read_csv(client.download_artifacts(found.info.run_id, "metrics.csv"))
    pd.testing.assert_frame_equal(logged, pd.read_csv(path / "metrics.csv"))
