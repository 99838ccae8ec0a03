"""Discrimination and calibration metrics of the positive-class probability.

All metrics are computed in float64 NumPy from saved predictions of a binary classifier:
``targets`` in {0, 1} (1 = positive class), ``probs`` = predicted P(y = 1) in [0, 1], and
``scores`` = any real-valued ranking score (probabilities or logits) for ranking metrics.
Equations are cited as ``docs/math.md §N`` (its numbers follow the spec,
``finetuning-theory.md``): §5.2 confusion matrix, accuracy and balanced accuracy; §6.1
decision rule, ROC and AUROC; §6.2 ECE; §6.3 precision-recall and average precision; §6.4
bootstrap confidence intervals.

scikit-learn computes, after our own input checks: :func:`roc_curve` (``roc_curve``),
:func:`precision_recall_curve` and :func:`average_precision` (``precision_recall_curve``,
``average_precision_score``) and :func:`balanced_accuracy` (``balanced_accuracy_score``).

Hand-written, and why:

- Input checks (``_check_probs``, ``_check_scores``, also used by other modules): refuse
  NaN/inf, probabilities outside [0, 1], non-binary labels, 2-D and empty inputs with
  messages that name the fix, before scikit-learn sees the data.
- :func:`confusion_matrix` and :func:`accuracy`: four counts at the spec's rule
  ``y_hat = 1 iff p >= t``; ``sklearn.metrics.confusion_matrix`` would need the same
  thresholding first and returns the same integers as an array, behind ~1 ms of checks.
- :func:`auroc`: the Mann–Whitney form from average ranks gives the correctly rounded
  U / (N1 N0) for every input. ``roc_auc_score`` (trapezoids over the ROC points) agrees to
  3.2e-16 relative but differs in the last bit on 20-40% of inputs (5 of 12 real
  prediction sets), and gives different floats for equal AUROCs reached by different
  curves; ``train`` keeps the best epoch by strict ``>`` on val AUROC (and ``tune``
  compares cv AUROCs), so such rounding could pick the checkpoint. It is also 20x faster
  (0.1 vs 2 ms a call), which counts in the 1000-resample bootstrap.
- :func:`calibration_bins` / :func:`expected_calibration_error`: the spec fixes the bins
  (a_{m-1}, a_m]; ``sklearn.calibration.calibration_curve`` uses the same side but
  ``linspace`` edges (one ulp off m / M for some m, e.g. M = 6, m = 5, sending p = m / M to
  the upper bin) and returns neither counts nor empty bins; torchmetrics'
  ``BinaryCalibrationError`` bins [a_{m-1}, a_m).
- :func:`bootstrap_ci`: no scikit-learn equivalent; it drops resamples where the statistic
  is undefined (AUROC with one class) and keeps the seeded resampling stream behind the
  published intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
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


def _check_threshold(threshold: float) -> float:
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def confusion_matrix(targets: ArrayLike, probs: ArrayLike, threshold: float = 0.5) -> dict:
    """Confusion-matrix counts at a probability threshold.

    Implements the confusion matrix of docs/math.md §5.2 with the §6.1 decision rule
    ``y_hat = 1 iff p >= threshold``. Hand-written: four counts; scikit-learn's
    ``confusion_matrix`` would need the same thresholding and gives the same integers.

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
    pred = p >= _check_threshold(threshold)
    pos = y == 1
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred & ~pos))
    fn = int(np.count_nonzero(~pred & pos))
    tn = int(np.count_nonzero(~pred & ~pos))
    return {"tn": tn, "fp": fp, "fn": fn, "tp": tp}


