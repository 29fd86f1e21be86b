"""The run plan: what one method will run on one dataset, resolved and checked in one place.

``hashbench run``, ``hashbench regress``, the sweep file's cells and the runner itself all need the
same first step: resolve the method's config (YAML defaults ← dataset ← variant ← overrides ←
``--epochs``/``--backbone``), split it into harness settings and constructor keyword arguments,
and check every requested code length against the method (``check_bits``). :func:`plan_run`
does it; :meth:`RunPlan.features` resolves the backbone and feature mode a run on loaded data
uses (frozen features of which backbone, at which image size, and the reference features).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from hashbench.benchmark.config import run_config, split_config


@dataclass(frozen=True)
class FeaturePlan:
    """The backbone of a run on one dataset: ``backbone``/``image_size`` as the method uses it,
    ``reference``/``reference_size`` the dataset's default backbone (its features serve the speed
    rows), ``frozen`` whether the method trains on cached features of ``backbone``."""

    backbone: str
    image_size: int | None
    reference: str
    reference_size: int | None
    frozen: bool

    @property
    def same_as_reference(self) -> bool:
        """Whether the method's features are the reference features."""
        return (self.backbone, self.image_size) == (self.reference, self.reference_size)

    def feature_files(self) -> list[tuple[str, int | None]]:
        """(backbone, image size) of each frozen feature file a run reads, the reference first."""
        ref = (self.reference, self.reference_size)
        return [ref] + ([(self.backbone, self.image_size)] if not self.same_as_reference else [])


@dataclass(frozen=True)
class RunPlan:
    """One method on one dataset: ``config`` (the resolved run config, whose hash is part of the
    run identity), split into ``harness`` settings and the constructor's ``hparams``; ``lengths``:
    the requested code lengths the method accepts, in request order; ``rejected``: each refused
    length with the method's error (:class:`~hashbench.methods.base.UnsupportedBitsError`)."""

    method: str
    dataset: str
    cls: type
    config: dict[str, Any]
    harness: dict[str, Any]
    hparams: dict[str, Any]
    lengths: tuple[int, ...]
    rejected: dict[int, ValueError] = field(default_factory=dict)

    def require(self, bits: int) -> None:
        """Raise the method's error when ``bits`` was refused."""
        if int(bits) in self.rejected:
            raise self.rejected[int(bits)]

    def training_lengths(self) -> list[int]:
        """The lengths to train: all accepted ones, or only the longest for a method whose
        shorter codes are prefixes of its longest (``prefix_codes``: one training evaluates all)."""
        if self.cls.prefix_codes and self.lengths:
            return [max(self.lengths)]
        return list(self.lengths)

    def features(self, data) -> FeaturePlan:
        """The backbone and feature mode of a run of this plan on loaded ``data``."""
        from hashbench.benchmark.data import default_backbone

        ref_name, ref_size = default_backbone(data)
        name = self.harness["backbone"] or ref_name
        size = self.harness["image_size"] if self.harness["backbone"] else (self.harness["image_size"] or ref_size)
        frozen = bool(self.harness["frozen"]) or not self.cls.requires_training
        return FeaturePlan(name, size, ref_name, ref_size, frozen)


def plan_run(method: str, dataset: str, bits: Iterable[int] = (), variant: str | None = None,
             overrides: dict[str, Any] | None = None, epochs: int | None = None,
             backbone: str | None = None) -> RunPlan:
    """Resolve ``method``'s run config on ``dataset`` and check each of ``bits``
    (:func:`~hashbench.benchmark.config.run_config`; an unknown method or variant raises)."""
    from hashbench import methods as method_registry

    cls = method_registry.get_method(method)
    cfg = run_config(method, dataset, variant, overrides, epochs, backbone)
    harness, hparams = split_config(cfg)
    lengths, rejected = [], {}
    for b in bits:
        try:
            cls.check_bits(b, **hparams)
            lengths.append(int(b))
        except ValueError as err:
            rejected[int(b)] = err
    return RunPlan(method, dataset, cls, cfg, harness, hparams, tuple(lengths), rejected)
