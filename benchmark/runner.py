"""One benchmark run: train a method on a dataset protocol, encode, evaluate, store.

``run_one`` composes ``methods`` × ``datasets``: it resolves the config, loads and splits the
data, builds the backbone (frozen-feature mode or fine-tuning), trains with Lightning (or fits a
closed-form baseline), encodes query and database, evaluates every code length the method
serves, and publishes the run directory atomically.
"""
from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from hashbench import datasets as dataset_registry
from hashbench import paths
from hashbench.benchmark import data as data_mod
from hashbench.benchmark import loggers as loggers_mod
from hashbench.benchmark import resume, store
from hashbench.benchmark.evaluate import DEFAULT_MAP, EvalInputs, evaluate, ranking_metrics, map_name
from hashbench.benchmark.plan import FeaturePlan, RunPlan, plan_run
from hashbench.benchmark.train import encode_batches, fit, set_layout
from hashbench.methods.backbones import build_backbone
from hashbench.methods.base import CODE_KEYS

log = logging.getLogger("hashbench")


@dataclass
class RunRequest:
    """What to run; ``None`` fields take the dataset's/config's defaults."""

    method: str
    dataset: str = "digits"
    protocol: str | None = None
    bits: int = 32
    seed: int = 0
    split_seed: int = 0
    epochs: int | None = None
    backbone: str | None = None
    variant: str | None = None
    overrides: dict[str, Any] | None = None
    device: str = "auto"
    devices: int = 1
    out_dir: Path = Path("results/runs")
    data_root: str | None = None
    speed: bool = True
    progress: bool = False
    #: Lightning loggers (:mod:`hashbench.benchmark.loggers`): csv (always), tensorboard, mlflow
    loggers: list[str] = field(default_factory=lambda: ["csv"])
    resume: bool = False  # idempotent + resumable: see benchmark.resume
    #: train and encode only: the run keeps ``codes.npz`` and no metrics (``hashbench evaluate`` adds them)
    encode_only: bool = False


@dataclass
class LoadedData:
    """A dataset loaded and split once, shared by every run of a bench loop."""

    name: str
    spec: Any
    protocol: Any
    data: Any
    split: Any


def load_data(dataset: str, protocol: str | None, split_seed: int, data_root: str | None,
              download: bool = False) -> LoadedData:
    """Load dataset ``dataset`` (MissingDataError if absent) and draw the protocol's split."""
    spec = dataset_registry.get_dataset(dataset)
    proto = spec.protocol(protocol)
    data = spec.load(dataset_registry.data_root(data_root), download=download)
    return LoadedData(dataset, spec, proto, data, proto.make_split(data, split_seed))


def _map_cutoff(setting: Any, protocol, n_db: int) -> int | None:
    if setting in (None, "protocol"):
        return protocol.map_at
    if setting == "all":
        return None
    return min(int(setting), n_db)


def _query_in_database(split) -> np.ndarray | None:
    """Database position of each query that is also a database item (−1 otherwise); None if disjoint."""
    pos = {int(i): j for j, i in enumerate(split.database)}
    where = np.array([pos.get(int(i), -1) for i in split.query], dtype=np.int64)
    return where if (where >= 0).any() else None


def request_identity(req: RunRequest, protocol: str) -> str:
    """The run identity (:func:`benchmark.resume.run_identity`) of ``req`` under ``protocol``."""
    plan = plan_run(req.method, req.dataset, (), req.variant, req.overrides, req.epochs, req.backbone)
    return resume.run_identity(req.method, req.dataset, protocol, req.bits, req.seed, req.split_seed,
                               store.config_hash(plan.config))


