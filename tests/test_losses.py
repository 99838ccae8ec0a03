"""BCE, weighted BCE and their gradients against docs/math.md §2, §3, §5; NT-Xent and
the self-supervised losses (InfoNCE, negative cosine, Barlow Twins, VICReg, DINO) against loop
references written from their papers, analytic cases and lightly's implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from medssl.errors import MedsslError
from medssl.losses import (
    barlow_twins,
    bce,
    class_weights,
    dino,
    dino_center,
    info_nce,
    negative_cosine,
    nt_xent,
    vicreg,
    weighted_bce,
)


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


def _lightly_loss(monkeypatch):
    """lightly.loss (test-only dependency), imported without its network version check."""
    monkeypatch.setenv("LIGHTLY_DID_VERSION_CHECK", "True")
    import lightly.loss

    return lightly.loss


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


# ---- InfoNCE (MoCo) ------------------------------------------------------------------------


def _info_nce_loops(q, k, queue, tau):
    """MoCo eq. (1) per query: -log exp(q.k/tau) / (exp(q.k/tau) + sum_j exp(q.n_j/tau))."""
    negatives = [_unit(n) for n in queue.tolist()]
    total = 0.0
    for qi, ki in zip(q.tolist(), k.tolist(), strict=True):
        qi, ki = _unit(qi), _unit(ki)
        pos = math.exp(_dot(qi, ki) / tau)
        den = pos + sum(math.exp(_dot(qi, n) / tau) for n in negatives)
        total += -math.log(pos / den)
    return total / len(q)


@pytest.mark.parametrize("b,d,k,tau", [(1, 4, 3, 0.2), (4, 5, 0, 0.2), (6, 8, 10, 0.07)])
def test_info_nce_matches_loops(b, d, k, tau):
    g = torch.Generator().manual_seed(b * 100 + k)
    q, key = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    queue = torch.randn(k, d, generator=g)
    expected = _info_nce_loops(q, key, queue, tau)
    assert info_nce(q, key, queue, tau).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_info_nce_analytic_cases():
    g = torch.Generator().manual_seed(0)
    q, key = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    # Empty queue: only the positive column, cross-entropy exactly 0 whatever q and k.
    assert info_nce(q, key, torch.empty(0, 8)).item() == 0.0
    # q = k, queue orthogonal to every q: logits [1/tau, 0, ..., 0] -> log(1 + K exp(-1/tau)).
    tau, eye = 0.5, torch.eye(6)
    q, queue = eye[:2], eye[2:]  # K = 4
    expected = math.log(1 + 4 * math.exp(-1 / tau))
    assert info_nce(q, q, queue, tau).item() == pytest.approx(expected, rel=1e-6)
    # Every negative equal to the positive: all logits equal -> log(1 + K).
    queue = q[:1].repeat(7, 1)
    assert info_nce(q[:1], q[:1], queue, tau).item() == pytest.approx(math.log(8), rel=1e-6)


def test_info_nce_invariances_and_gradients():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(8, 16, generator=g, requires_grad=True)
    key = torch.randn(8, 16, generator=g, requires_grad=True)
    queue = torch.randn(32, 16, generator=g, requires_grad=True)
    loss = info_nce(q, key, queue, 0.05)
    loss.backward()
    assert torch.isfinite(q.grad).all() and q.grad.abs().sum() > 0
    assert key.grad is None and queue.grad is None  # keys and queue are constants
    with torch.no_grad():
        ref = info_nce(q, key, queue, 0.2).item()
        # L2-normalised inside; the order of the queue does not matter.
        assert info_nce(3 * q, 0.5 * key, 2 * queue, 0.2).item() == pytest.approx(ref, rel=1e-5)
        perm = torch.randperm(32, generator=g)
        assert info_nce(q, key, queue[perm], 0.2).item() == pytest.approx(ref, rel=1e-5)


def test_info_nce_bad_arguments():
    q = torch.randn(4, 8)
    with pytest.raises(MedsslError):
        info_nce(q, q, torch.randn(3, 8), 0.0)
    with pytest.raises(MedsslError):
        info_nce(q, q[:3], torch.randn(3, 8))
    with pytest.raises(MedsslError):
        info_nce(q, q, torch.randn(3, 7))
    with pytest.raises(MedsslError):
        info_nce(q, q, torch.randn(8))


def test_info_nce_matches_lightly_oracle(monkeypatch):
    """lightly's NTXentLoss with a memory bank is MoCo's loss: out0 = q, out1 = k, negatives =
    the bank. Differences, none of which changes the value compared here: lightly normalises q
    and k but not the bank (it stores normalised keys), so the bank is given the normalised
    queue; it enqueues k after the lookup only when q requires grad (not here); it does not
    detach k (MoCo's key encoder runs under no_grad anyway)."""
    loss_mod = _lightly_loss(monkeypatch)
    g = torch.Generator().manual_seed(4)
    for b, d, k, tau in ((2, 8, 4, 0.2), (16, 32, 64, 0.07)):
        q, key = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        queue = torch.randn(k, d, generator=g) * 3
        oracle = loss_mod.NTXentLoss(temperature=tau, memory_bank_size=(k, d))
        oracle.memory_bank.bank = F.normalize(queue, dim=1)
        expected = oracle(q, key)
        torch.testing.assert_close(info_nce(q, key, queue, tau), expected, rtol=1e-5, atol=1e-6)


# ---- negative cosine (BYOL / SimSiam) ------------------------------------------------------


def _negative_cosine_loops(p, z):
    """-(1/B) sum_i p_i.z_i / (||p_i|| ||z_i||)."""
    cos = [_dot(_unit(a), _unit(b)) for a, b in zip(p.tolist(), z.tolist(), strict=True)]
    return -sum(cos) / len(cos)


@pytest.mark.parametrize("b,d", [(1, 3), (5, 4), (16, 8)])
def test_negative_cosine_matches_loops(b, d):
    g = torch.Generator().manual_seed(b * 10 + d)
    p, z = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
    expected = _negative_cosine_loops(p, z)
    assert negative_cosine(p, z).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_negative_cosine_analytic_and_scale_invariant():
    g = torch.Generator().manual_seed(0)
    p = torch.randn(6, 10, generator=g)
    assert negative_cosine(p, p).item() == pytest.approx(-1.0, abs=1e-6)
    assert negative_cosine(p, -p).item() == pytest.approx(1.0, abs=1e-6)
    eye = torch.eye(4)
    assert negative_cosine(eye, eye.roll(1, dims=1)).item() == 0.0  # orthogonal pairs
    z = torch.randn(6, 10, generator=g)
    ref = negative_cosine(p, z).item()
    assert negative_cosine(5 * p, 0.1 * z).item() == pytest.approx(ref, rel=1e-5)
    assert -1 <= ref <= 1


def test_negative_cosine_gradient_and_stop_gradient():
    """d/dp_i of -cos(p_i, z_i)/B = -(z_hat - (p_hat.z_hat) p_hat) / (||p_i|| B); z: none."""
    g = torch.Generator().manual_seed(2)
    p = torch.randn(5, 7, generator=g, requires_grad=True)
    z = torch.randn(5, 7, generator=g, requires_grad=True)
    negative_cosine(p, z).backward()
    assert z.grad is None
    p0, z0 = p.detach(), z.detach()
    p_hat, z_hat = F.normalize(p0, dim=1), F.normalize(z0, dim=1)
    cos = (p_hat * z_hat).sum(1, keepdim=True)
    expected = -(z_hat - cos * p_hat) / (p0.norm(dim=1, keepdim=True) * len(p0))
    torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-6)


