"""BCE, weighted BCE and their gradients against finetuning-theory.md §2, §3, §5."""

import math

import pytest
import torch

from medssl.errors import MedsslError
from medssl.losses import bce, class_weights, weighted_bce


def _bce_formula(z, y, w0=1.0, w1=1.0):
    """-(1/N) sum [w1 y log s(z) + w0 (1-y) log(1-s(z))], written out per sample."""
    total = 0.0
    for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
        p = 1 / (1 + math.exp(-zi))
        total += -(w1 * yi * math.log(p) + w0 * (1 - yi) * math.log(1 - p))
    return total / len(z)


def test_bce_matches_formula():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(50, generator=g) > 0.3).double()
    assert bce(z, y).item() == pytest.approx(_bce_formula(z, y), rel=1e-12)


def test_bce_analytic_values():
    # z = 0 -> p = 1/2 -> loss = log 2 whatever the label.
    assert bce(torch.zeros(4), torch.tensor([0.0, 1, 0, 1])).item() == pytest.approx(math.log(2))
    # Large correct logits -> loss near 0, stable (no inf/nan) at |z| = 100.
    z = torch.tensor([100.0, -100.0])
    assert bce(z, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.0, abs=1e-30)
    assert bce(z, torch.tensor([0.0, 1.0])).item() == pytest.approx(100.0)


def test_bce_gradient_is_sigmoid_minus_label():
    """§3: d l / d z = s(z) - y per sample (the mean divides by N)."""
    z = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1, 1, 0, 1], dtype=torch.float64)
    bce(z, y).backward()
    expected = (torch.sigmoid(z.detach()) - y) / len(z)
    torch.testing.assert_close(z.grad, expected)


def test_head_gradients():
    """§3: dl/dw = (s(z) - y) h, dl/db = s(z) - y for z = w^T h + b (single sample)."""
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 1).double()
    h = torch.randn(1, 8, dtype=torch.float64)
    y = torch.tensor([1.0], dtype=torch.float64)
    z = head(h).squeeze(-1)
    bce(z, y).backward()
    r = torch.sigmoid(z.detach()) - y
    torch.testing.assert_close(head.weight.grad, r.view(1, 1) * h)
    torch.testing.assert_close(head.bias.grad, r)


def test_class_weights_spec_and_normalised():
    y = torch.tensor([1.0] * 30 + [0.0] * 10)  # N1 = 30, N0 = 10
    w0, w1 = class_weights(y, normalize=False)
    assert (w0, w1) == (pytest.approx(1 / 10), pytest.approx(1 / 30))
    n0, n1 = class_weights(y)
    assert n1 / n0 == pytest.approx(w1 / w0)  # same ratio as the spec
    assert (30 * n1 + 10 * n0) / 40 == pytest.approx(1.0)  # weights average to 1
    with pytest.raises(MedsslError):
        class_weights(torch.ones(5))


def test_weighted_bce_matches_formula_and_balances_classes():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(40, generator=g, dtype=torch.float64)
    y = torch.tensor([1.0] * 30 + [0.0] * 10, dtype=torch.float64)
    w0, w1 = class_weights(y, normalize=False)
    assert weighted_bce(z, y, w0, w1).item() == pytest.approx(_bce_formula(z, y, w0, w1))
    # Normalised weights: L_w = mean over classes of the per-class mean BCE.
    n0, n1 = class_weights(y)
    per_class = 0.5 * (bce(z[y == 1], y[y == 1]) + bce(z[y == 0], y[y == 0]))
    assert weighted_bce(z, y, n0, n1).item() == pytest.approx(per_class.item())
    # Equal weights of one give plain BCE.
    assert weighted_bce(z, y, 1.0, 1.0).item() == pytest.approx(bce(z, y).item())