def accuracy(targets: ArrayLike, probs: ArrayLike, threshold: float = 0.5) -> float:
    """Accuracy (TP + TN) / N at a threshold.

    Implements Acc = (TP + TN) / (TP + TN + FP + FN) of docs/math.md §5.2 from the counts of
    :func:`confusion_matrix` (hand-written for the same reason).

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
    """Balanced accuracy ½(TPR + TNR) at a threshold, by scikit-learn.

    Implements BA = ½(TP / (TP + FN) + TN / (TN + FP)) of docs/math.md §5.2 with the §6.1
    rule ``y_hat = 1 iff p >= threshold``, computed by
    ``sklearn.metrics.balanced_accuracy_score`` on those predictions (bit-identical to the
    formula: the mean of the two rates). If only one class is present in ``targets`` the
    rate of the absent class is undefined (0/0); the result is then the rate of the present
    class alone (TPR if all targets are 1, TNR if all are 0), as scikit-learn does; its
    warnings about it are suppressed.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        probs: Positive-class probabilities in [0, 1], shape (N,).
        threshold: Decision threshold; predicted positive iff p >= threshold.

    Returns:
        Balanced accuracy in [0, 1].

    Raises:
        ValueError: On invalid inputs.
    """
    from sklearn.metrics import balanced_accuracy_score  # sklearn: seconds to import; lazy

    y, p = _check_probs(targets, probs)
    pred = (p >= _check_threshold(threshold)).astype(np.int64)
    with warnings.catch_warnings():
        # One class in targets (or predictions) is handled as documented above; scikit-learn
        # says so with UserWarnings. Deprecation and future warnings still show.
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y, pred))


def roc_curve(targets: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empirical ROC curve, one point per distinct score, by scikit-learn.

    Implements (FPR(t), TPR(t)) of docs/math.md §6.1 with ``y_hat = 1 iff score >= t``:
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``, so that every distinct
    score is a threshold (``medssl.operating_points`` picks among all of them; the default
    ``drop_intermediate=True`` drops collinear points). The first point is (0, 0) at
    threshold +inf (set here too, as scikit-learn < 1.3 put max(score) + 1 there), then
    thresholds are the distinct scores in decreasing order, ending at (1, 1). If a class is
    absent, its rate is undefined and the corresponding array (fpr without negatives, tpr
    without positives) is all NaN; scikit-learn's warning about it is suppressed.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        scores: Real-valued scores, higher = more likely positive, shape (N,).

    Returns:
        ``(fpr, tpr, thresholds)``, float64 arrays of equal length (number of distinct
        scores + 1).

    Raises:
        ValueError: On invalid inputs.
    """
    from sklearn.metrics import roc_curve as sk_roc_curve  # sklearn: seconds to import; lazy

    y, s = _check_scores(targets, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one class: NaN rates, as documented
        fpr, tpr, thresholds = sk_roc_curve(y, s, drop_intermediate=False)
    thresholds = np.asarray(thresholds, dtype=np.float64).copy()
    thresholds[0] = np.inf
    return np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64), thresholds