def test_negative_cosine_bad_arguments():
    with pytest.raises(MedsslError):
        negative_cosine(torch.randn(4, 8), torch.randn(4, 7))
    with pytest.raises(MedsslError):
        negative_cosine(torch.randn(8), torch.randn(8))


def test_negative_cosine_matches_lightly_oracle(monkeypatch):
    """lightly's NegativeCosineSimilarity is -mean cos via F.cosine_similarity (eps 1e-8, which
    only matters for near-zero vectors); it has no stop-gradient (the caller detaches z), so only
    the value is compared."""
    loss_mod = _lightly_loss(monkeypatch)
    g = torch.Generator().manual_seed(5)
    for b, d in ((2, 4), (32, 64)):
        p, z = torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)
        expected = loss_mod.NegativeCosineSimilarity()(p, z)
        torch.testing.assert_close(negative_cosine(p, z), expected, rtol=1e-5, atol=1e-6)


# ---- Barlow Twins --------------------------------------------------------------------------


def _barlow_twins_loops(z1, z2, lambd):
    """Standardise each dimension over the batch (biased var, eps 1e-5), C_ij = sum_b a_bi c_bj
    / B, L = sum_i (1 - C_ii)^2 + lambd sum_{i != j} C_ij^2."""

    def standardise(z):
        rows = z.tolist()
        b, d = len(rows), len(rows[0])
        cols = []
        for j in range(d):
            col = [rows[i][j] for i in range(b)]
            mean = sum(col) / b
            var = sum((x - mean) ** 2 for x in col) / b
            cols.append([(x - mean) / math.sqrt(var + 1e-5) for x in col])
        return cols  # cols[j][i]

    a, c = standardise(z1), standardise(z2)
    b, d = z1.shape
    loss = 0.0
    for i in range(d):
        for j in range(d):
            cij = sum(a[i][n] * c[j][n] for n in range(b)) / b
            loss += (1 - cij) ** 2 if i == j else lambd * cij**2
    return loss


