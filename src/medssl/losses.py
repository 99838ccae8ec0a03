"""Training objectives: single-logit BCE and class-weighted BCE (docs/math.md §2, §5),
the NT-Xent contrastive loss (docs/math.md §14), and the self-supervised losses
InfoNCE against a queue (MoCo), negative cosine (BYOL / SimSiam), Barlow Twins, VICReg and DINO
(with its centre update `dino_center`), each as in its paper's official code."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medssl.errors import MedsslError


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Empirical BCE risk L = -(1/N) sum [y log s(z) + (1-y) log(1-s(z))] (docs/math.md §2).

    Computed from logits in the numerically stable form; d(loss)/dz_i = (s(z_i) - y_i) / N
    (docs/math.md §3).

    Args:
        logits: (N,) real logits z.
        targets: (N,) labels y in {0, 1}.
    """
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def class_weights(targets: torch.Tensor, normalize: bool = True) -> tuple[float, float]:
    """(w0, w1) inversely proportional to class frequency: w_c ∝ 1/N_c (docs/math.md §5.1).

    With ``normalize=False`` these are exactly w0 = 1/N0, w1 = 1/N1. With ``normalize=True``
    (medssl's default) both are multiplied by N/2, i.e. w_c = N / (2 N_c): the ratio w1/w0 =
    N0/N1 is the spec's, the weights average to 1 over the training set, and L_w becomes the
    mean of the per-class mean losses, so its scale (and a good learning rate) matches plain BCE.
    """
    n1 = float(targets.sum())
    n0 = float(len(targets)) - n1
    if n0 == 0 or n1 == 0:
        raise MedsslError("weighted BCE needs both classes in the training labels")
    if not normalize:
        return 1.0 / n0, 1.0 / n1
    n = n0 + n1
    return n / (2 * n0), n / (2 * n1)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, w0: float, w1: float) -> torch.Tensor:
    """L_w = (1/N) sum -(w1 y log s(z) + w0 (1-y) log(1-s(z))) (docs/math.md §5.1), per-sample
    weights by class.

    Args:
        logits: (N,) logits z.
        targets: (N,) labels y in {0, 1}.
        w0, w1: class weights, see `class_weights`.
    """
    y = targets.to(logits.dtype)
    weight = w1 * y + w0 * (1 - y)
    return F.binary_cross_entropy_with_logits(logits, y, weight=weight)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Symmetric NT-Xent over the 2B views (docs/math.md §14, eq. (1)-(2)).

    Z = [normalise(z1); normalise(z2)] (2B, k); S = Z Z^T; the positive of row k is p(k) = k ± B;
    l(k) = -log exp(S_k,p(k)/tau) / sum_{m != k} exp(S_km/tau); the loss is the mean over all 2B
    anchors. Computed as a cross-entropy over the rows of S/tau with the diagonal masked out.

    Args:
        z1, z2: (B, k) projections of the first and second views (normalised here).
        temperature: tau > 0.
    Returns:
        Scalar loss.
    """
    if temperature <= 0:
        raise MedsslError(f"temperature must be > 0, got {temperature}")
    if z1.shape != z2.shape or z1.ndim != 2:
        raise MedsslError(
            f"z1 and z2 must both be (B, k); got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2B, k)
    sim = z @ z.T / temperature  # (2B, 2B)
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.arange(2 * b, device=z.device).roll(b)  # p(k) = k + B mod 2B
    return F.cross_entropy(sim, positives)


def _check_views(name1: str, a: torch.Tensor, name2: str, b: torch.Tensor) -> None:
    """Raise MedsslError unless a and b are both (B, D) with the same shape."""
    if a.shape != b.shape or a.ndim != 2:
        raise MedsslError(
            f"{name1} and {name2} must both be (B, D); got {tuple(a.shape)}, {tuple(b.shape)}"
        )


def info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE of queries against their keys and a queue of negatives (MoCo).

    He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning", eq. (1)
    and Algorithm 1; the default tau = 0.2 is MoCo v2's (Chen et al. 2020, "Improved Baselines
    with Momentum Contrastive Learning").

    With q, k and the queue rows n_j all L2-normalised here,
    l(i) = -log exp(q_i.k_i/tau) / (exp(q_i.k_i/tau) + sum_j exp(q_i.n_j/tau)); the loss is the
    mean over the batch. Computed as a cross-entropy over the logits [q.k, q queue^T] / tau
    (B, 1+K) with the positive in column 0, as in the paper's Algorithm 1. k and the queue are
    constants (detached): the key encoder is the momentum encoder. An empty queue (K = 0) leaves
    only the positive column, and the loss is then exactly 0 for every sample.

    Args:
        q: (B, D) queries (the online encoder's projections of the first view).
        k: (B, D) keys (the momentum encoder's projections of the second view).
        queue: (K, D) negative keys from earlier batches, K >= 0.
        temperature: tau > 0.
    Returns:
        Scalar loss.
    """
    if temperature <= 0:
        raise MedsslError(f"temperature must be > 0, got {temperature}")
    _check_views("q", q, "k", k)
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise MedsslError(f"queue must be (K, D) with D = {q.shape[1]}; got {tuple(queue.shape)}")
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    queue = F.normalize(queue.detach().float(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    negatives = q @ queue.T  # (B, K)
    logits = torch.cat([positive, negatives], dim=1) / temperature
    labels = torch.zeros(len(q), dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Negative cosine similarity with a stop-gradient on the target (BYOL / SimSiam).

    Chen & He 2021, "Exploring Simple Siamese Representation Learning", eq. (1)-(3); Grill et al.
    2020, "Bootstrap Your Own Latent", eq. (2).

    L = -(1/B) sum_i (p_i / ||p_i||) . (z_i / ||z_i||), with z detached. This is one direction;
    the method symmetrises it over the views, L = D(p1, z2)/2 + D(p2, z1)/2 (SimSiam). BYOL's
    per-sample loss ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z) is 2 + 2 * this loss, which has the
    same minimiser and gradients up to the factor 2.

    Args:
        p: (B, D) predictor outputs of the online branch.
        z: (B, D) targets (projections of the other view); receive no gradient.
    Returns:
        Scalar loss in [-1, 1].
    """
    _check_views("p", p, "z", z)
    p = F.normalize(p.float(), dim=1)
    z = F.normalize(z.detach().float(), dim=1)
    return -(p * z).sum(dim=1).mean()


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss.

    Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction",
    eq. (1)-(2) and Algorithm 1.

    Each view is standardised over the batch exactly as torch.nn.BatchNorm1d(D, affine=False)
    in training mode: z_hat = (z - mean) / sqrt(var + 1e-5), var biased. The cross-correlation
    C = z1_hat^T z2_hat / B (D, D), and L = sum_i (1 - C_ii)^2 + lambd sum_{i != j} C_ij^2.
    (The paper's lambda is 5e-3; its released code defaults to 0.0051.)

    Args:
        z1, z2: (B, D) projections of the two views, B >= 2.
        lambd: weight lambda >= 0 of the redundancy-reduction (off-diagonal) term.
    Returns:
        Scalar loss.
    """
    _check_views("z1", z1, "z2", z2)
    if len(z1) < 2:
        raise MedsslError(f"barlow_twins needs a batch of at least 2, got {len(z1)}")
    if lambd < 0:
        raise MedsslError(f"lambd must be >= 0, got {lambd}")
    b, d = z1.shape

    def standardise(z: torch.Tensor) -> torch.Tensor:
        z = z.float()
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + 1e-5)

    c = standardise(z1).T @ standardise(z2) / b  # (D, D)
    on_diag = (1 - torch.diagonal(c)).pow(2).sum()
    off_diag = c.masked_fill(torch.eye(d, dtype=torch.bool, device=c.device), 0).pow(2).sum()
    return on_diag + lambd * off_diag


def vicreg(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
) -> torch.Tensor:
    """VICReg: variance-invariance-covariance regularisation.

    Bardes et al. 2022, "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", eq. (1)-(6), as in the official code (facebookresearch/vicreg).

    Invariance s = mse(z1, z2) (mean over B and D). For each branch, x = z - mean(z) over the
    batch, std_d = sqrt(Var_d(x) + 1e-4) with the unbiased variance, v = mean_d relu(1 - std_d),
    cov = x^T x / (B - 1), c = sum_{i != j} cov_ij^2 / D. Then
    L = sim_coeff s + std_coeff (v(z1) + v(z2)) / 2 + cov_coeff (c(z1) + c(z2)).

    Args:
        z1, z2: (B, D) expander outputs of the two views, B >= 2.
        sim_coeff, std_coeff, cov_coeff: lambda, mu, nu >= 0 (paper: 25, 25, 1).
    Returns:
        Scalar loss.
    """
    _check_views("z1", z1, "z2", z2)
    if len(z1) < 2:
        raise MedsslError(f"vicreg needs a batch of at least 2, got {len(z1)}")
    for name, value in (
        ("sim_coeff", sim_coeff),
        ("std_coeff", std_coeff),
        ("cov_coeff", cov_coeff),
    ):
        if value < 0:
            raise MedsslError(f"{name} must be >= 0, got {value}")
    z1, z2 = z1.float(), z2.float()
    b, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    off = ~torch.eye(d, dtype=torch.bool, device=z1.device)
    std_loss = z1.new_zeros(())
    cov_loss = z1.new_zeros(())
    for z in (z1, z2):
        x = z - z.mean(dim=0)
        std = torch.sqrt(x.var(dim=0) + 1e-4)
        std_loss = std_loss + F.relu(1 - std).mean() / 2
        cov = x.T @ x / (b - 1)
        cov_loss = cov_loss + cov[off].pow(2).sum() / d
    return sim_coeff * invariance + std_coeff * std_loss + cov_coeff * cov_loss


def _check_dino_views(name: str, views: Sequence[torch.Tensor]) -> tuple[int, ...]:
    """The common (B, K) shape of a non-empty list of views, else MedsslError."""
    if len(views) == 0:
        raise MedsslError(f"{name} must be a non-empty list of (B, K) logits")
    shape = tuple(views[0].shape)
    if len(shape) != 2 or any(tuple(v.shape) != shape for v in views):
        got = [tuple(v.shape) for v in views]
        raise MedsslError(f"{name} views must all be (B, K) with one shape; got {got}")
    return shape


def _check_center(center: torch.Tensor, k: int) -> None:
    """Raise MedsslError unless center is (K,) or (1, K)."""
    if tuple(center.shape) not in ((k,), (1, k)):
        raise MedsslError(f"center must be ({k},) or (1, {k}); got {tuple(center.shape)}")


def dino(
    student: Sequence[torch.Tensor],
    teacher: Sequence[torch.Tensor],
    center: torch.Tensor,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """DINO self-distillation cross-entropy between teacher and student views.

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", eq. (2)-(3)
    and Algorithm 1, as in the official code (facebookresearch/dino, ``DINOLoss``).

    Teacher probabilities t_i = softmax((teacher_i - center) / teacher_temp) (detached: the
    teacher is the momentum encoder), student log-probabilities
    log s_j = log_softmax(student_j / student_temp), and
    L = mean over pairs (i, j) with i != j of mean_b -sum_k t_i,bk log s_j,bk.
    As in the paper's code, view index i of the teacher and j of the student refer to the same
    crop when i == j, and that pair is skipped; the student may have more views than the teacher
    (multi-crop: the teacher sees the global crops, which come first in the student's list). The
    number of pairs is len(teacher) len(student) - min(len(teacher), len(student)).

    Args:
        student: list of (B, K) student logits, one per view.
        teacher: list of (B, K) teacher logits, one per view (the same B and K).
        center: (K,) or (1, K) running centre of the teacher logits, see `dino_center`.
        student_temp: tau_s > 0.
        teacher_temp: tau_t > 0 (the paper warms it up from 0.04; pass the current value).
    Returns:
        Scalar loss.
    """
    if student_temp <= 0 or teacher_temp <= 0:
        raise MedsslError(
            f"temperatures must be > 0, got student {student_temp}, teacher {teacher_temp}"
        )
    shape = _check_dino_views("student", student)
    if _check_dino_views("teacher", teacher) != shape:
        raise MedsslError(
            f"student and teacher views must have one (B, K) shape; got {shape}, "
            f"{tuple(teacher[0].shape)}"
        )
    _check_center(center, shape[1])
    n_t, n_s = len(teacher), len(student)
    if n_t * n_s - min(n_t, n_s) == 0:
        raise MedsslError("dino needs a teacher and a student view with different indices")
    t = torch.stack([v.detach().float() for v in teacher])  # (T, B, K)
    t = F.softmax((t - center.detach().float().reshape(1, 1, -1)) / teacher_temp, dim=-1)
    log_s = F.log_softmax(torch.stack([v.float() for v in student]) / student_temp, dim=-1)
    ce = -torch.einsum("tbk,sbk->ts", t, log_s) / shape[0]  # (T, S): batch-mean cross-entropies
    keep = ~torch.eye(n_t, n_s, dtype=torch.bool, device=ce.device)
    return ce[keep].mean()


def dino_center(
    center: torch.Tensor, teacher: Sequence[torch.Tensor], momentum: float = 0.9
) -> torch.Tensor:
    """The new DINO centre: momentum c + (1 - momentum) mean of the teacher logits.

    Caron et al. 2021, eq. (4); the official code's ``DINOLoss.update_center``. The mean is over
    all teacher views and the batch, of the detached logits. No all-reduce happens here: under
    torchrun the caller averages the returned centre over the ranks (the update is affine in the
    batch mean, so with equal per-rank batches this is the update from the global batch, which
    the official code gets with ``dist.all_reduce``).

    Args:
        center: (K,) or (1, K) current centre.
        teacher: list of (B, K) teacher logits, one per view.
        momentum: m in [0, 1].
    Returns:
        The new centre, float32, with the shape of ``center`` and no gradient.
    """
    if not 0 <= momentum <= 1:
        raise MedsslError(f"momentum must be in [0, 1], got {momentum}")
    if len(teacher) == 0 or any(v.ndim != 2 for v in teacher):
        raise MedsslError("teacher must be a non-empty list of (B, K) logits")
    k = teacher[0].shape[1]
    if any(v.shape[1] != k for v in teacher):
        raise MedsslError(f"teacher views must share K; got {[tuple(v.shape) for v in teacher]}")
    _check_center(center, k)
    with torch.no_grad():
        batch_center = torch.cat([v.float() for v in teacher]).mean(dim=0)
        return momentum * center.float() + (1 - momentum) * batch_center.reshape(center.shape)