def run_one(req: RunRequest, loaded: LoadedData | None = None) -> tuple[Path, pd.DataFrame]:
    """Run one (method, dataset, protocol, bits, seed); returns (run directory, metrics table).

    With ``req.resume``: a finished run of the same identity under ``req.out_dir`` is returned as
    it is; otherwise the identity is claimed (:class:`~benchmark.resume.RunBusyError` when another
    process holds it) and training continues from a killed attempt's last checkpoint."""
    loaded = loaded or load_data(req.dataset, req.protocol, req.split_seed, req.data_root)
    if not req.resume:
        return _run(req, loaded, None)
    identity = request_identity(req, loaded.protocol.name)
    if resume.launcher_rank() != 0:  # a DDP worker: rank 0 claims and writes
        return _run(req, loaded, identity)
    done = resume.finished_runs(req.out_dir).get(identity)
    if done is None:
        with resume.Claim(req.out_dir, identity):
            done = resume.finished_runs(req.out_dir).get(identity)  # finished while we waited for the lock
            if done is None:
                return _run(req, loaded, identity)
    log.info("%s: finished run of the same identity %s exists, not rerun", done, identity)
    return done, pd.read_csv(done / "metrics.csv", keep_default_na=False, na_values=["nan", "NaN"])


def _run(req: RunRequest, loaded: LoadedData, identity: str | None) -> tuple[Path, pd.DataFrame]:
    """:func:`run_one`'s work, stage by stage: features, build, train, encode, evaluate, write;
    ``identity`` set: resumable (a fixed hidden directory, last checkpoints)."""
    plan = plan_run(req.method, loaded.name, [req.bits], req.variant, req.overrides, req.epochs, req.backbone)
    plan.require(req.bits)
    fp = plan.features(loaded.data)
    device = "cuda" if (req.device in ("auto", "gpu") and torch.cuda.is_available()) else "cpu"
    feats = extract_features(req, loaded, plan, fp, device)
    built = build_method(req, loaded, plan, fp, feats.method_input, device)
    name = "_".join([store.now_stamp().replace(":", ""), req.method, store.name_part(loaded.name),
                     loaded.protocol.name, f"{req.bits}b", f"s{req.seed}"])
    owner = identity is not None and resume.launcher_rank() == 0
    writer = resume.ResumableRunWriter(Path(req.out_dir), name, identity) if owner else store.RunWriter(Path(req.out_dir), name)
    trackers = []
    try:
        trackers = loggers_mod.make(loggers_mod.check(req.loggers), writer.path, name, Path(req.out_dir))
        loggers_mod.log_config(trackers, {"method": req.method, "dataset": loaded.name, "protocol": loaded.protocol.name,
                                          "bits": req.bits, "seed": req.seed, **plan.config})
        trained = train_method(req, loaded, plan, fp, built, feats, writer.path, trackers, identity, device)
        if trained is None:  # DDP worker: rank 0 evaluates and writes the run
            writer.abort()
            return writer.path, pd.DataFrame()
        inputs = encode_run(built, loaded, feats.reference, device)
        record = RunRecord(req, loaded, plan, fp, built, identity, device, trained, feats.seconds)
        metrics = write_run(writer, record, inputs, trackers)
        loggers_mod.finalize(trackers, "success")
        path = writer.commit()
    except BaseException:
        try:
            loggers_mod.finalize(trackers, "failed")
        finally:
            if not isinstance(writer, resume.ResumableRunWriter):  # a resumable one is kept for the rerun
                writer.abort()
        raise
    return path, metrics


# ----------------------------------------------------------------------------- stages


@dataclass
class Features:
    """The features stage's output: ``reference`` (the dataset's default backbone, for the speed
    rows; None when no speed rows and not the method's input), ``method_input`` (the frozen
    features the method trains on; None when it fine-tunes) and the stage's wall ``seconds``."""

    reference: np.ndarray | None
    method_input: np.ndarray | None
    seconds: float


@dataclass
class BuiltMethod:
    """The build stage's output: the constructed ``method`` on its ``backbone``, ``item`` (item
    indices → the method's inputs) and ``eval_loader`` (indices → an in-order loader of them)."""

    method: Any
    backbone: Any
    item: Callable
    eval_loader: Callable


@dataclass
class Trained:
    """The train stage's output: the trainer's ``info`` (epochs, selected checkpoint, timings)
    and the stage's wall ``seconds`` (closed-form fit, or training plus ``fit_after_training``)."""

    info: dict[str, Any]
    seconds: float