@pytest.mark.parametrize("b,d,lambd", [(2, 3, 5e-3), (5, 4, 0.1), (8, 6, 5e-3), (3, 1, 1.0)])
def test_barlow_twins_matches_loops(b, d, lambd):
    g = torch.Generator().manual_seed(b * 10 + d)
    z1 = torch.randn(b, d, generator=g) * 2 + 1
    z2 = torch.randn(b, d, generator=g)
    expected = _barlow_twins_loops(z1, z2, lambd)
    assert barlow_twins(z1, z2, lambd).item() == pytest.approx(expected, rel=1e-5)


def test_barlow_twins_matches_batchnorm_pseudocode():
    """The paper's Algorithm 1 / official code: c = bn(z1).T @ bn(z2) / B with
    torch.nn.BatchNorm1d(D, affine=False) in training mode."""
    g = torch.Generator().manual_seed(6)
    b, d, lambd = 16, 12, 5e-3
    z1, z2 = torch.randn(b, d, generator=g) * 3 - 1, torch.randn(b, d, generator=g)
    bn = torch.nn.BatchNorm1d(d, affine=False).train()
    c = bn(z1).T @ bn(z2) / b
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    expected = on_diag + lambd * off_diag
    torch.testing.assert_close(barlow_twins(z1, z2, lambd), expected, rtol=1e-5, atol=1e-6)


def test_barlow_twins_analytic_cases():
    c = 1 / (1 + 1e-5)  # correlation of a +-1 column with itself after standardisation (eps)
    # Uncorrelated +-1 columns (mean 0, biased var 1): C = 0 -> loss = D = 1.
    z1 = torch.tensor([[1.0], [1.0], [-1.0], [-1.0]])
    z2 = torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    assert barlow_twins(z1, z2).item() == pytest.approx(1.0, abs=1e-7)
    # Perfectly correlated views with two identical dimensions: C = c * ones(2, 2):
    # on-diagonal term 2 (1 - c)^2 ~ 2e-10, the rest is lambd * 2 c^2 off the diagonal.
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    lambd = 0.1
    expected = 2 * (1 - c) ** 2 + lambd * 2 * c**2
    assert barlow_twins(z, z, lambd).item() == pytest.approx(expected, rel=1e-6)
    # Orthogonal dimensions, identical views: C = c I -> loss ~ 0; anti-correlated: D (1 + c)^2.
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert barlow_twins(h, h).item() == pytest.approx(0.0, abs=1e-6)
    assert barlow_twins(h, -h).item() == pytest.approx(2 * (1 + c) ** 2, rel=1e-6)


