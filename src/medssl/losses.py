"""Training objectives: single-logit BCE and class-weighted BCE (finetuning-theory.md §2, §5),
and the NT-Xent contrastive loss (contrastive-ssl-theory.md §4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medssl.errors import MedsslError


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Empirical BCE risk L = -(1/N) sum [y log s(z) + (1-y) log(1-s(z))] (§2).

    Computed from logits in the numerically stable form; d(loss)/dz_i = (s(z_i) - y_i) / N (§3).

    Args:
        logits: (N,) real logits z.
        targets: (N,) labels y in {0, 1}.
    """
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def class_weights(targets: torch.Tensor, normalize: bool = True) -> tuple[float, float]:
    """(w0, w1) inversely proportional to class frequency: w_c ∝ 1/N_c (§5).

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
    """L_w = (1/N) sum -(w1 y log s(z) + w0 (1-y) log(1-s(z))) (§5), per-sample weights by class.

    Args:
        logits: (N,) logits z.
        targets: (N,) labels y in {0, 1}.
        w0, w1: class weights, see `class_weights`.
    """
    y = targets.to(logits.dtype)
    weight = w1 * y + w0 * (1 - y)
    return F.binary_cross_entropy_with_logits(logits, y, weight=weight)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """Symmetric NT-Xent over the 2B views (contrastive-ssl-theory.md §4, eq. (1)-(2)).

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
