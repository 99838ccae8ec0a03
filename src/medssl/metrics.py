"""Discrimination and calibration metrics of the positive-class probability.

All metrics are computed in float64 NumPy from saved predictions of a binary classifier:
``targets`` in {0, 1} (1 = positive class), ``probs`` = predicted P(y = 1) in [0, 1], and
``scores`` = any real-valued ranking score (probabilities or logits) for ranking metrics.
Equations refer to ``finetuning-theory.md`` (§5 accuracy / balanced accuracy, §6.1 ROC and
AUROC, §6.2 ECE).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "accuracy",
    "average_precision",
    "bootstrap_ci",
    "precision_recall_curve",
    "auroc",
    "balanced_accuracy",
    "binary_metrics",
    "calibration_bins",
    "confusion_matrix",
    "expected_calibration_error",
    "roc_curve",
]


def _as_1d_numeric(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D, got shape {arr.shape}; pass one value per sample "
            "(for 2-column outputs select the positive-class column)"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty; metrics need at least one sample")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _check_targets(targets: ArrayLike) -> np.ndarray:
    arr = _as_1d_numeric(targets, "targets")
    if not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(
            f"targets must contain only 0 and 1 (1 = positive class), found e.g. {bad.tolist()}"
        )
    return arr.astype(np.int64)


def _check_same_length(targets: np.ndarray, other: np.ndarray, name: str) -> None:
    if targets.shape[0] != other.shape[0]:
        raise ValueError(
            f"targets and {name} must have the same length, got {targets.shape[0]} "
            f"and {other.shape[0]}"
        )


def _check_probs(targets: ArrayLike, probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = _check_targets(targets)
    p = _as_1d_numeric(probs, "probs").astype(np.float64)
    _check_same_length(y, p, "probs")
    if not np.isfinite(p).all():
        raise ValueError("probs contains NaN or inf; pass finite positive-class probabilities")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            f"probs must lie in [0, 1], got range [{p.min():.6g}, {p.max():.6g}]; "
            "apply a sigmoid to logits first (or use the scores argument of ranking metrics)"
        )
    return y, p


def _check_scores(targets: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = _check_targets(targets)
    s = _as_1d_numeric(scores, "scores").astype(np.float64)
    _check_same_length(y, s, "scores")
    if not np.isfinite(s).all():
        raise ValueError("scores contains NaN or inf; pass finite real-valued scores")
    return y, s


def _check_n_bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def confusion_matrix(targets: ArrayLike, probs: ArrayLike, threshold: float = 0.5) -> dict:
    """Confusion-matrix counts at a probability threshold.

    Implements finetuning-theory.md §5 (confusion matrix) with the §6.1 decision rule
    ``y_hat = 1 iff p >= threshold``.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        probs: Positive-class probabilities in [0, 1], shape (N,).
        threshold: Decision threshold t.

    Returns:
        Dict with int counts ``tn``, ``fp``, ``fn``, ``tp``.

    Raises:
        ValueError: On invalid inputs.
    """
    y, p = _check_probs(targets, probs)
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    pred = p >= threshold
    pos = y == 1
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred & ~pos))
    fn = int(np.count_nonzero(~pred & pos))
    tn = int(np.count_nonzero(~pred & ~pos))
    return {"tn": tn, "fp": fp, "fn": fn, "tp": tp}


def accuracy(targets: ArrayLike, probs: ArrayLike, threshold: float = 0.5) -> float:
    """Accuracy (TP + TN) / N at a threshold.

    Implements finetuning-theory.md §5, Acc.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        probs: Positive-class probabilities in [0, 1], shape (N,).
        threshold: Decision threshold; predicted positive iff p >= threshold.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: On invalid inputs.
    """
    c = confusion_matrix(targets, probs, threshold)
    return (c["tp"] + c["tn"]) / (c["tp"] + c["tn"] + c["fp"] + c["fn"])


def balanced_accuracy(targets: ArrayLike, probs: ArrayLike, threshold: float = 0.5) -> float:
    """Balanced accuracy ½(TPR + TNR) at a threshold.

    Implements finetuning-theory.md §5, BA. If only one class is present in ``targets``
    the rate of the absent class is undefined (0/0); the result is then the rate of the
    present class alone (TPR if all targets are 1, TNR if all are 0). This equals
    ``sklearn.metrics.balanced_accuracy_score``, which does the same after a warning; no
    warning is emitted here.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        probs: Positive-class probabilities in [0, 1], shape (N,).
        threshold: Decision threshold; predicted positive iff p >= threshold.

    Returns:
        Balanced accuracy in [0, 1].

    Raises:
        ValueError: On invalid inputs.
    """
    c = confusion_matrix(targets, probs, threshold)
    rates = []
    if c["tp"] + c["fn"] > 0:
        rates.append(c["tp"] / (c["tp"] + c["fn"]))
    if c["tn"] + c["fp"] > 0:
        rates.append(c["tn"] / (c["tn"] + c["fp"]))
    return float(sum(rates) / len(rates))


def roc_curve(targets: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC curve, one point per distinct score.

    Implements finetuning-theory.md §6.1, (FPR(t), TPR(t)) with ``y_hat = 1 iff score >= t``.
    Same output as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``: the first
    point is (0, 0) at threshold +inf, then thresholds are the distinct scores in
    decreasing order, ending at (1, 1). If a class is absent, its rate is undefined and
    the corresponding array (fpr without negatives, tpr without positives) is all NaN.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        scores: Real-valued scores, higher = more likely positive, shape (N,).

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of equal length (number of distinct
        scores + 1).

    Raises:
        ValueError: On invalid inputs.
    """
    y, s = _check_scores(targets, scores)
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    # The last index of each run of equal scores gives one threshold per distinct score.
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted, dtype=np.float64)[last_of_run]
    fps = (last_of_run + 1) - tps
    tps = np.r_[0.0, tps]
    fps = np.r_[0.0, fps]
    thresholds = np.r_[np.inf, s_sorted[last_of_run]]
    n_pos, n_neg = tps[-1], fps[-1]
    fpr = fps / n_neg if n_neg > 0 else np.full(fps.shape, np.nan)
    tpr = tps / n_pos if n_pos > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thresholds