def _backbone_builder(data, fp: FeaturePlan, harness: dict[str, Any]) -> Callable:
    """``build(name, size)``: a backbone for ``data``; the method's own backbone honours the
    config's ``pretrained``, the reference backbone is always pretrained."""
    return lambda name, size: build_backbone(
        name, pretrained=harness["pretrained"] if name == fp.backbone else True,
        in_channels=data_mod.in_channels_of(data), image_size=size, in_dim=data_mod.in_dim_of(data))


def extract_features(req: RunRequest, loaded: LoadedData, plan: RunPlan, fp: FeaturePlan, device: str) -> Features:
    """Stage 1, features: the reference features (they serve the speed rows, and are the frozen
    features when the method uses the reference backbone) and the method's frozen features; a
    fine-tuned run without speed rows extracts none. Cached on disk (:func:`data.compute_features`)."""
    t0 = time.time()
    build = _backbone_builder(loaded.data, fp, plan.harness)
    wants_reference = (req.speed and not req.encode_only) or (fp.frozen and fp.same_as_reference)
    reference = data_mod.compute_features(loaded.name, loaded.data, build(fp.reference, fp.reference_size),
                                          device=device) if wants_reference else None
    method_input = None
    if fp.frozen:
        method_input = reference if fp.same_as_reference else \
            data_mod.compute_features(loaded.name, loaded.data, build(fp.backbone, fp.image_size), device=device)
    return Features(reference, method_input, time.time() - t0)


def build_method(req: RunRequest, loaded: LoadedData, plan: RunPlan, fp: FeaturePlan,
                 features: np.ndarray | None, device: str) -> BuiltMethod:
    """Stage 2, build: seed everything with the method seed, then the method's backbone (the
    identity on frozen ``features``, else the fine-tuned network with its BatchNorm policy), its
    input pipeline and the method itself (with class word vectors when its constructor takes them)."""
    data, harness = loaded.data, plan.harness
    pl.seed_everything(req.seed, workers=True, verbose=False)
    if fp.frozen:
        backbone = build_backbone("identity", in_dim=features.shape[1])
        item = lambda idx: torch.from_numpy(features[idx])  # noqa: E731
    else:
        backbone = _backbone_builder(data, fp, harness)(fp.backbone, fp.image_size)
        backbone.set_batchnorm(str(harness["batchnorm"]))  # before the method copies it (DHT)
        item = data_mod.image_items(loaded.name, data, backbone.input_spec, harness, req.seed,
                                    device if req.devices == 1 else "cpu")
    extra: dict[str, Any] = {}
    if "class_vectors" in inspect.signature(plan.cls.__init__).parameters and "class_vectors" not in plan.hparams:
        from hashbench.datasets.wordvec import class_word_vectors

        extra["class_vectors"] = class_word_vectors(loaded.name, dataset_registry.data_root(req.data_root),
                                                    data.labels.shape[1])
    method = plan.cls(bits=req.bits, n_classes=data.labels.shape[1], backbone=backbone, **plan.hparams, **extra)
    bs, workers = int(harness["batch_size"]), 0 if fp.frozen else harness["num_workers"]
    eval_loader = lambda idx: data_mod.make_loader(item(idx), data.labels[idx], max(bs, 256), False, req.seed,  # noqa: E731
                                                   num_workers=workers)
    return BuiltMethod(method, backbone, item, eval_loader)


def train_method(req: RunRequest, loaded: LoadedData, plan: RunPlan, fp: FeaturePlan, built: BuiltMethod,
                 feats: Features, run_path: Path, trackers: list, identity: str | None, device: str) -> Trained | None:
    """Stage 3, train: a closed-form fit on the training features, or Lightning training (model
    selection on the validation split when the method selects) then ``fit_after_training``.
    None in a DDP worker process (rank 0 goes on alone)."""
    t1 = time.time()
    split, labels, method = loaded.split, loaded.data.labels, built.method
    if not plan.cls.requires_training:
        method.fit_closed_form(feats.method_input[split.train], labels[split.train], req.seed)
        return Trained({}, time.time() - t1)
    info = _fit(req, loaded, plan, fp, built, run_path, trackers, identity, device)
    if info["global_rank"] != 0:
        return None
    (run_path / resume.LAST_CHECKPOINT).unlink(missing_ok=True)  # scratch for resuming only
    method.fit_after_training(built.eval_loader(split.train), req.seed)
    return Trained(info, time.time() - t1)


