"""BCE, weighted BCE and their gradients against finetuning-theory.md §2, §3, §5."""

import math

import pytest
import torch

from medssl.errors import MedsslError
from medssl.losses import bce, class_weights, nt_xent, weighted_bce


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


def _nt_xent_loops(z1, z2, tau):
    """Eq. (1)-(2) written out with loops over anchors and candidates."""
    z = torch.cat([z1, z2]).double()
    z = z / z.norm(dim=1, keepdim=True)
    n = len(z)
    b = n // 2
    total = 0.0
    for k in range(n):
        p = k + b if k < b else k - b
        num = math.exp(float(z[k] @ z[p]) / tau)
        den = sum(math.exp(float(z[k] @ z[m]) / tau) for m in range(n) if m != k)
        total += -math.log(num / den)
    return total / n


@pytest.mark.parametrize("b,k,tau", [(1, 4, 0.5), (3, 5, 0.1), (8, 16, 1.0), (5, 3, 0.07)])
def test_nt_xent_matches_loops(b, k, tau):
    g = torch.Generator().manual_seed(b * 100 + k)
    z1 = torch.randn(b, k, generator=g, dtype=torch.float64)
    z2 = torch.randn(b, k, generator=g, dtype=torch.float64)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(_nt_xent_loops(z1, z2, tau), rel=1e-5)


def test_nt_xent_analytic_cases():
    # All 2B embeddings collinear: every similarity is 1 -> l(k) = log(2B - 1).
    b = 6
    z = torch.ones(b, 4)
    assert nt_xent(z, z, 0.3).item() == pytest.approx(math.log(2 * b - 1), rel=1e-6)
    # B = 1: the only candidate is the positive -> loss 0 for any views.
    z1, z2 = torch.randn(1, 8), torch.randn(1, 8)
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(0.0, abs=1e-6)
    # Identical views of orthogonal images: s(k, p(k)) = 1, negatives 0.
    b, tau = 4, 0.5
    eye = torch.eye(b)
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (2 * b - 2)))
    assert nt_xent(eye, eye, tau).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_symmetric_scale_invariant_and_finite_grads():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(16, 32, generator=g, requires_grad=True)
    z2 = torch.randn(16, 32, generator=g, requires_grad=True)
    loss = nt_xent(z1, z2, 0.01)  # small tau: logits up to 100
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    with torch.no_grad():
        assert nt_xent(z2, z1, 0.2).item() == pytest.approx(nt_xent(z1, z2, 0.2).item(), rel=1e-6)
        assert nt_xent(3 * z1, 0.5 * z2, 0.2).item() == pytest.approx(
            nt_xent(z1, z2, 0.2).item(), rel=1e-5
        )  # L2-normalised embeddings
        perm = torch.randperm(16, generator=g)  # same permutation of both views: same loss
        assert nt_xent(z1[perm], z2[perm], 0.2).item() == pytest.approx(
            nt_xent(z1, z2, 0.2).item(), rel=1e-5
        )
    with pytest.raises(MedsslError):
        nt_xent(z1, z2, 0.0)
    with pytest.raises(MedsslError):
        nt_xent(z1, z2[:3], 0.5)


def test_nt_xent_matches_lightly_oracle(monkeypatch):
    """An independent implementation: lightly's NTXentLoss (test-only dependency)."""
    monkeypatch.setenv("LIGHTLY_DID_VERSION_CHECK", "True")  # no network check on import
    from lightly.loss import NTXentLoss

    g = torch.Generator().manual_seed(3)
    for b, tau in ((2, 0.1), (16, 0.5), (64, 0.2)):
        z1 = torch.randn(b, 32, generator=g)
        z2 = torch.randn(b, 32, generator=g)
        expected = NTXentLoss(temperature=tau)(z1, z2)
        torch.testing.assert_close(nt_xent(z1, z2, tau), expected, rtol=1e-5, atol=1e-6)
