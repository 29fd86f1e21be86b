"""Gradient check of HashNet's loss on a small random batch (float64), for the resolving note.

Prints: torch.autograd.gradcheck (finite differences vs autograd) with the analytic loss; the
largest |autograd − analytic| where the analytic gradient is ∂L/∂h1 = α·G·h2, ∂L/∂h2 = α·Gᵀ·h1,
G = w(σ(t) − s)/Σw; and, with Caffe's continuous similarity / gradient scale, that the forward
value is unchanged while the backward equals the analytic gradient times the Caffe factors.

Usage: python scripts/hashnet_gradcheck.py [--bits 48] [--n 16] [--seed 0]
"""
from __future__ import annotations

import argparse

import torch

from hashbench.methods.hashnet import continuous_similarity_factor, default_alpha, pairwise_likelihood_loss


def analytic(h1, h2, y1, y2, alpha, class_num, factor=1.0):
    """∂L/∂h1, ∂L/∂h2 of the class_num-weighted loss (no threshold branch: |t| ≤ 10), times factor."""
    s = ((y1 @ y2.T) > 0).double()
    t = alpha * h1 @ h2.T
    w = torch.where(s > 0, torch.full_like(s, class_num), torch.ones_like(s))
    g = factor * w * (torch.sigmoid(t) - s) / w.sum()
    return alpha * g @ h2, alpha * g.T @ h1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, default=48)
    ap.add_argument("--n", type=int, default=16, help="items per stream")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(args.seed)
    h1 = torch.tanh(torch.randn(args.n, args.bits, generator=g, dtype=torch.float64)).requires_grad_()
    h2 = torch.tanh(torch.randn(args.n, args.bits, generator=g, dtype=torch.float64)).requires_grad_()
    y1 = (torch.rand(args.n, args.classes, generator=g) < 0.2).double()
    y2 = (torch.rand(args.n, args.classes, generator=g) < 0.2).double()
    alpha, class_num = default_alpha(args.bits), 3.0
    kw = dict(alpha=alpha, class_num=class_num)

    ok = torch.autograd.gradcheck(lambda a, b: pairwise_likelihood_loss(a, b, y1, y2, **kw), (h1, h2))
    print(f"K={args.bits} α={alpha:.4f} pairs={args.n}x{args.n} similar={int(((y1 @ y2.T) > 0).sum())}")
    print(f"gradcheck (finite differences vs autograd, float64): {ok}")
    a1, a2 = analytic(h1.detach(), h2.detach(), y1, y2, alpha, class_num)
    g1, g2 = torch.autograd.grad(pairwise_likelihood_loss(h1, h2, y1, y2, **kw), (h1, h2))
    print(f"max |autograd − analytic|: {max((g1 - a1).abs().max().item(), (g2 - a2).abs().max().item()):.2e}")

    plain = pairwise_likelihood_loss(h1, h2, y1, y2, **kw)
    caffe = pairwise_likelihood_loss(h1, h2, y1, y2, continuous_similarity=True, grad_scale=2 / alpha, **kw)
    factor = continuous_similarity_factor(y1, y2) * (2 / alpha)
    c1, c2 = torch.autograd.grad(caffe, (h1, h2))
    b1, b2 = analytic(h1.detach(), h2.detach(), y1, y2, alpha, class_num, factor=factor)
    diff = max((c1 - b1).abs().max().item(), (c2 - b2).abs().max().item())
    fd_ok = torch.autograd.gradcheck(
        lambda a, b: pairwise_likelihood_loss(a, b, y1, y2, continuous_similarity=True, **kw), (h1, h2),
        raise_exception=False)
    print(f"Caffe backward (continuous similarity, ×2/α): forward |Δ| = {abs(caffe.item() - plain.item()):.1e}; "
          f"max |autograd − analytic·factor| = {diff:.2e}; gradcheck now {fd_ok} (factor in the backward only)")

if __name__ == "__main__":
    main()