def _fit(req: RunRequest, loaded: LoadedData, plan: RunPlan, fp: FeaturePlan, built: BuiltMethod, run_path: Path,
         trackers: list, identity: str | None, device: str) -> dict[str, Any]:
    """Lightning training of a trainable method (:func:`train.fit`); returns its info."""
    split, labels, harness, method, frozen = loaded.split, loaded.data.labels, plan.harness, built.method, fp.frozen
    bs = int(harness["batch_size"])
    train_x = built.item(split.train) if frozen else built.item(split.train, aug=harness["augment"])
    # DDP: batch_size is the global batch; each of the `devices` processes takes its share
    if req.devices > 1 and bs % req.devices:
        raise ValueError(f"batch_size {bs} is not divisible by --devices {req.devices}")
    loader = data_mod.make_loader(train_x, labels[split.train], bs // max(1, req.devices), True, req.seed,
                                  harness["sampler"], harness["classes_per_batch"], harness["images_per_class"],
                                  harness["num_workers"])
    method.on_training_data(labels[split.train])
    score_fn = _validation_score_fn(method, built.eval_loader(split.val), built.eval_loader(split.train),
                                    labels[split.val], labels[split.train], device) \
        if len(split.val) and plan.cls.model_selection else None
    recompute_bn = not frozen and built.backbone.batchnorm == "recompute"
    resume_from = resume.last_checkpoint(req.out_dir, identity) if identity is not None else None
    threads = torch.get_num_threads()
    if frozen or fp.backbone in ("flatten", "identity"):
        # A small head on vectors: one intra-op thread is as fast on an idle machine and
        # many times faster on a busy one (measured: DRQ on digits 7 s vs 105 s).
        torch.set_num_threads(1)
    try:
        set_layout(method, bool(harness["channels_last"]), bool(harness["compile"]))
        return fit(method, loader, run_path, int(harness["epochs"]), req.device, req.devices,
                   score_fn, progress=req.progress, loggers=trackers, resume_from=resume_from,
                   save_last=identity is not None, precision=str(harness["precision"]),
                   head_warmup_epochs=0 if frozen else int(harness["head_warmup_epochs"]),
                   batchnorm_loader=built.eval_loader(split.train) if recompute_bn else None)
    finally:
        torch.set_num_threads(threads)


def encode_run(built: BuiltMethod, loaded: LoadedData, reference: np.ndarray | None, device: str) -> EvalInputs:
    """Stage 4, encode: query and database codes and embeddings of the trained method, handed to
    evaluation as :class:`EvalInputs` whose code arrays carry the code type's own keys
    (:data:`~hashbench.methods.base.CODE_KEYS`)."""
    method, split, labels = built.method, loaded.split, loaded.data.labels
    q_codes, q_emb = encode_batches(method, built.eval_loader(split.query), device)
    db_codes, db_emb = encode_batches(method, built.eval_loader(split.database), device)
    method.to("cpu")
    missing = [k for k in CODE_KEYS[method.code_type] if k not in q_codes or k not in db_codes]
    if missing:
        raise ValueError(f"{method.name}: encode() returned no {', '.join(missing)} "
                         f"(a {method.code_type} code has the keys {', '.join(CODE_KEYS[method.code_type])})")
    return EvalInputs(
        code_type=method.code_type, query=q_codes, database=db_codes,
        query_labels=labels[split.query], database_labels=labels[split.database],
        query_embedding=q_emb, database_embedding=db_emb, code_state=method.code_state(),
        search_metric=method.search_metric,
        query_features=None if reference is None else reference[split.query],
        database_features=None if reference is None else reference[split.database],
        query_in_database=_query_in_database(split), rerank=method.reranks)


