"""Mixed precision leaves the exact parts exact: DRQ's codebook assignment, the flow solver's
unaries, and the codes (hence the Hamming distances) computed for evaluation — checked under
CPU bf16 autocast, which lowers the same matrix products to bf16 as CUDA's does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.benchmark.config import HARNESS_KEYS, resolve_config
from hashbench.benchmark.train import encode_batches, set_layout
from hashbench.methods import get_method
from hashbench.methods.backbones import build_backbone
from hashbench.methods.drq import recurrent_quantize

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def test_bf16_autocast_would_change_the_assignment_this_test_checks():
    """The premise: a bf16 cosine matrix picks other codewords than the float32 one."""
    g = torch.Generator().manual_seed(0)
    x, books = torch.randn(512, 64, generator=g), torch.randn(256, 64, generator=g)
    exact = (x @ books.T).argmax(1)
    with torch.autocast(**BF16):
        low = (x @ books.T).argmax(1)
    assert (exact != low).any()


def test_drq_assignment_is_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    x, codebook, scales = torch.randn(512, 64, generator=g), torch.randn(256, 64, generator=g), torch.rand(4, generator=g) + 0.5
    ref = recurrent_quantize(x, codebook, scales)
    with torch.autocast(**BF16):
        q = recurrent_quantize(x.bfloat16(), codebook, scales)  # a bf16 network output, too
        q32 = recurrent_quantize(x, codebook, scales)
    assert torch.equal(q32.indices, ref.indices) and torch.equal(q32.hard, ref.hard) and torch.equal(q32.soft, ref.soft)
    assert q.soft.dtype == torch.float32
    # from the bf16-rounded output, the assignment is the float32 assignment of those values
    assert torch.equal(q.indices, recurrent_quantize(x.bfloat16().float(), codebook, scales).indices)


@pytest.mark.parametrize("name", ["dht", "cascade-dht"])
def test_flow_unaries_are_float32_under_autocast(name):
    cls = get_method(name)
    torch.manual_seed(0)
    m = cls(bits=16, n_classes=10, backbone=build_backbone("identity", in_dim=64), hidden_dims=[32], sparsity=1)
    f = m.hash_output(torch.randn(80, 64)).detach().bfloat16()   # a bf16 network output
    ids = torch.arange(10).repeat_interleave(8)
    ref, inv_ref = m.unaries(f.float(), ids)
    with torch.autocast(**BF16):
        u, inv = m.unaries(f, ids)
    assert u.dtype == np.float64
    np.testing.assert_array_equal(u, ref)
    assert torch.equal(inv, inv_ref)


@pytest.mark.parametrize("name, bits", [("hashnet", 32), ("drq", 32), ("dht", 16)])
def test_codes_for_evaluation_do_not_depend_on_an_active_autocast(name, bits):
    torch.manual_seed(0)
    cfg = {k: v for k, v in resolve_config(name, "digits").items() if k not in HARNESS_KEYS}
    m = get_method(name)(bits=bits, n_classes=10, backbone=build_backbone("identity", in_dim=64), **cfg)
    x = torch.randn(256, 64)
    loader = [(x[i:i + 64], None) for i in range(0, 256, 64)]
    ref_codes, ref_emb = encode_batches(m, loader)
    with torch.autocast(**BF16):
        codes, emb = encode_batches(m, loader)
    for k in ref_codes:
        np.testing.assert_array_equal(codes[k], ref_codes[k])
    np.testing.assert_array_equal(emb, ref_emb)


def test_channels_last_layout_and_compile_flag_keep_the_parameters():
    m = build_backbone("small-cnn", pretrained=False, in_channels=3, image_size=None)
    names = [n for n, _ in m.named_parameters()]
    holder = torch.nn.Module()
    holder.backbone = m
    set_layout(holder, channels_last=True, compile=False)
    conv = next(p for p in m.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert [n for n, _ in m.named_parameters()] == names
