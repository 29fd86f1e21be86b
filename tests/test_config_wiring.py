"""Every configuration key reaches the code it names, and nothing else (issue 24).

One row per key of every method's shipped YAML (``methods/configs/*.yaml``: ``default``,
``datasets.*``, ``variants.*``, a ``base`` file's keys included), per constructor keyword of the
trained methods, and per harness key (``benchmark.config.HARNESS_KEYS``). A row changes its key
from the method's resolved digits configuration (plus the row's context) and names the
observables (``tests/wiring_support.py``) that must change; every other observable must stay
exactly the same. Most rows also check where the value landed (the group that got the rate,
the solver argument that got the penalty, the step at which the schedule moves). A key in a
shipped YAML without a row fails :func:`test_every_key_has_a_row`, naming the key.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch

import wiring_support as W
from hashbench.benchmark.config import HARNESS_KEYS
from hashbench.methods import get_method


@dataclass(frozen=True)
class Row:
    """Changing ``key`` to ``value`` (on top of ``context``) must change exactly ``changes``,
    may change ``may`` (values that depend on what the batch's solver happens to decide), and
    must pass ``check(new observables, resolved config)``. ``extra[method]``: further
    observables that must change for that method only."""

    key: str
    value: Any
    changes: frozenset
    may: frozenset = frozenset()
    context: dict = field(default_factory=dict)
    check: Callable | None = None
    doc: str = ""
    extra: dict = field(default_factory=dict)


def R(key, value, changes, may=(), context=None, check=None, doc="", extra=None) -> Row:
    return Row(key, value, frozenset(changes.split()), frozenset(may.split() if isinstance(may, str) else may),
               context or {}, check, doc, {m: frozenset(v.split()) for m, v in (extra or {}).items()})


# --------------------------------------------------------------------------- value checks
def described(text: str, check: Callable) -> Callable:
    """``check`` with ``text`` as its docstring (the table's "value check" column)."""
    check.__doc__ = text
    return check


def group(record, name):
    """The parameter group called ``name`` of an optimiser record."""
    return next(g for g in record["groups"] if g[0] == name)


def groups_named(record) -> dict[str, tuple]:
    return {g[0]: g for g in record["groups"]}


def close(a, b) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-15)


def hashnet_rates(o, c, m=None):
    """HashNet's Caffe multipliers: every group's lr and decay from lr, head_lr_mult,
    bias_lr_mult, weight_decay, bias_decay_mult, norm_decay_mult."""
    lr, wd = c["lr"], c["weight_decay"]
    want = {"backbone_weight": (lr, wd), "backbone_norm": (lr, wd * c["norm_decay_mult"]),
            "backbone_bias": (lr * c["bias_lr_mult"], wd * c["bias_decay_mult"]),
            "head_weight": (lr * c["head_lr_mult"], wd),
            "head_bias": (lr * c["head_lr_mult"] * c["bias_lr_mult"], wd * c["bias_decay_mult"])}
    got = groups_named(o["optim"])
    assert set(got) == set(want), got
    for name, (rate, decay) in want.items():
        assert close(got[name][1], rate) and close(got[name][2], decay), (name, got[name], rate, decay)


def hashnet_optimizer(o, c, m=None):
    assert o["optim"]["class"] == {"sgd": "SGD", "rmsprop": "RMSprop"}[c["optimizer"]]
    if c["optimizer"] == "sgd":
        extra = o["optim"]["groups"][0][5]
        assert extra["momentum"] == c["momentum"] and extra["nesterov"] == bool(c["nesterov"]), extra


def first_factors(schedule, n=1):
    return [row[0] for row in schedule][:n]


def warmup_check(key):
    """The first step of every schedule in observable ``key`` runs at 1/W of its base rate."""
    @functools.wraps(warmup_check)
    def check(o, c, m=None):
        scheds = o[key] if isinstance(o[key][0][0], list) else [o[key]]
        for s in scheds[:1]:
            assert close(s[0][0], 1.0 / c["warmup_steps"]), s[0]
    return check


def hashnet_lr_step(o, c, m=None):
    """lr = base·lr_gamma^⌊t / (lr_step·s)⌋ with s = T / schedule_iterations (auto)."""
    s = W.EPOCHS * W.STEPS_PER_EPOCH / c.get("schedule_iterations", 10_000) if c["schedule_scale"] == "auto" \
        else float(c["schedule_scale"])
    for t, row in zip(W.NAMED_STEPS, o["schedule"]):
        assert close(row[0], c["lr_gamma"] ** math.floor(t / (c["lr_step"] * s) + 1e-9)), (t, row)


def hashnet_beta(o, c, m=None):
    """β at the named steps (epoch 0): √(1 + γ·step·⌊t/(step·s)⌋)^power on the configured clock."""
    if not c["continuation"] or c["beta_schedule"] != "iteration":
        return
    s = 1.0 if c["beta_clock"] == "original" else (
        W.EPOCHS * W.STEPS_PER_EPOCH / c.get("schedule_iterations", 10_000) if c["schedule_scale"] == "auto"
        else float(c["schedule_scale"]))
    betas = o["beta"][::4]
    for t, b in zip(W.NAMED_STEPS, betas):
        n = math.floor(t / (c["beta_step"] * s) + 1e-9)
        assert close(b, (1 + c["beta_gamma"] * c["beta_step"] * n) ** c["beta_power"]), (t, b)


def hashnet_epoch_beta(o, c, m=None):
    """β = √(⌊epoch / beta_epoch_step⌋ + 1) at epochs 0, 19, 20, 45."""
    step = c.get("beta_epoch_step", constructor_default("hashnet", "beta_epoch_step"))
    assert o["beta"][:4] == [math.sqrt(e // step + 1) for e in (0, 19, 20, 45)], o["beta"][:4]


def constructor_default(method, key):
    return inspect.signature(get_method(method).__init__).parameters[key].default


def continuation_off(o, c, m=None):
    assert set(o["beta"]) == {1.0}


def dht_stage1(o, c, m=None):
    """Stage 1: every group at stage1_lr (or lr); weight_decay on trunk + Embed weights,
    backbone_weight_decay on the backbone's weights, none on 1-d parameters."""
    lr1 = c["stage1_lr"] or c["lr"]
    g = groups_named(o["optim1"])
    assert all(close(x[1], lr1) for x in g.values()), g
    assert close(g["fc_weight"][2], c["weight_decay"]) and close(g["backbone_weight"][2], c["backbone_weight_decay"]), g
    assert g["fc_bias"][2] == 0.0 and g["backbone_bias"][2] == 0.0, g


def dht_stage2(o, c, m=None):
    """Stage 2: Hash at lr, backbone + trunk at trunk_lr_mult·lr, no decay."""
    g = groups_named(o["optim2"])
    assert close(g["hash"][1], c["lr"]) and close(g["trunk"][1], c["lr"] * c["trunk_lr_mult"]), g
    assert g["hash"][2] == 0.0 and g["trunk"][2] == 0.0, g


def dht_both_stages(o, c, m=None):
    dht_stage1(o, c)
    dht_stage2(o, c)


def dht_decay(o, c, m=None):
    """original: lr_decay_rate^⌊t / lr_decay_steps⌋ in both stages."""
    for t, a, b in zip(W.NAMED_STEPS, o["schedule1"], o["schedule2"]):
        want = c["lr_decay_rate"] ** (t // c["lr_decay_steps"])
        assert close(a[0], want) and close(b[0], want), (t, a, b)


def penalty(c):
    return c["pairwise_penalty"] if c["pairwise_penalty"] is not None else {"triplet": 1.0, "npairs": 0.3}[c["loss"]]


def solver_penalties(o, c, m=None):
    """Every solver call gets λ = pairwise_penalty (the global one); grouped calls (cascade
    levels ≥ 2) get λ_group = sibling_penalty; the last level's calls get s = sparsity."""
    calls = o["solver"]
    assert calls, "the solver was not called"
    for k in calls:
        assert close(k["lam"], penalty(c)), f"solver lam = {k['lam']}, pairwise_penalty is {penalty(c)}: {calls}"
        if k["grouped"]:
            assert close(k["lam_group"], c["sibling_penalty"]), \
                f"solver lam_group = {k['lam_group']}, sibling_penalty is {c['sibling_penalty']}: {calls}"
    assert calls[-1]["s"] == c["sparsity"], f"last solver call s = {calls[-1]['s']}, sparsity is {c['sparsity']}"


def cascade_levels(o, c, m=None):
    """L solver calls (one ungrouped, L − 1 grouped), the code over L·d outputs."""
    calls = o["solver"]
    assert len(calls) == c["levels"] and [k["grouped"] for k in calls] == [False] + [True] * (c["levels"] - 1), calls
    assert o["layout"]["codes"]["bucket_scores"][0][1:] == (c["levels"], W.BITS["cascade-dht"]), o["layout"]


def two_passes(o, c, m=None):
    assert o["passes"] == (2 if c["two_pass"] else 1), o["passes"]


def drq_groups(o, c, m=None):
    """Encoder groups: lr × the multiplier of each group (defaults backbone weight 0.5, bias 1,
    head weight 5, bias 10, updated by lr_multipliers); weight_decay on weights only; both
    codebook optimisers at codebook_lr."""
    mult = {"backbone_weight": 0.5, "backbone_bias": 1.0, "head_weight": 5.0, "head_bias": 10.0}
    mult.update(c["lr_multipliers"] or {})
    enc, a, b = o["optim"]
    assert enc["class"] == {"momentum": "SGD", "adam": "Adam"}[c["encoder_optimizer"]], enc
    for name, g in groups_named(enc).items():
        assert close(g[1], c["lr"] * mult[name]), (name, g)
        assert close(g[2], c["weight_decay"] if name.endswith("_weight") else 0.0), (name, g)
        if c["encoder_optimizer"] == "momentum":
            assert g[5]["momentum"] == c["momentum"], g
    assert close(a["groups"][0][1], c["codebook_lr"]) and close(b["groups"][0][1], c["codebook_lr"]), (a, b)


def drq_decay(o, c, m=None):
    """Codebooks A and B: lr_decay_rate^(t / lr_decay_steps) (not staircase); the encoder too
    under lr_schedule original without warm-up."""
    for t, *rows in zip(W.NAMED_STEPS, *o["schedule"]):
        want = c["lr_decay_rate"] ** (t / c["lr_decay_steps"])
        assert close(rows[1][0], want) and close(rows[2][0], want), (t, rows)
        if c["lr_schedule"] == "original" and not c["warmup_steps"]:
            assert close(rows[0][0], want), (t, rows)


def drq_layout(o, c, m=None):
    """K codewords, M = n_steps or bits / log2 K steps, every prefix m·log2 K evaluated."""
    k = c["codebook_size"]
    step = k.bit_length() - 1
    m = c["n_steps"] or W.BITS["drq"] // step
    assert o["layout"]["lengths"] == {i * step: {"prefix": i} for i in range(1, m + 1)}, o["layout"]
    assert o["layout"]["state"]["codebooks"][:2] == (m, k), o["layout"]


def drq_stages(o, c, m=None):
    """Stages by epoch over E = schedule_epochs (or the Trainer's), boundaries ⌊f·E⌋."""
    from hashbench.methods.drq import stage_of_epoch

    e = c["schedule_epochs"] or W.EPOCHS
    want = [stage_of_epoch(i, e, c["stage_fractions"], c["skip_boundary_epochs"]) for i in range(W.EPOCHS)]
    assert [s for s, _ in o["stages"]] == want, o["stages"]


def dht_stages(o, c, m=None):
    from hashbench.methods.dht import stage1_epochs

    n1 = stage1_epochs(W.EPOCHS, c["stage1_fraction"])
    assert [s for s, _ in o["stages"]] == [1 if i < n1 else 2 for i in range(W.EPOCHS)], o["stages"]


def field_is(field_name, expected):
    """The harness observable ``field_name`` equals ``expected``."""
    def check(o, c, m=None):
        assert o[field_name] == expected, (field_name, o[field_name], expected)
    return described(f"{field_name} == {expected!r}", check)


def loader_arg(index, expected):
    """Argument/attribute ``index`` of the training loader record equals ``expected``."""
    def check(o, c, m=None):
        assert o["train_loader"][0][index] == expected, o["train_loader"]
    return described(f"training loader record[{index}] == {expected!r}", check)


def batch_sizes(value):
    """The training loader gets batch_size, the evaluation loaders max(batch_size, 256); under
    the random sampler the first training batch has batch_size items."""
    @functools.wraps(batch_sizes)
    def check(o, c, m=None):
        assert o["train_loader"][0][1] == value, o["train_loader"]
        assert all(x[1] == max(value, 256) for x in o["eval_loaders"]), o["eval_loaders"]
        if c["sampler"] == "random":
            assert o["train_batch"][0] == value, o["train_batch"]
    return check


def drq_selection(o, c, m=None):
    """any_epoch: every trained epoch (stage ≠ 0) is selectable; final_stage: the final stage's."""
    final = o["stages"][-1][0]
    for stage, ok in o["stages"]:
        assert ok == (stage != 0 if c["selection"] == "any_epoch" else stage == final), o["stages"]


def backbone_is(name):
    """The method trains on a backbone called ``name``."""
    def check(o, c, m=None):
        assert o["fit.method_backbone"][0] == name, o["fit.method_backbone"]
    return described(f"the method trains on backbone {name!r}", check)


def dropout_is(o, c, m=None):
    """Every dropout layer of the method has p = dropout."""
    ps = [p for _, kind, _, p in o["network"] if kind == "Dropout"]
    assert ps and all(p == c["dropout"] for p in ps), ps


def close_rel(a, b, tol=1e-6) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=1e-9)


def hashnet_loss(o, c, m=None):
    """The loss and its gradient on the fixed codes equal HashNet's pairwise likelihood called
    with the configured α (10/K when null), class_num (measured on the batch when null),
    threshold, weighting, pairs, continuous similarity and Caffe gradient scale 2/α."""
    from hashbench.methods import hashnet as H

    bits = W.BITS["hashnet"]
    h, y = W.hashnet_codes(bits)
    h.requires_grad_(True)
    alpha = c["alpha"] if c["alpha"] is not None else 10.0 / bits
    class_num = c["class_num"] if c["class_num"] is not None else H.similar_pair_ratio(y.numpy())
    torch.manual_seed(3)
    i1, i2 = H.two_stream_split(len(h)) if c["pairs"] == "two_stream" else (slice(None), slice(None))
    loss = H.pairwise_likelihood_loss(h[i1], h[i2], y[i1], y[i2], alpha, class_num=class_num,
                                      threshold=c["threshold"], weighting=c["weighting"],
                                      continuous_similarity=c["continuous_similarity"],
                                      grad_scale=2.0 / alpha if c["caffe_grad_scale"] else 1.0)
    loss.backward()
    loss = loss.detach()
    assert close_rel(o["loss"], loss), f"loss {o['loss']} != pairwise_likelihood_loss with the config: {float(loss)}"
    assert o["grad"] == W.values(h.grad), "gradient differs from pairwise_likelihood_loss with the config"


def dht_loss1(o, c, m):
    """Stage 1: the semi-hard triplet on the normalised Embed output with margin metric_margin,
    or N-pairs with npairs_reg."""
    from hashbench.methods import metric_losses as ML
    from hashbench.methods.dht import anchor_positive_pairs

    model = W.build(m, c)
    x, y = W.tiny_batch()
    ids = y.argmax(1)
    with torch.no_grad():
        e = model.embed_head(model.head_input(x))
        if c["loss"] == "triplet":
            want = ML.semihard_triplet_from_distances(ML.sq_euclidean_normalised(e), *ML.label_masks(ids),
                                                      c["metric_margin"])
        else:
            a, p = anchor_positive_pairs(ids)
            want = ML.npairs_loss(e[a], e[p], ids[a], c["npairs_reg"])
    assert close_rel(o["loss1"], want), f"stage-1 loss {o['loss1']} != {float(want)} with the configured margin/reg"


def dht_loss2(o, c, m):
    """Stage 2: Σ over levels of the code-masked triplet (margin hash_margin) on each level's
    normalised slice, or code-masked N-pairs (hash_npairs_reg), given the codes and labels the
    step handed the loss."""
    from hashbench.methods import metric_losses as ML
    from hashbench.methods.dht import anchor_positive_pairs

    model = W.build(m, c)
    x, y = W.tiny_batch()
    ids = y.argmax(1)
    codes, labels = torch.tensor(o["codes"]), torch.tensor(o["labels"]).long()
    d, levels = W.BITS[m], (c["levels"] if m == "cascade-dht" else 1)
    total = 0.0
    with torch.no_grad():
        f = model.hash_output(x)
        for level in range(levels):
            sl = slice(level * d, (level + 1) * d)
            lab = labels[:, level] if labels.ndim == 2 else labels
            if c["loss"] == "triplet":
                dist = ML.masked_l1_distances(torch.nn.functional.normalize(f[:, sl], dim=1), codes[:, sl])
                total += float(ML.semihard_triplet_from_distances(dist, *ML.label_masks(lab), c["hash_margin"]))
            else:
                a, p = anchor_positive_pairs(ids)
                total += float(ML.npairs_loss(f[a, sl], f[p, sl], lab[a], c["hash_npairs_reg"], codes=codes[a, sl]))
    assert close_rel(o["loss2"], total), f"stage-2 loss {o['loss2']} != {total} with the configured margin/reg"


def drq_loss(o, c, m=None):
    """Every stage's loss = semantic_weight·ℓ_s + triplet_weight·ℓ_t (ℓ_t the semi-hard
    triplet with triplet_margin on the features), plus from stage 2 on τ(E_s + μE_h + νE_j) of
    the logged parts."""
    from hashbench.methods import drq_losses as L

    model = W.build("drq", c)
    x, y = W.tiny_batch()
    with torch.no_grad():
        feats, _ = model.features(x)
        l_tri = L.semihard_triplet_loss(feats, y, c["triplet_margin"])
    for tag, parts in o["loss"].items():
        assert close_rel(parts["train/loss_triplet"], l_tri), f"triplet {parts['train/loss_triplet']} != {float(l_tri)}"
        want = c["semantic_weight"] * parts["train/loss_semantic"] + c["triplet_weight"] * parts["train/loss_triplet"]
        if tag != "1":
            k = "B" if tag == "3B" else "A"
            want += c["tau"] * (parts[f"train/E_soft_{k}"] + c["mu"] * parts[f"train/E_hard_{k}"]
                                + c["nu"] * parts[f"train/E_joint_{k}"])
        assert close_rel(parts["loss"], want), f"stage {tag} loss {parts['loss']} != {want} from the configured weights"


# --------------------------------------------------------------------------- the table
HASHNET = [
    R("optimizer", "rmsprop", "optim", check=hashnet_optimizer, doc="optimiser class SGD → RMSprop"),
    R("lr", 0.005, "optim", check=hashnet_rates, doc="every group's lr = lr × its multipliers"),
    R("momentum", 0.5, "optim", check=hashnet_optimizer, doc="SGD momentum"),
    R("nesterov", True, "optim", check=hashnet_optimizer, doc="SGD nesterov flag"),
    R("weight_decay", 1e-3, "optim", check=hashnet_rates, doc="weights' decay (biases × bias_decay_mult)"),
    R("head_lr_mult", 4, "optim", check=hashnet_rates, doc="fch weight lr × m, fch bias × m × bias_lr_mult"),
    R("bias_lr_mult", 3, "optim", check=hashnet_rates, doc="biases' lr multiplier"),
    R("bias_decay_mult", 1, "optim", check=hashnet_rates, doc="biases' decay multiplier"),
    R("norm_decay_mult", 1, "optim", check=hashnet_rates, doc="BatchNorm scales' decay multiplier"),
    R("lr_step", 1000, "schedule", check=hashnet_lr_step, doc="lr halvings every lr_step·s steps"),
    R("lr_gamma", 0.1, "schedule", check=hashnet_lr_step, doc="factor of each lr step"),
    R("schedule_scale", 0.01, "schedule beta",
      check=described('lr steps and β on the clock s = schedule_scale',
        lambda o, c, m=None: (hashnet_lr_step(o, c), hashnet_beta(o, c))),
      doc="clock s of the lr steps and of β (auto → number)"),
    R("schedule_iterations", 5000, "schedule beta",
      check=described('auto: lr steps and β on the clock s = T / schedule_iterations',
        lambda o, c, m=None: (hashnet_lr_step(o, c), hashnet_beta(o, c))),
      doc="auto: s = T / schedule_iterations (constructor keyword)"),
    R("lr_schedule", "cosine", "schedule",
      check=described('cosine: the factor is 0 at t = T = 200',
        lambda o, c, m=None: close(o["schedule"][-3][0], 0.0) or pytest.fail()),
      doc="lr factor by schedule (cosine reaches 0 at T = 200)"),
    R("warmup_steps", 10, "schedule", check=warmup_check("schedule"), doc="first step at base/W"),
    R("beta_clock", "original", "beta", check=hashnet_beta, doc="β on the unscaled 200-step clock"),
    R("alpha", 0.5, "loss grad", check=hashnet_loss, doc="t = α⟨h_i, h_j⟩ (and the 2/α gradient scale)"),
    R("threshold", 3.0, "loss grad", check=hashnet_loss, context={"alpha": 2.0},
      doc="t ≥ threshold branch (context α = 2)"),
    R("class_num", 3.0, "loss grad", check=hashnet_loss, doc="similar-pair weight"),
    R("weighting", "none", "loss grad", check=hashnet_loss, doc="pair weights"),
    R("pairs", "in_batch", "loss grad", check=hashnet_loss, doc="which pairs are scored"),
    R("continuous_similarity", False, "grad", check=hashnet_loss,
      doc="backward-only 4·cos² factor: gradient changes, loss not"),
    R("caffe_grad_scale", False, "grad", check=hashnet_loss,
      doc="backward-only 2/α factor: gradient changes, loss not"),
    R("continuation", False, "beta", check=continuation_off, doc="β fixed at 1"),
    R("beta_schedule", "epoch", "beta", check=hashnet_epoch_beta, doc="β by epoch"),
    R("beta_step", 100, "beta", check=hashnet_beta, doc="β step (iterations)"),
    R("beta_gamma", 0.01, "beta", check=hashnet_beta, doc="β gamma"),
    R("beta_power", 1.0, "beta", check=hashnet_beta, doc="β power"),
    R("beta_epoch_step", 10, "beta", context={"beta_schedule": "epoch"}, check=hashnet_epoch_beta,
      doc="β epoch step (context beta_schedule epoch)"),
]

DHT = [
    R("hidden_dims", [32], "network optim1 optim2 loss1 loss2 embed", may="codes labels",
      doc="trunk fc layers"),
    R("dropout", 0.3, "network", check=dropout_is, doc="trunk dropout p (eval-mode losses unchanged)"),
    R("embed_dim", 16, "network optim1 loss1 embed", extra={"dht-th": "layout"},
      doc="Embed width m (dht-th's codes are its top-s)"),
    R("sparsity", 2, "layout solver", may="codes labels loss2", check=solver_penalties,
      doc="s active buckets: code layout and the solver's s"),
    R("loss", "npairs", "loss1 loss2 solver embed", may="codes labels", check=solver_penalties,
      doc="triplet → N-pairs in both stages; default λ 0.3"),
    R("pairwise_penalty", 0.5, "solver", may="codes labels loss2", check=solver_penalties,
      doc="solver λ (global)"),
    R("metric_margin", 0.1, "loss1", check=dht_loss1, doc="stage-1 triplet margin"),
    R("npairs_reg", 0.1, "loss1", context={"loss": "npairs"}, check=dht_loss1,
      doc="stage-1 N-pairs regulariser (context npairs)"),
    R("weight_decay", 1e-3, "optim1", check=dht_stage1, doc="stage-1 decay of trunk + Embed weights"),
    R("backbone_weight_decay", 1e-3, "optim1", check=dht_stage1, doc="stage-1 decay of the backbone's weights"),
    R("lr", 0.01, "optim1 optim2", check=dht_both_stages, doc="stage-2 Hash lr (and stage 1 when stage1_lr null)"),
    R("stage1_lr", 0.002, "optim1", check=dht_stage1, doc="stage-1 lr of every group"),
    R("trunk_lr_mult", 0.5, "optim2", check=dht_stage2, doc="stage-2 trunk lr = lr × mult"),
    R("lr_decay_rate", 0.5, "schedule1 schedule2", context={"lr_decay_steps": 50}, check=dht_decay,
      doc="stair factor (context lr_decay_steps 50)"),
    R("lr_decay_steps", 50, "schedule1 schedule2", check=dht_decay, doc="stair length"),
    R("lr_schedule", "cosine", "schedule1 schedule2", doc="both stages' schedule"),
    R("warmup_steps", 10, "schedule1 schedule2", check=warmup_check("schedule1"), doc="both stages' warm-up"),
    R("hash_margin", 0.5, "loss2", check=dht_loss2, doc="stage-2 code-masked triplet margin"),
    R("hash_npairs_reg", 0.1, "loss2", context={"loss": "npairs"}, check=dht_loss2, doc="stage-2 N-pairs regulariser"),
    R("stage1_fraction", 0.25, "stages", check=dht_stages, doc="stage of each epoch"),
    R("two_pass", True, "passes", check=two_passes, doc="forward passes per stage-2 step"),
    R("rerank", "hash", "embed", doc="re-ranking representation"),
]

CASCADE = DHT + [
    R("levels", 3, "network layout optim2 solver codes labels loss2", check=cascade_levels,
      doc="L levels: L·d hash outputs, L solver calls"),
    R("sibling_penalty", 5.0, "solver", may="codes labels loss2", check=solver_penalties,
      doc="λ_group of the grouped solver calls only"),
    R("labels", "static", "labels", may="loss2", check=dht_loss2, doc="labels of the masked loss"),
]

DRQ = [
    R("codebook_size", 16, "network layout init loss optim", check=drq_layout, doc="K: layout and codebook"),
    R("n_steps", 4, "network layout init loss optim", check=drq_layout, doc="M steps: layout, scales"),
    R("feature_dim", 48, "network layout init loss grad optim", doc="quantised feature width D"),
    R("hidden_dims", [32], "network init loss grad optim", doc="head fc layers"),
    R("dropout", 0.3, "network", check=dropout_is, doc="dropout p (eval-mode losses unchanged)"),
    R("class_vectors", [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 1.0], [1.0, 1.0, 0.0]],
      "network init loss grad optim", doc="semantic targets (constructor keyword)"),
    R("triplet_margin", 1.0, "loss", check=drq_loss, may="grad",
      doc="triplet margin (the gradient only where the hinge's active set moves)"),
    R("semantic_weight", 0.5, "loss", check=drq_loss, doc="ℓ_s weight (z9 path, not the quantised feature's gradient)"),
    R("triplet_weight", 0.5, "loss grad", check=drq_loss, doc="ℓ_t weight"),
    R("tau", 0.5, "loss", check=drq_loss, doc="codebook objective τ (stages 2-3)"),
    R("mu", 0.5, "loss", check=drq_loss, doc="codebook objective μ"),
    R("nu", 0.5, "loss", check=drq_loss, doc="codebook objective ν"),
    R("encoder_optimizer", "adam", "optim", check=drq_groups, doc="encoder SGD → Adam"),
    R("lr", 0.05, "optim", check=drq_groups, doc="encoder groups' lr"),
    R("momentum", 0.5, "optim", check=drq_groups, doc="encoder momentum"),
    R("lr_multipliers", {"head_weight": 2.0}, "optim", check=drq_groups, doc="encoder group multipliers"),
    R("weight_decay", 1e-3, "optim", check=drq_groups, doc="encoder weights' decay only"),
    R("codebook_lr", 0.05, "optim", check=drq_groups, doc="codebook A and B lr"),
    R("lr_decay_rate", 0.5, "schedule", check=drq_decay, doc="exponential decay rate (all three)"),
    R("lr_decay_steps", 500, "schedule", check=drq_decay, doc="exponential decay length (all three)"),
    R("lr_schedule", "cosine", "schedule", check=drq_decay, doc="encoder schedule; codebooks keep the decay"),
    R("warmup_steps", 10, "schedule",
      check=described("encoder's first step at 1/W; codebooks keep the decay",
        lambda o, c, m=None: (warmup_check("schedule")(o, c), drq_decay(o, c))),
      doc="encoder warm-up; codebooks keep the decay"),
    R("init_std", 0.1, "init loss", doc="codebook and w init σ"),
    R("schedule_epochs", 16, "stages", check=drq_stages, doc="E of the stage schedule"),
    R("stage_fractions", [0.25, 0.5], "stages", check=drq_stages, doc="stage boundaries"),
    R("skip_boundary_epochs", True, "stages", check=drq_stages, doc="boundary epochs skipped"),
    R("end_to_end", True, "grad", doc="codebook losses reach the feature's gradient"),
    R("selection", "any_epoch", "stages", check=drq_selection, doc="selectable epochs"),
]

CLOSED_FORM = {"itq": [R("n_iter", 5, "fitted", may="codes", doc="ITQ rotation iterations")],
               "rq": [R("max_beam_size", 1, "codes", may="fitted", doc="faiss beam width")]}

#: harness rows: run through benchmark.runner with a non-frozen digits model (context frozen false)
HARNESS_CONTEXT = {"frozen": False}
HARNESS = [
    R("epochs", 3, "fit.epochs", check=field_is("fit.epochs", 3), doc="Trainer max_epochs"),
    R("batch_size", 512, "train_loader eval_loaders", check=batch_sizes(512),
      extra=dict.fromkeys(("hashnet", "drq"), "train_batch"),
      doc="training loader batch (random sampler: the batches; class-balanced: classes × images), "
          "evaluation loaders max(batch_size, 256)"),
    R("backbone", "small-cnn", "build fit.method_backbone", may="batchnorm", check=backbone_is("small-cnn"),
      doc="backbone built for the method"),
    R("frozen", True, "build batchnorm train_loader eval_loaders fit.method_backbone train_batch",
      check=backbone_is("identity"), doc="features once + identity backbone"),
    R("pretrained", True, "build",
      check=described("the method's backbone is built with pretrained = the value",
        lambda o, c, m=None: o["build"][-1][1] == c["pretrained"] or pytest.fail(str(o["build"]))),
      doc="build_backbone(pretrained=)"),
    R("batchnorm", "frozen", "batchnorm", check=field_is("batchnorm", ("frozen", "frozen")),
      doc="Backbone.set_batchnorm policy"),
    R("head_warmup_epochs", 2, "fit.head_warmup_epochs", check=field_is("fit.head_warmup_epochs", 2),
      doc="fit(head_warmup_epochs=)"),
    R("image_size", 16, "build train_batch",
      check=described('the training batches have side 16',
        lambda o, c, m=None: o["train_batch"][2][-1] == 16 or pytest.fail(str(o))),
      doc="build_backbone(image_size=) and the batches' side"),
    R("augment", "crop", "train_loader",
      check=described("the training items' augmentation mode is crop",
        lambda o, c, m=None: o["train_loader"][0][0][1] == "crop" or pytest.fail(str(o))),
      doc="training items' augmentation mode"),
    R("pipeline", "per_item", "train_loader eval_loaders",

        check=described('the training items are ImageItems',
          lambda o, c, m=None: o["train_loader"][0][0][0] == "ImageItems" or pytest.fail(str(o))),
        doc="ImageBatches → ImageItems"),
    R("num_workers", 1, "train_loader eval_loaders", context={"pipeline": "per_item"}, check=loader_arg(7, 1),
      doc="DataLoader workers (context pipeline per_item: the batched one runs in-process)"),
    R("precision", "bf16-mixed", "fit.precision", check=field_is("fit.precision", "bf16-mixed"),
      doc="Trainer precision"),
    R("channels_last", True, "layout train_loader eval_loaders", check=field_is("layout", (True, False)),
      doc="set_layout + batches' memory format"),
    R("compile", True, "layout", check=field_is("layout", (False, True)), doc="set_layout(compile=)"),
    R("sampler", "other", "train_loader train_batch", doc="random ↔ class_balanced: the first batch"),
    R("classes_per_batch", 5, "train_loader train_batch", context={"sampler": "class_balanced"},

        check=described('first batch: 5 classes × images_per_class items',
          lambda o, c, m=None: o["train_batch"][:2] == (5 * c["images_per_class"], 5) or pytest.fail(str(o["train_batch"]))),
        doc="classes in a class-balanced batch (context class_balanced)"),
    R("images_per_class", 4, "train_loader train_batch", context={"sampler": "class_balanced"},

        check=described('first batch: classes × 4 items',
          lambda o, c, m=None: o["train_batch"][0] == 4 * min(c["classes_per_batch"] or 10, 10) or pytest.fail(str(o["train_batch"]))),
        doc="items per class in a class-balanced batch (context class_balanced)"),
    R("map_at", 100, "map_at", check=field_is("map_at", (100, 100)), doc="mAP cutoff R"),
]

TABLE: dict[str, dict[str, Row]] = {
    "hashnet": {r.key: r for r in HASHNET}, "dht": {r.key: r for r in DHT}, "dht-th": {r.key: r for r in DHT},
    "dht-vq": {r.key: r for r in DHT}, "cascade-dht": {r.key: r for r in CASCADE}, "drq": {r.key: r for r in DRQ},
    **{m: {r.key: r for r in rows} for m, rows in CLOSED_FORM.items()}}
HARNESS_ROWS = {r.key: r for r in HARNESS}


def constructor_keys(method: str) -> set[str]:
    """Keyword arguments of the method's constructor (and its bases') beyond bits/n_classes/backbone."""
    keys = set()
    for cls in get_method(method).__mro__:
        if "__init__" in vars(cls) and cls.__module__.startswith("hashbench.methods."):
            keys |= {p.name for p in inspect.signature(cls.__init__).parameters.values()
                     if p.kind == p.KEYWORD_ONLY}
    return keys - {"bits", "n_classes", "backbone"}


def keys_of(method: str) -> set[str]:
    """The keys a method's row set must cover: its YAML's, its constructor's, and for a
    trained method every harness key."""
    keys = W.yaml_keys(method) | constructor_keys(method)
    if get_method(method).requires_training:
        keys |= set(HARNESS_KEYS)
    return keys


def row_for(method: str, key: str) -> Row | None:
    return HARNESS_ROWS.get(key) if key in HARNESS_KEYS else TABLE.get(method, {}).get(key)


CASES = [(m, k) for m in W.config_methods() for k in sorted(keys_of(m))]


def test_every_key_has_a_row():
    """A key in any shipped YAML (or a constructor keyword, or a harness key) without a row fails."""
    missing = [f"{m}: {k}" for m, k in CASES if row_for(m, k) is None]
    assert not missing, "configuration keys without a wiring row: " + ", ".join(missing)


# --------------------------------------------------------------------------- running a row
_CACHE: dict = {}


def observe(kind: str, method: str, overrides: dict, loaded=None, tmp=None) -> dict[str, Any]:
    """Observables of one configuration (cached per configuration)."""
    key = (kind, method, repr(sorted(overrides.items())))
    if key not in _CACHE:
        if kind == "method":
            _CACHE[key] = W.method_observables(method, overrides)
        else:
            until = "map" if "map_at" in overrides else "fit"
            rec = W.harness_probe(method, overrides, loaded, tmp, until=until)
            _CACHE[key] = flatten_probe(rec)
    return _CACHE[key]


def flatten_probe(rec: dict) -> dict[str, Any]:
    """The probe's record as named observables (the loaders made before training only)."""
    loaders = rec["loaders"][:rec.get("loaders_at_fit", len(rec["loaders"]))]
    out = {"build": rec["build"], "batchnorm": rec.get("batchnorm"), "layout": rec.get("layout"),
           "train_loader": [x for x in loaders if x[2]],
           "eval_loaders": [x for x in loaders if not x[2]], "map_at": rec.get("map_at"),
           "train_batch": rec.get("train_batch")}
    out.update({f"fit.{k}": v for k, v in (rec.get("fit") or {}).items()})
    return out


def changed_value(row: Row, base_cfg: dict):
    """The row's value; for ``sampler`` the other of random / class_balanced, for ``pretrained``
    the other boolean."""
    if row.key == "sampler":
        return "random" if base_cfg["sampler"] == "class_balanced" else "class_balanced"
    if row.key == "pretrained":
        return not base_cfg["pretrained"]
    return row.value


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: the tiny tensors here are many times faster so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from hashbench.benchmark import runner

    return runner.load_data("digits", None, 0, None), tmp_path_factory.mktemp("wiring-runs")


@pytest.mark.parametrize("method,key", CASES, ids=[f"{m}:{k}" for m, k in CASES])
def test_key_reaches_what_it_names(method, key, digits):
    """Changing ``key`` changes exactly the observables its row names, and passes its check."""
    row = row_for(method, key)
    if row is None:
        pytest.fail(f"{method}: key {key!r} has no wiring row")
    harness = key in HARNESS_KEYS
    kind = "harness" if harness else "method"
    context = {**(HARNESS_CONTEXT if harness else {}), **row.context}
    base_cfg = W.resolved(method, context)
    value = changed_value(row, base_cfg)
    assert base_cfg.get(key, inspect.Parameter.empty) != value, f"{method}.{key}: the row's value is the baseline's"
    loaded, tmp = digits
    base = observe(kind, method, context, loaded, tmp)
    new = observe(kind, method, {**context, key: value}, loaded, tmp)
    changed = {name for name in base if base[name] != new[name]}
    must = row.changes | row.extra.get(method, frozenset())
    if harness and not get_method(method).model_selection:
        must = must - {"eval_loaders"}          # no validation loaders are built without selection
    assert must <= changed, f"{method}.{key}={value!r} left unchanged: {sorted(must - changed)}"
    assert changed <= must | row.may, f"{method}.{key}={value!r} also changed: {sorted(changed - must - row.may)}"
    if row.check is not None:
        row.check(new, W.resolved(method, {**context, key: value}), method)