@dataclass
class RunRecord:
    """What the write stage records of one run beside its metrics (the run's ``config.yaml`` and
    the context columns of its ``metrics.csv``)."""

    req: RunRequest
    loaded: LoadedData
    plan: RunPlan
    fp: FeaturePlan
    built: BuiltMethod
    identity: str | None
    device: str
    trained: Trained
    feature_seconds: float

    @property
    def map_at(self) -> int | None:
        """The mAP cutoff R of this run (``map_at``: protocol, all, or an int)."""
        return _map_cutoff(self.plan.harness["map_at"], self.loaded.protocol, len(self.loaded.split.database))

    def _portable(self, text: str) -> str:
        """``text`` with the data root, cache root and checkout written portably (:func:`paths.portable`)."""
        return paths.portable(text, dataset_registry.data_root(self.req.data_root), dataset_registry.cache_dir())

    def context(self) -> dict[str, Any]:
        """The context columns every metric row of this run repeats (:func:`store.metric_rows`)."""
        req, fp = self.req, self.fp
        return {
            "method": req.method, "dataset": self.loaded.name, "protocol": self.loaded.protocol.name,
            "backbone": f"{fp.backbone}{f'@{fp.image_size}' if fp.image_size else ''}{'(frozen)' if fp.frozen else ''}",
            "seed": req.seed,
            "git_revision": store.git_revision(), "config_hash": store.config_hash(self.plan.config),
            "settings": store.request_settings({**req.__dict__, "dataset": self.loaded.name}),
            "hardware": store.hardware_description(self.device), "timestamp": store.now_stamp(),
        }

    def config(self) -> dict[str, Any]:
        """The run's ``config.yaml``: request, resolved config, backbone, lengths, training; paths
        relative to the data root, cache root or checkout, the data identified by its content
        (``data_fingerprint``: :func:`data.content_fingerprint`)."""
        req, fp, method = self.req, self.fp, self.built.method
        portable = self._portable
        return {
            "identity": self.identity or request_identity(req, self.loaded.protocol.name),
            "request": {k: portable(str(v)) if isinstance(v, Path) or k == "data_root" and v else v
                        for k, v in req.__dict__.items()},
            "resolved": self.plan.config, "backbone": fp.backbone, "image_size": fp.image_size,
            "reference_features": f"{fp.reference}@{fp.reference_size}" if fp.reference_size else fp.reference,
            "frozen": fp.frozen, "code_type": self.plan.cls.code_type,
            "batchnorm": self.built.backbone.batchnorm,
            "map_at": self.map_at,
            "evaluation_lengths": {int(b): dict(o) for b, o in method.evaluation_lengths().items()},
            "map_variant_default": DEFAULT_MAP, "training": self.trained.info,
            "data_source": portable(self.loaded.data.source),
            "data_fingerprint": data_mod.content_fingerprint(self.loaded.data), "device": self.device,
            "method_hparams": _plain(dict(method.hparams))}


def write_run(writer, record: RunRecord, inputs: EvalInputs, trackers: list) -> pd.DataFrame:
    """Stages 5 and 6, evaluate and write: every metric of every evaluated code length (none for
    an encode-only run, whose config keeps what ``hashbench evaluate`` needs), then metrics,
    curves, per-query values, config, split and codes into the run directory; returns the metrics."""
    req, split, proto = record.req, record.loaded.split, record.loaded.protocol
    config, context = record.config(), record.context()
    metrics = pd.DataFrame()  # encode-only: no metrics, the caller prints nothing for this run
    if req.encode_only:
        # metrics later, anywhere: `hashbench evaluate` reads the context and timings kept here
        config["encode_only"] = {"context": context, "train_seconds": record.trained.seconds,
                                 "feature_seconds": record.feature_seconds}
    else:
        rows, per_query, curves = evaluate_lengths(inputs, record.built.method.evaluation_lengths(), record.map_at,
                                                   inputs.query_labels.shape[1], req.seed, req.speed)
        rows += timing_rows(req.bits, record.trained.seconds, record.feature_seconds)
        metrics = store.metric_rows(context, rows)
        if not np.isfinite(metrics["value"].to_numpy(dtype=float)).any():
            raise RuntimeError("no finite metric was produced")
        writer.write_frame("metrics.csv", metrics)
        writer.write_json("curves.json", curves)
        writer.write_npz("per_query.npz", **per_query)
    writer.write_yaml("config.yaml", config)
    writer.write_json("split.json", {"protocol": proto.name, "description": proto.description,
                                     "split_seed": req.split_seed, "sizes": split.sizes(), "sha256": split.sha256()})
    writer.write_npz("codes.npz", **codes_npz(inputs))
    if not req.encode_only:
        loggers_mod.log_metric_table(trackers, metrics, writer.path / "metrics.csv",
                                     record.trained.info.get("global_step", 0))
    return metrics


