"""Calibration beyond ECE: NLL, Brier, equal-mass ECE, and temperature scaling.

Temperature scaling (Guo et al. 2017) divides logits by one scalar T > 0 fitted on validation
logits by minimising NLL over log T; probabilities change, the ranking (so AUROC) does not.
All in float64 NumPy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from medssl.metrics import _check_probs, _check_scores, expected_calibration_error


def sigmoid(z: ArrayLike) -> np.ndarray:
    """Numerically stable logistic function in float64."""
    z = np.asarray(z, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def nll(targets: ArrayLike, logits: ArrayLike) -> float:
    """Mean Bernoulli negative log-likelihood of logits = BCE (docs/math.md §2)."""
    y, z = _check_scores(targets, logits)
    return float(np.mean(np.logaddexp(0.0, -(2 * y - 1) * z)))


def brier(targets: ArrayLike, probs: ArrayLike) -> float:
    """Brier score: mean squared error of the positive-class probability."""
    y, p = _check_probs(targets, probs)
    return float(np.mean((p - y) ** 2))


def equal_mass_ece(targets: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> float:
    """ECE over bins holding (nearly) equal numbers of cases, sorted by probability.

    The same |acc - conf| weighting as docs/math.md §6.2, with adaptive bins
    (np.array_split of the sorted cases) instead of equal-width ones; a reference binning.
    """
    y, p = _check_probs(targets, probs)
    order = np.argsort(p, kind="mergesort")
    total = 0.0
    for chunk in np.array_split(order, min(n_bins, len(order))):
        total += len(chunk) * abs(y[chunk].mean() - p[chunk].mean())
    return float(total / len(order))


def fit_temperature(targets: ArrayLike, logits: ArrayLike) -> float:
    """T = argmin_T NLL(y, z / T), searched over log T in [-5, 5] (bounded Brent)."""
    from scipy.optimize import minimize_scalar  # ~1 s to import: only when T is fitted

    y, z = _check_scores(targets, logits)
    res = minimize_scalar(
        lambda log_t: nll(y, z / np.exp(log_t)),
        bounds=(-5.0, 5.0),
        method="bounded",
        options={"xatol": 1e-8},
    )
    return float(np.exp(res.x))


def calibration_report(
    targets: ArrayLike, logits: ArrayLike, n_bins: int = 15, temperature: float = 1.0
) -> dict:
    """ECE (equal width and equal mass), NLL and Brier of logits / temperature."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = sigmoid(z)
    return {
        "temperature": float(temperature),
        "ece": expected_calibration_error(targets, p, n_bins),
        "ece_equal_mass": equal_mass_ece(targets, p, n_bins),
        "nll": nll(targets, z),
        "brier": brier(targets, p),
    }