def test_barlow_twins_invariances_and_gradients():
    g = torch.Generator().manual_seed(7)
    z1 = torch.randn(12, 6, generator=g, requires_grad=True)
    z2 = torch.randn(12, 6, generator=g, requires_grad=True)
    loss = barlow_twins(z1, z2)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    with torch.no_grad():
        ref = loss.item()
        assert barlow_twins(z2, z1).item() == pytest.approx(ref, rel=1e-5)  # C -> C^T
        perm = torch.randperm(12, generator=g)  # same images in another order
        assert barlow_twins(z1[perm], z2[perm]).item() == pytest.approx(ref, rel=1e-5)
        dims = torch.randperm(6, generator=g)  # C -> P^T C P
        assert barlow_twins(z1[:, dims], z2[:, dims]).item() == pytest.approx(ref, rel=1e-5)
        shift = torch.randn(6, generator=g)  # batch standardisation removes per-dim offsets
        assert barlow_twins(z1 + shift, z2 - shift).item() == pytest.approx(ref, rel=1e-5)


def test_barlow_twins_bad_arguments():
    z = torch.randn(4, 8)
    with pytest.raises(MedsslError):
        barlow_twins(z, z[:, :7])
    with pytest.raises(MedsslError):
        barlow_twins(z[:1], z[:1])  # no batch statistics from one sample
    with pytest.raises(MedsslError):
        barlow_twins(z, z, lambd=-1.0)


def test_barlow_twins_matches_lightly_oracle(monkeypatch):
    """lightly's BarlowTwinsLoss is the same definition: F.batch_norm in training mode without
    running stats or affine (biased variance, eps 1e-5), c = z_a^T z_b / N, and
    sum (diag - 1)^2 + lambda_param * sum offdiag^2; its gather is off by default."""
    loss_mod = _lightly_loss(monkeypatch)
    g = torch.Generator().manual_seed(8)
    for b, d, lambd in ((4, 8, 5e-3), (32, 64, 0.02)):
        z1, z2 = torch.randn(b, d, generator=g) * 2, torch.randn(b, d, generator=g) + 1
        expected = loss_mod.BarlowTwinsLoss(lambda_param=lambd)(z1, z2)
        torch.testing.assert_close(barlow_twins(z1, z2, lambd), expected, rtol=1e-5, atol=1e-5)


# ---- VICReg --------------------------------------------------------------------------------


def _vicreg_loops(z1, z2, sim, std, cov):
    """Official VICReg code written out: mse, per-dim unbiased std with eps 1e-4, hinge at 1,
    off-diagonal covariance squares / D, per branch."""
    a, c = z1.tolist(), z2.tolist()
    b, d = len(a), len(a[0])
    inv = sum((a[n][i] - c[n][i]) ** 2 for n in range(b) for i in range(d)) / (b * d)
    std_loss = cov_loss = 0.0
    for rows in (a, c):
        means = [sum(rows[n][i] for n in range(b)) / b for i in range(d)]
        x = [[rows[n][i] - means[i] for i in range(d)] for n in range(b)]
        for i in range(d):
            s = math.sqrt(sum(x[n][i] ** 2 for n in range(b)) / (b - 1) + 1e-4)
            std_loss += max(0.0, 1 - s) / d / 2
            for j in range(d):
                if i != j:
                    cij = sum(x[n][i] * x[n][j] for n in range(b)) / (b - 1)
                    cov_loss += cij**2 / d
    return sim * inv + std * std_loss + cov * cov_loss


@pytest.mark.parametrize(
    "b,d,coeffs", [(2, 3, (25.0, 25.0, 1.0)), (5, 4, (1.0, 2.0, 3.0)), (9, 6, (25.0, 25.0, 1.0))]
)
def test_vicreg_matches_loops(b, d, coeffs):
    g = torch.Generator().manual_seed(b * 10 + d)
    z1 = torch.randn(b, d, generator=g) * 0.5  # std below 1: the hinge is active
    z2 = torch.randn(b, d, generator=g) * 2
    expected = _vicreg_loops(z1, z2, *coeffs)
    assert vicreg(z1, z2, *coeffs).item() == pytest.approx(expected, rel=1e-5)