def auroc(targets: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve via the Mann–Whitney U statistic.

    Implements finetuning-theory.md §6.1, AUROC = ∫ TPR dFPR = P(score_pos > score_neg)
    + ½ P(score_pos = score_neg), computed from average ranks (ties get the mean rank).
    This equals the trapezoidal area under :func:`roc_curve` and is invariant under
    strictly increasing transforms of the scores (e.g. logits vs probabilities).

    Args:
        targets: Labels in {0, 1}, shape (N,).
        scores: Real-valued scores, higher = more likely positive, shape (N,).

    Returns:
        AUROC in [0, 1], or ``float('nan')`` when only one class is present in ``targets``
        (the metric is undefined there).

    Raises:
        ValueError: On invalid inputs.
    """
    y, s = _check_scores(targets, scores)
    n_pos = int(np.count_nonzero(y))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # 1-based average rank of each group of tied scores: last rank - (count - 1) / 2.
    group_rank = np.cumsum(counts, dtype=np.float64) - (counts - 1) / 2.0
    rank_sum_pos = group_rank[inverse][y == 1].sum()
    u_pos = rank_sum_pos - n_pos * (n_pos + 1) / 2.0
    return float(u_pos / (n_pos * n_neg))


def calibration_bins(targets: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> dict:
    """Equal-width reliability bins of the positive-class probability.

    Implements the binning of finetuning-theory.md §6.2: edges ``a_m = m / M`` and
    ``B_m = {i : p_i in (a_{m-1}, a_m]}``, with ``p = 0`` put in the first bin so that
    every sample is counted. A probability exactly on an inner edge goes to the lower bin.
    Edges are computed as ``arange(M + 1) / M`` (correctly rounded ``m / M``) rather than
    ``linspace``, whose ``m * (1/M)`` can be one ulp off and send ``p = m / M`` to the
    upper bin (e.g. M = 6, m = 5).

    Args:
        targets: Labels in {0, 1}, shape (N,).
        probs: Positive-class probabilities in [0, 1], shape (N,).
        n_bins: Number of bins M.

    Returns:
        Dict of float64/int64 arrays: ``edges`` (M + 1,), ``counts`` (M,) = |B_m|,
        ``confidence`` (M,) = conf(B_m) = mean probability, ``frequency`` (M,) =
        acc(B_m) = fraction of positives; confidence and frequency are NaN for empty bins.

    Raises:
        ValueError: On invalid inputs.
    """
    y, p = _check_probs(targets, probs)
    m = _check_n_bins(n_bins)
    edges = np.arange(m + 1, dtype=np.float64) / m
    # side="left" on the inner edges: a_{k-1} < p <= a_k -> bin k-1 (0-based); p = 0 -> 0.
    idx = np.searchsorted(edges[1:-1], p, side="left")
    counts = np.bincount(idx, minlength=m)
    sum_p = np.bincount(idx, weights=p, minlength=m)
    sum_y = np.bincount(idx, weights=y.astype(np.float64), minlength=m)
    nonempty = counts > 0
    confidence = np.full(m, np.nan)
    frequency = np.full(m, np.nan)
    confidence[nonempty] = sum_p[nonempty] / counts[nonempty]
    frequency[nonempty] = sum_y[nonempty] / counts[nonempty]
    return {
        "edges": edges,
        "counts": counts.astype(np.int64),
        "confidence": confidence,
        "frequency": frequency,
    }


def expected_calibration_error(targets: ArrayLike, probs: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error of the positive-class probability.

    Implements finetuning-theory.md §6.2, ECE = Σ_m |B_m|/N |acc(B_m) − conf(B_m)| with
    acc(B_m) the fraction of y = 1 in the bin (not top-label confidence), using the bins of
    :func:`calibration_bins`.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        probs: Positive-class probabilities in [0, 1], shape (N,).
        n_bins: Number of equal-width bins M.

    Returns:
        ECE in [0, 1].

    Raises:
        ValueError: On invalid inputs.
    """
    bins = calibration_bins(targets, probs, n_bins)
    counts = bins["counts"]
    nonempty = counts > 0
    gap = np.abs(bins["frequency"][nonempty] - bins["confidence"][nonempty])
    return float(np.sum(counts[nonempty] * gap) / counts.sum())


def binary_metrics(
    targets: ArrayLike,
    probs: ArrayLike,
    scores: ArrayLike | None = None,
    n_bins: int = 15,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """All binary metrics of finetuning-theory.md §5–§6 in one JSON-serialisable dict.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        probs: Positive-class probabilities in [0, 1], shape (N,).
        scores: Optional ranking scores (e.g. logits) for AUROC; ``probs`` if None.
        n_bins: Number of ECE bins M.
        threshold: Decision threshold for the confusion matrix, accuracy and BA.

    Returns:
        Dict with ``n``, ``n_positive``, ``n_negative``, ``accuracy``,
        ``balanced_accuracy``, ``auroc`` (NaN with one class), ``ece``, ``confusion``
        (tn/fp/fn/tp), ``threshold`` and ``n_bins``; plain Python ints and floats.

    Raises:
        ValueError: On invalid inputs.
    """
    y, p = _check_probs(targets, probs)
    s = p if scores is None else scores
    n_pos = int(np.count_nonzero(y))
    return {
        "n": int(y.size),
        "n_positive": n_pos,
        "n_negative": int(y.size) - n_pos,
        "accuracy": float(accuracy(y, p, threshold)),
        "balanced_accuracy": float(balanced_accuracy(y, p, threshold)),
        "auroc": auroc(y, s),
        "ece": expected_calibration_error(y, p, n_bins),
        "confusion": confusion_matrix(y, p, threshold),
        "threshold": float(threshold),
        "n_bins": _check_n_bins(n_bins),
    }


def precision_recall_curve(
    targets: ArrayLike, scores: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall of the positive class at every distinct score threshold.

    Returns ``(precision, recall, thresholds)`` in decreasing threshold order (recall rising),
    one point per distinct score; predicted positive iff score >= threshold.
    """
    y, s = _check_scores(targets, scores)
    _, tpr, thresholds = roc_curve(y, s)
    n_pos = int(np.count_nonzero(y))
    order = np.sort(s)[::-1]
    # Predicted positives at each distinct threshold: count of scores >= threshold.
    predicted = np.searchsorted(-order, -thresholds[1:], side="right").astype(np.float64)
    tp = tpr[1:] * n_pos
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    return precision, tpr[1:], thresholds[1:]


def average_precision(targets: ArrayLike, scores: ArrayLike) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n over thresholds (step-wise area under the PR curve,
    scikit-learn's definition). NaN without positives."""
    y, s = _check_scores(targets, scores)
    if not np.any(y == 1):
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, s)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def bootstrap_ci(
    statistic,
    targets: ArrayLike,
    values: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic(targets, values)``.

    Resamples the N cases with replacement ``n_boot`` times from a seeded generator;
    resamples where the statistic is undefined (NaN, e.g. AUROC with one class) are dropped.
    """
    y = _check_targets(targets)
    v = _as_1d_numeric(values, "values").astype(np.float64)
    _check_same_length(y, v, "values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, y.size, size=(n_boot, y.size))
    stats = np.array([statistic(y[i], v[i]) for i in idx], dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(stats, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)