def auroc(targets: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve via the Mann–Whitney U statistic (hand-written).

    Implements docs/math.md §6.1, AUROC = ∫ TPR dFPR = P(score_pos > score_neg)
    + ½ P(score_pos = score_neg), computed from average ranks (ties get the mean rank).
    This equals the trapezoidal area under :func:`roc_curve` and is invariant under
    strictly increasing transforms of the scores (e.g. logits vs probabilities).

    Kept rather than ``sklearn.metrics.roc_auc_score``: rank sums are exact in float64,
    so the result is the correctly rounded U / (N1 N0) and equal AUROCs compare equal
    (``train`` keeps the best epoch by strict ``>``). scikit-learn's trapezoid sum agrees
    to 3.2e-16 relative but differs in the last bit on 20-40% of inputs and can give two
    floats for one AUROC reached by two curves; it is also ~20x slower, which counts in
    :func:`bootstrap_ci`.

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

    Implements the binning of docs/math.md §6.2: edges ``a_m = m / M`` and
    ``B_m = {i : p_i in (a_{m-1}, a_m]}``, with ``p = 0`` put in the first bin so that
    every sample is counted. A probability exactly on an inner edge goes to the lower bin.
    Edges are computed as ``arange(M + 1) / M`` (correctly rounded ``m / M``) rather than
    ``linspace``, whose ``m * (1/M)`` can be one ulp off and send ``p = m / M`` to the
    upper bin (e.g. M = 6, m = 5). Hand-written because the spec fixes these bins:
    ``sklearn.calibration.calibration_curve`` uses ``linspace`` edges and returns no counts,
    torchmetrics bins [a_{m-1}, a_m).

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

    Implements docs/math.md §6.2, ECE = Σ_m |B_m|/N |acc(B_m) − conf(B_m)| with
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
    """All binary metrics of docs/math.md §5.2–§6.2 in one JSON-serialisable dict.

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

    Precision P(t) = TP / (TP + FP) and recall R(t) = TPR(t) of docs/math.md §6.3 with the
    §6.1 rule ``y_hat = 1 iff score >= t``, by ``sklearn.metrics.precision_recall_curve``
    (``drop_intermediate=False``, its default): the same thresholds as :func:`roc_curve`
    without the +inf one, in decreasing order (recall rising), and without scikit-learn's
    appended (recall 0, precision 1) end point. Without positives, recall is undefined
    (0/0) and all NaN (as tpr in :func:`roc_curve`) and precision is 0; scikit-learn
    would set recall to 1 there.

    Args:
        targets: Labels in {0, 1}, shape (N,).
        scores: Real-valued scores, higher = more likely positive, shape (N,).

    Returns:
        ``(precision, recall, thresholds)``, float64 arrays of equal length (number of
        distinct scores).

    Raises:
        ValueError: On invalid inputs.
    """
    from sklearn.metrics import (
        precision_recall_curve as sk_pr_curve,  # sklearn: seconds to import; lazy
    )

    y, s = _check_scores(targets, scores)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no positives: recall set below
        precision, recall, thresholds = sk_pr_curve(y, s)
    precision = np.asarray(precision[-2::-1], dtype=np.float64)
    recall = np.asarray(recall[-2::-1], dtype=np.float64)
    if not np.any(y == 1):
        recall = np.full(recall.shape, np.nan)
    return precision, recall, np.asarray(thresholds[::-1], dtype=np.float64)


def average_precision(targets: ArrayLike, scores: ArrayLike) -> float:
    """Average precision, the step-wise area under :func:`precision_recall_curve`.

    Implements AP = Σ_n (R_n − R_{n−1}) P_n of docs/math.md §6.3, over the thresholds in
    decreasing order with R_0 = 0, by ``sklearn.metrics.average_precision_score`` (the
    same definition). It sums the terms in the opposite order, so it can differ from a
    left-to-right sum in the last bits: at most 2.9e-16 relative (2.2e-16 on real
    predictions), both sums within 2.8e-16 of the exact rational value. NaN without
    positives (scikit-learn would return 0).

    Args:
        targets: Labels in {0, 1}, shape (N,).
        scores: Real-valued scores, higher = more likely positive, shape (N,).

    Returns:
        AP in [0, 1], or ``float('nan')`` when ``targets`` has no positives.

    Raises:
        ValueError: On invalid inputs.
    """
    from sklearn.metrics import average_precision_score  # sklearn: seconds to import; lazy

    y, s = _check_scores(targets, scores)
    if not np.any(y == 1):
        return float("nan")
    return float(average_precision_score(y, s))


def bootstrap_ci(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    targets: ArrayLike,
    values: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic(targets, values)``.

    Implements docs/math.md §6.4. Resamples the N cases with replacement ``n_boot`` times
    from a seeded generator; resamples where the statistic is undefined (NaN, e.g. AUROC
    with one class) are dropped. Hand-written: scikit-learn has no bootstrap, and the
    NaN-dropping and the seeded resampling stream behind published intervals are ours.

    Args:
        statistic: Metric of ``(targets, values)``, e.g. :func:`auroc`.
        targets: Labels in {0, 1}, shape (N,).
        values: Scores or probabilities passed to ``statistic``, shape (N,).
        n_boot: Number of resamples.
        seed: Seed of ``numpy.random.default_rng``.
        level: Coverage of the interval.

    Returns:
        ``(lo, hi)``, or ``(nan, nan)`` when the statistic is undefined on every resample.

    Raises:
        ValueError: On invalid targets or values.
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