def evaluate_lengths(inputs: EvalInputs, lengths: dict[int, dict[str, Any]], map_at: int | None, n_classes: int,
                     seed: int, speed: bool) -> tuple[list[tuple], dict[str, np.ndarray], dict[str, Any]]:
    """(metric rows, per-query arrays, curves) of every code length a trained method serves
    (``lengths``: ``method.evaluation_lengths()``; additive codes evaluate a ``prefix``)."""
    rows, per_query, curves = [], {}, {}
    for bits, opts in lengths.items():
        res = evaluate(inputs, int(bits), map_at, n_classes, seed, prefix=opts.get("prefix"), speed=speed)
        rows += res.rows
        per_query.update({f"{k}|bits={bits}": v for k, v in res.per_query.items()})
        curves[str(bits)] = res.curves
    return rows, per_query, curves


def evaluate_encoded_run(run: Path) -> Path:
    """Add the metrics to a run written with ``encode_only``: every metric (speed rows excepted:
    they need the reference features) from its ``codes.npz``, the context and timings kept in its
    ``config.yaml``; writes ``per_query.npz``, ``curves.json`` and, last, ``metrics.csv`` (each
    atomically), the same files a normal run with ``--no-speed`` writes. Returns metrics.csv."""
    import json

    import yaml

    run = Path(run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    kept = cfg.get("encode_only")
    if not kept:
        raise ValueError(f"{run} was not written with --encode-only")
    with np.load(run / "codes.npz") as z:
        inputs = inputs_from_npz(z)
    ctx = dict(kept["context"])
    rows, per_query, curves = evaluate_lengths(inputs, cfg["evaluation_lengths"], cfg["map_at"],
                                               inputs.query_labels.shape[1], int(ctx["seed"]), speed=False)
    rows += timing_rows(int(cfg["request"]["bits"]), kept["train_seconds"], kept["feature_seconds"])
    metrics = store.metric_rows(ctx, rows)
    store.write_atomic(run / "per_query.npz", lambda tmp: np.savez_compressed(tmp, **per_query))
    store.write_text_atomic(json.dumps(curves, indent=2, sort_keys=True, default=str), run / "curves.json")
    store.write_csv_atomic(metrics, run / "metrics.csv")
    return run / "metrics.csv"


def timing_rows(bits: int, train_seconds: float, feature_seconds: float) -> list[tuple]:
    """The wall-time rows every run's metrics end with (training; feature extraction)."""
    return [(bits, "train_seconds", {}, train_seconds),
            (bits, "feature_seconds", {"cached": "see log"}, feature_seconds)]


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """The YAML-representable part of a method's saved hyperparameters."""
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, list, tuple, type(None)))}


