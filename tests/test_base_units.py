"""The defaults of the method interface (``methods/base.py``, issue 24's mutation testing): what a
subclass inherits when it overrides nothing, and the positive-bits check."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.methods.backbones import build_backbone
from hashbench.methods.base import BINARY, CODE_KEYS, HashingMethod, UnsupportedBitsError


class Bare(HashingMethod):
    name = "bare"
    code_type = BINARY


def _bare(bits=5, **hp):
    return Bare(bits=bits, n_classes=3, backbone=build_backbone("identity", in_dim=4), **hp)


def test_bits_must_be_positive_and_the_message_names_the_method():
    for bad in (0, -3):
        with pytest.raises(UnsupportedBitsError, match=f"bare: bits must be a positive integer, got {bad}"):
            _bare(bits=bad)
    Bare.check_bits(1)
    m = _bare(bits=5, foo=1.5)
    assert (m.bits, m.n_classes, dict(m.hparams)) == (5, 3, {"foo": 1.5})


def test_inherited_defaults():
    m = _bare(bits=5)
    assert m.evaluation_lengths() == {5: {}}
    assert m.code_state() == {}
    assert m.selectable_epoch(0) is True and m.selectable_epoch(7) is True
    assert m.on_training_data(np.ones((2, 3))) is None and m.fit_after_training([], seed=0) is None
    for call in (lambda: m.embed(torch.zeros(1, 4)), lambda: m.encode(torch.zeros(1, 4))):
        with pytest.raises(NotImplementedError):
            call()
    with pytest.raises(NotImplementedError, match="bare is trained by the Lightning Trainer"):
        m.fit_closed_form(np.zeros((2, 4)), np.zeros((2, 3)), seed=0)
    assert CODE_KEYS[BINARY] == ("bits",)
    assert Bare.requires_training and not Bare.prefix_codes and Bare.model_selection


def test_default_stage_is_one_and_forward_is_the_embedding():
    class Doubling(Bare):
        def embed(self, x):
            return 2 * x

    m = Doubling(bits=5, n_classes=3, backbone=build_backbone("identity", in_dim=4))
    assert m.stage(0) == 1 and m.stage(9) == 1
    x = torch.arange(8.0).reshape(2, 4)
    assert torch.equal(m(x), 2 * x)