def test_vicreg_analytic_cases():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g)
    # Identical views: invariance 0, so the similarity weight does not matter.
    assert vicreg(z, z, sim_coeff=25.0).item() == pytest.approx(vicreg(z, z, 0.0).item())
    assert vicreg(z, z, 1.0, 0.0, 0.0).item() == 0.0
    # +-1 orthogonal columns: unbiased std sqrt(4/3 + 1e-4) > 1, zero covariance -> loss 0.
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert vicreg(h, h).item() == pytest.approx(0.0, abs=1e-7)
    # Collapse to a constant: std = sqrt(1e-4) = 0.01 in every dim -> 25 * 0.99 = 24.75.
    ones = torch.ones(4, 3)
    assert vicreg(ones, ones).item() == pytest.approx(25 * (1 - 0.01), rel=1e-6)
    # Two identical dims (each std sqrt(4/3 + 1e-4)): off-diagonal cov 4/3 twice, / D, per branch.
    z = torch.tensor([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, -1.0]])
    assert vicreg(z, z).item() == pytest.approx(2 * (2 * (4 / 3) ** 2 / 2), rel=1e-6)


def test_vicreg_invariances_and_gradients():
    g = torch.Generator().manual_seed(9)
    z1 = torch.randn(10, 6, generator=g, requires_grad=True)
    z2 = torch.randn(10, 6, generator=g, requires_grad=True)
    loss = vicreg(z1, z2)
    loss.backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    with torch.no_grad():
        ref = loss.item()
        assert vicreg(z2, z1).item() == pytest.approx(ref, rel=1e-5)
        perm = torch.randperm(10, generator=g)
        assert vicreg(z1[perm], z2[perm]).item() == pytest.approx(ref, rel=1e-5)
        shift = torch.randn(6, generator=g)  # a common offset changes no term
        assert vicreg(z1 + shift, z2 + shift).item() == pytest.approx(ref, rel=1e-5)


def test_vicreg_bad_arguments():
    z = torch.randn(4, 8)
    with pytest.raises(MedsslError):
        vicreg(z, z[:3])
    with pytest.raises(MedsslError):
        vicreg(z[:1], z[:1])  # unbiased variance needs B >= 2
    with pytest.raises(MedsslError):
        vicreg(z, z, std_coeff=-1.0)


def test_vicreg_matches_lightly_oracle(monkeypatch):
    """lightly's VICRegLoss follows the official code too: lambda_param, mu_param, nu_param are
    sim, std, cov coefficients (defaults 25, 25, 1), eps 1e-4, unbiased variance (of the
    uncentred z, which is the same), covariance / (B - 1), off-diagonal squares / D per branch."""
    loss_mod = _lightly_loss(monkeypatch)
    g = torch.Generator().manual_seed(10)
    for b, d, coeffs in ((4, 8, (25.0, 25.0, 1.0)), (32, 64, (10.0, 5.0, 2.0))):
        z1, z2 = torch.randn(b, d, generator=g) * 0.7, torch.randn(b, d, generator=g) * 1.3
        oracle = loss_mod.VICRegLoss(
            lambda_param=coeffs[0], mu_param=coeffs[1], nu_param=coeffs[2], eps=1e-4
        )
        torch.testing.assert_close(vicreg(z1, z2, *coeffs), oracle(z1, z2), rtol=1e-5, atol=1e-5)


# ---- DINO ----------------------------------------------------------------------------------