def codes_npz(inp: EvalInputs) -> dict[str, np.ndarray]:
    """The arrays of ``codes.npz``: ``query_codes``, ``database_codes`` (the code type's first
    :data:`~hashbench.methods.base.CODE_KEYS` array), ``query_labels``, ``database_labels`` (0/1),
    plus what recomputing every metric needs (code type, additive ``codebooks`` and query
    ``query_features``, sparse ``query_bucket_scores``, embeddings). A database embedding equal
    to the run's reference features (frozen-feature methods) is not stored again:
    ``database_embedding_source`` = ``"database_features"`` says so (no metric of a non-sparse
    code reads it)."""
    code_type = inp.code_type
    main = CODE_KEYS[code_type][0]
    out = {
        "code_type": np.array(code_type), "query_codes": inp.query[main], "database_codes": inp.database[main],
        "query_labels": inp.query_labels, "database_labels": inp.database_labels,
        "search_metric": np.array(inp.search_metric), "rerank": np.array(inp.rerank),
    }
    if code_type != "float":
        out["query_embedding"], out["database_embedding"] = inp.query_embedding, inp.database_embedding
        if _embedding_is_features(code_type, inp):
            # A frozen-feature method's database embedding is the cached reference features (which
            # the run's config identifies): compressing 54,000 × 1,280 float32 again cost ~12 CPU-s
            # a cell and ~160 MB a run. Only sparse codes' re-ranking reads it back.
            del out["database_embedding"]
            out["database_embedding_source"] = np.array("database_features")
    for k, v in inp.query.items():
        if k != main:
            out[f"query_{k}"] = v
    for k, v in inp.database.items():
        if k != main and k != "features":
            out[f"database_{k}"] = v
    out.update(inp.code_state)
    if inp.query_in_database is not None:
        out["query_in_database"] = inp.query_in_database
    return out


def _embedding_is_features(code_type: str, inp: EvalInputs) -> bool:
    """Whether the database embedding equals the run's reference features and no metric reads it."""
    feats, emb = inp.database_features, inp.database_embedding
    return (code_type != "sparse" and feats is not None and emb is not None and emb.shape == feats.shape
            and np.array_equal(emb, feats))


def inputs_from_npz(z) -> EvalInputs:
    """Rebuild :class:`EvalInputs` (without speed features) from a run's ``codes.npz``."""
    code_type = str(z["code_type"])
    main = CODE_KEYS[code_type][0]
    q = {main: z["query_codes"]}
    db = {main: z["database_codes"]}
    for key in z.files:
        if key.startswith("query_") and key not in ("query_codes", "query_labels", "query_embedding", "query_in_database"):
            q[key[len("query_"):]] = z[key]
        if key.startswith("database_") and key not in ("database_codes", "database_labels", "database_embedding",
                                                                "database_embedding_source"):
            db[key[len("database_"):]] = z[key]
    emb_q = z["query_embedding"] if "query_embedding" in z.files else z["query_codes"]
    emb_db = z["database_embedding"] if "database_embedding" in z.files else z["database_codes"]
    state = {"codebooks": z["codebooks"]} if "codebooks" in z.files else {}
    return EvalInputs(code_type=code_type, query=q, database=db, query_labels=z["query_labels"],
                      database_labels=z["database_labels"], query_embedding=emb_q, database_embedding=emb_db,
                      code_state=state, search_metric=str(z["search_metric"]),
                      query_in_database=z["query_in_database"] if "query_in_database" in z.files else None,
                      rerank=bool(z["rerank"]) if "rerank" in z.files else True)


def _validation_score_fn(method, val_loader, train_loader, val_labels, train_labels, device):
    """mAP@all (default variant) of validation codes against training codes, for model selection."""
    def score(m) -> float:
        q_codes, q_emb = encode_batches(m, val_loader, device)
        db_codes, db_emb = encode_batches(m, train_loader, device)
        m.train()
        inp = EvalInputs(code_type=m.code_type, query=q_codes, database=db_codes, query_labels=val_labels,
                         database_labels=train_labels, query_embedding=q_emb, database_embedding=db_emb,
                         code_state=m.code_state(), search_metric=m.search_metric, rerank=m.reranks)
        if m.code_type == "sparse":
            from hashbench.benchmark.evaluate import sparse_metrics
            res = sparse_metrics(inp, m.bits, s=db_codes["buckets"].shape[1], ks=(1,))
            return next(v for _, name, _, v in res.rows if name == "precision@1")
        top = max(m.evaluation_lengths())
        prefix = m.evaluation_lengths()[top].get("prefix")
        res = ranking_metrics(inp, top, None, prefix=prefix)
        return next(v for _, name, opts, v in res.rows if name == map_name(None) and opts == DEFAULT_MAP)
    return score