def _dino_loops(student, teacher, center, st, tt):
    """Mean over view pairs i != j of mean_b -sum_k t_i,bk log s_j,bk, softmaxes by hand."""

    def softmax(row):
        m = max(row)
        e = [math.exp(x - m) for x in row]
        return [x / sum(e) for x in e]

    c = center.flatten().tolist()
    total, pairs = 0.0, 0
    for i, tv in enumerate(teacher):
        for j, sv in enumerate(student):
            if i == j:
                continue
            pairs += 1
            ce = 0.0
            for t_row, s_row in zip(tv.tolist(), sv.tolist(), strict=True):
                t = softmax([(x - ck) / tt for x, ck in zip(t_row, c, strict=True)])
                log_s = [math.log(p) for p in softmax([x / st for x in s_row])]
                ce += -sum(a * b for a, b in zip(t, log_s, strict=True))
            total += ce / len(tv)
    return total / pairs


@pytest.mark.parametrize("n_t,n_s,b,k", [(2, 2, 3, 5), (2, 4, 2, 6), (1, 3, 4, 4), (3, 2, 2, 3)])
def test_dino_matches_loops(n_t, n_s, b, k):
    g = torch.Generator().manual_seed(n_t * 100 + n_s * 10 + b)
    teacher = [torch.randn(b, k, generator=g) for _ in range(n_t)]
    student = [torch.randn(b, k, generator=g) for _ in range(n_s)]
    center = torch.randn(k, generator=g) * 0.1
    expected = _dino_loops(student, teacher, center, 0.1, 0.04)
    assert dino(student, teacher, center).item() == pytest.approx(expected, rel=1e-5)
    expected = _dino_loops(student, teacher, center, 0.5, 0.2)
    got = dino(student, teacher, center.view(1, k), student_temp=0.5, teacher_temp=0.2)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_dino_analytic_cases():
    g = torch.Generator().manual_seed(0)
    b, k = 4, 10
    teacher = [torch.randn(b, k, generator=g) for _ in range(2)]
    center = torch.randn(k, generator=g)
    # Uniform student: log s = -log K for every class, and the teacher's probabilities sum to 1.
    student = [torch.zeros(b, k) for _ in range(3)]
    assert dino(student, teacher, center).item() == pytest.approx(math.log(k), rel=1e-6)
    # A one-hot teacher (logit gap 100 at tau_t 0.04) reduces to the student's cross-entropy
    # against that class; one teacher view and two student views leave the pair (0, 1) only.
    labels = torch.randint(k, (b,), generator=g)
    onehot_teacher = [100 * F.one_hot(labels, k).float()]
    student = [torch.randn(b, k, generator=g) for _ in range(2)]
    expected = F.cross_entropy(student[1] / 0.1, labels)
    got = dino(student, onehot_teacher, torch.zeros(k))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_dino_invariances_and_gradients():
    """Softmaxes ignore a constant added to a row (or to the centre); the gradient reaches only
    the student: dL/d student_j = sum_{i != j} (softmax(student_j / tau_s) - t_i) / (tau_s n B)."""
    g = torch.Generator().manual_seed(11)
    b, k, st, tt = 3, 6, 0.1, 0.04
    teacher = [torch.randn(b, k, generator=g, requires_grad=True) for _ in range(2)]
    student = [torch.randn(b, k, generator=g, requires_grad=True) for _ in range(3)]
    center = torch.randn(k, generator=g, requires_grad=True)
    loss = dino(student, teacher, center, st, tt)
    loss.backward()
    assert all(t.grad is None for t in teacher) and center.grad is None
    n_pairs = 2 * 3 - 2
    for j, s in enumerate(student):
        probs = F.softmax(s.detach() / st, dim=1)
        expected = sum(
            probs - F.softmax((t.detach() - center.detach()) / tt, dim=1)
            for i, t in enumerate(teacher)
            if i != j
        ) / (st * n_pairs * b)
        torch.testing.assert_close(s.grad, expected, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        ref = loss.item()
        shifted = [s + 3.0 for s in student]
        assert dino(shifted, teacher, center + 1.0, st, tt).item() == pytest.approx(ref, rel=1e-5)
        offset = torch.randn(k, generator=g)  # teacher and centre moved together
        moved = [t + offset for t in teacher]
        assert dino(student, moved, center + offset, st, tt).item() == pytest.approx(ref, rel=1e-5)


def test_dino_center_update():
    g = torch.Generator().manual_seed(12)
    b, k, m = 3, 4, 0.8
    teacher = [torch.randn(b, k, generator=g, requires_grad=True) for _ in range(2)]
    center = torch.randn(1, k, generator=g)
    new = dino_center(center, teacher, m)
    assert new.shape == (1, k) and not new.requires_grad
    for c in range(k):  # m c + (1 - m) mean over views and samples, written out
        mean = sum(float(t.detach()[n, c]) for t in teacher for n in range(b)) / (2 * b)
        assert new[0, c].item() == pytest.approx(m * float(center[0, c]) + (1 - m) * mean)
    assert dino_center(center.view(k), teacher, m).shape == (k,)
    torch.testing.assert_close(dino_center(center, teacher, 1.0), center)
    mean = torch.cat([t.detach() for t in teacher]).mean(0, keepdim=True)
    torch.testing.assert_close(dino_center(center, teacher, 0.0), mean)


def test_dino_bad_arguments():
    x = [torch.randn(2, 5), torch.randn(2, 5)]
    c = torch.zeros(5)
    with pytest.raises(MedsslError):
        dino(x[:1], x[:1], c)  # the only pair has the same index
    with pytest.raises(MedsslError):
        dino(x, [torch.randn(2, 4)] * 2, c)  # student and teacher K differ
    with pytest.raises(MedsslError):
        dino([x[0], torch.randn(3, 5)], x, c)  # views of different batch sizes
    with pytest.raises(MedsslError):
        dino(x, x, torch.zeros(4))
    with pytest.raises(MedsslError):
        dino(x, [], c)
    with pytest.raises(MedsslError):
        dino(x, x, c, teacher_temp=0.0)
    with pytest.raises(MedsslError):
        dino_center(c, x, momentum=1.5)
    with pytest.raises(MedsslError):
        dino_center(torch.zeros(2, 5), x)


def test_dino_matches_lightly_oracle(monkeypatch):
    """lightly's DINOLoss(teacher_out, student_out) (teacher first) has the same cross-entropy
    and pair count (T S - min(T, S)), but owns its centre and teacher-temperature schedule: the
    centre buffer (1, 1, K) is set to ours before the call; with warmup_teacher_temp =
    teacher_temp and no epoch passed the temperature is the fixed teacher_temp; its centre update
    after the call (mean over views and batch, then the momentum average) is compared with
    dino_center."""
    loss_mod = _lightly_loss(monkeypatch)
    g = torch.Generator().manual_seed(13)
    for n_t, n_s, b, k, st, tt, m in ((2, 2, 4, 16, 0.1, 0.04, 0.9), (2, 6, 8, 32, 0.2, 0.07, 0.5)):
        teacher = [torch.randn(b, k, generator=g) for _ in range(n_t)]
        student = [torch.randn(b, k, generator=g) for _ in range(n_s)]
        center = torch.randn(k, generator=g) * 0.5
        oracle = loss_mod.DINOLoss(
            output_dim=k,
            warmup_teacher_temp=tt,
            teacher_temp=tt,
            student_temp=st,
            center_momentum=m,
        )
        oracle.center.copy_(center.view(1, 1, k))
        expected = oracle(teacher, student)
        got = dino(student, teacher, center, student_temp=st, teacher_temp=tt)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(dino_center(center, teacher, m), oracle.center.view(k))


# ---- all five: bf16 inputs are computed in float32 -----------------------------------------


def test_ssl_losses_upcast_bf16_inputs():
    g = torch.Generator().manual_seed(14)
    a, b = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    queue = torch.randn(5, 16, generator=g)
    calls = [
        lambda x, y: info_nce(x, y, queue),
        negative_cosine,
        barlow_twins,
        vicreg,
        lambda x, y: dino([x, y], [y, x], torch.zeros(16)),
    ]
    for fn in calls:
        low = fn(a.bfloat16(), b.bfloat16())
        assert low.dtype == torch.float32
        assert low.item() == fn(a.bfloat16().float(), b.bfloat16().float()).item()
