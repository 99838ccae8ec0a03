"""Tests for medssl.metrics: hand-computed cases and slow references written from the spec
equations (docs/math.md §5, §6.1, §6.2). Functions that call scikit-learn are checked against
those references, not against scikit-learn; library oracles remain for the hand-written ones."""

from __future__ import annotations

import json
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from sklearn import metrics as skm

from medssl import metrics as M

SIZES = [1, 2, 7, 50, 333, 2000]
SEEDS = [0, 1, 2]


def _random_case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    # Mildly informative, continuous probabilities: no ties and no bin-edge hits.
    p = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.5 * (y - 0.5))))
    return y, p


def _slow_confusion(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, int]:
    """Confusion matrix of docs/math.md §5 at the §6.1 rule y_hat = 1 iff p >= t, by loop."""
    c = {"tn": 0, "fp": 0, "fn": 0, "tp": 0}
    for yi, pi in zip(y, p, strict=True):
        key = ("t" if (pi >= t) == (yi == 1) else "f") + ("p" if pi >= t else "n")
        c[key] += 1
    return c


def _slow_balanced_accuracy(y: np.ndarray, p: np.ndarray, t: float) -> float:
    """BA = ½(TP / (TP + FN) + TN / (TN + FP)) (docs/math.md §5); with one class absent,
    the rate of the class present (the documented choice, docs/math.md)."""
    c = _slow_confusion(y, p, t)
    rates = []
    if c["tp"] + c["fn"]:
        rates.append(c["tp"] / (c["tp"] + c["fn"]))
    if c["tn"] + c["fp"]:
        rates.append(c["tn"] / (c["tn"] + c["fp"]))
    return sum(rates) / len(rates)


def _slow_roc(y: np.ndarray, s: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """(FPR(t), TPR(t)) of docs/math.md §6.1 at t = +inf and each distinct score, decreasing;
    each rate counted by a loop over the samples (NaN for an absent class)."""
    n_pos = sum(1 for yi in y if yi == 1)
    n_neg = len(y) - n_pos
    fpr, tpr, thr = [], [], [math.inf, *sorted(set(s.tolist()), reverse=True)]
    for t in thr:
        tp = sum(1 for yi, si in zip(y, s, strict=True) if si >= t and yi == 1)
        fp = sum(1 for yi, si in zip(y, s, strict=True) if si >= t and yi == 0)
        tpr.append(tp / n_pos if n_pos else math.nan)
        fpr.append(fp / n_neg if n_neg else math.nan)
    return fpr, tpr, thr


def _exact_auroc(y: np.ndarray, s: np.ndarray) -> Fraction:
    """AUROC = P(score_pos > score_neg) + ½ P(score_pos = score_neg) (docs/math.md §6.1),
    exactly, over all positive-negative pairs."""
    pos, neg = s[y == 1], s[y == 0]
    wins = int(np.count_nonzero(pos[:, None] > neg[None, :]))
    ties = int(np.count_nonzero(pos[:, None] == neg[None, :]))
    return Fraction(2 * wins + ties, 2 * len(pos) * len(neg))


def _exact_pr(y: np.ndarray, s: np.ndarray) -> tuple[list[Fraction], list[Fraction]]:
    """Precision TP / (TP + FP) and recall TP / (TP + FN) at each distinct score (decreasing,
    y_hat = 1 iff score >= t), exactly; needs a positive."""
    n_pos = int(np.count_nonzero(y))
    precision, recall = [], []
    for t in sorted(set(s.tolist()), reverse=True):
        tp = int(np.count_nonzero((s >= t) & (y == 1)))
        precision.append(Fraction(tp, int(np.count_nonzero(s >= t))))
        recall.append(Fraction(tp, n_pos))
    return precision, recall


def _exact_average_precision(y: np.ndarray, s: np.ndarray) -> Fraction:
    """AP = Σ_n (R_n − R_{n−1}) P_n over thresholds in decreasing order, R_0 = 0, exactly."""
    precision, recall = _exact_pr(y, s)
    previous = [Fraction(0), *recall[:-1]]
    terms = zip(previous, recall, precision, strict=True)
    return sum(((r - r0) * p for r0, r, p in terms), Fraction(0))


def _slow_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """ECE straight from docs/math.md §6.2, one Python loop per bin and sample."""
    n = len(y)
    total = 0.0
    for m in range(1, n_bins + 1):
        lo, hi = (m - 1) / n_bins, m / n_bins
        members = [i for i in range(n) if lo < p[i] <= hi or (m == 1 and p[i] == 0.0)]
        if not members:
            continue
        acc = sum(y[i] == 1 for i in members) / len(members)
        conf = sum(p[i] for i in members) / len(members)
        total += len(members) / n * abs(acc - conf)
    return total


# ----------------------------------------------------------------------------- confusion


def test_confusion_matrix_by_hand() -> None:
    y = [0, 0, 1, 1, 1, 0]
    p = [0.1, 0.5, 0.5, 0.9, 0.2, 0.7]
    # p >= 0.5 -> pred [0, 1, 1, 1, 0, 1]; (y, pred): (0,0) tn, (0,1) fp, (1,1) tp, (1,1) tp,
    # (1,0) fn, (0,1) fp -> tn=1, fp=2, fn=1, tp=2.
    assert M.confusion_matrix(y, p) == {"tn": 1, "fp": 2, "fn": 1, "tp": 2}
    # Threshold 0.6 -> pred [0, 0, 0, 1, 0, 1]: tn=2, fp=1, fn=2, tp=1.
    assert M.confusion_matrix(y, p, threshold=0.6) == {"tn": 2, "fp": 1, "fn": 2, "tp": 1}
    c = M.confusion_matrix(y, p)
    assert all(type(v) is int for v in c.values())


def test_accuracy_and_balanced_accuracy_by_hand() -> None:
    y = [0, 0, 1, 1, 1, 0]
    p = [0.1, 0.5, 0.5, 0.9, 0.2, 0.7]
    # tn=1, fp=2, fn=1, tp=2: Acc = 3/6; TPR = 2/3, TNR = 1/3, BA = (2/3 + 1/3)/2 = 0.5.
    assert M.accuracy(y, p) == pytest.approx(0.5)
    assert M.balanced_accuracy(y, p) == pytest.approx(0.5)
    # Imbalanced, majority-class predictor: 9 negatives, 1 positive, always predict 0.
    y2 = [0] * 9 + [1]
    p2 = [0.1] * 10
    # Acc = 9/10; TPR = 0/1, TNR = 9/9 -> BA = 0.5.
    assert M.accuracy(y2, p2) == pytest.approx(0.9)
    assert M.balanced_accuracy(y2, p2) == pytest.approx(0.5)


def test_perfect_and_inverted_classifier() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.where(y == 1, 0.8, 0.3)
    assert M.accuracy(y, p) == 1.0
    assert M.balanced_accuracy(y, p) == 1.0
    assert M.auroc(y, p) == 1.0
    assert M.accuracy(y, 1 - p) == 0.0
    assert M.balanced_accuracy(y, 1 - p) == 0.0
    assert M.auroc(y, 1 - p) == 0.0


def test_balanced_accuracy_single_class_uses_present_class() -> None:
    # All positives: TNR is 0/0, so BA = TPR = 2/3 (preds [1, 1, 0]).
    y = [1, 1, 1]
    p = [0.9, 0.6, 0.2]
    assert M.balanced_accuracy(y, p) == pytest.approx(2 / 3)
    # All negatives: BA = TNR = 1/3 (preds [1, 1, 0] -> one true negative).
    assert M.balanced_accuracy([0, 0, 0], p) == pytest.approx(1 / 3)
    # Predictions all of the one class present: BA = 1 (TPR = 3/3), no warning leaks.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.balanced_accuracy(y, [0.9, 0.8, 0.7]) == 1.0
        assert M.balanced_accuracy([0, 0], [0.1, 0.7]) == 0.5


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_threshold_metrics_match_spec_formulas(n: int, seed: int, threshold: float) -> None:
    y, p = _random_case(n, seed)
    p = np.concatenate([p, [threshold, 0.0, 1.0]])  # p = t exactly is predicted positive
    y = np.concatenate([y, [0, 1, 0]])
    c = _slow_confusion(y, p, threshold)
    assert M.confusion_matrix(y, p, threshold) == c
    assert M.accuracy(y, p, threshold) == (c["tp"] + c["tn"]) / len(y)
    # scikit-learn computes BA; the formula gives the same float (a mean of two rates).
    assert M.balanced_accuracy(y, p, threshold) == _slow_balanced_accuracy(y, p, threshold)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_and_accuracy_match_sklearn(n: int, seed: int) -> None:
    # These two stay hand-written; scikit-learn is an independent oracle for them.
    y, p = _random_case(n, seed)
    pred = (p >= 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert M.confusion_matrix(y, p) == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert M.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)


# ----------------------------------------------------------------------------- ROC / AUROC


def test_roc_curve_by_hand_with_ties() -> None:
    y = [0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.4, 0.4, 0.8]
    # 3 positives, 2 negatives. Thresholds: inf, 0.8, 0.4, 0.1.
    # t=0.8: {0.8} -> tp=1, fp=0; t=0.4: three more (2 pos, 1 neg) -> tp=3, fp=1; t=0.1: all.
    fpr, tpr, thr = M.roc_curve(y, s)
    np.testing.assert_array_equal(thr, [np.inf, 0.8, 0.4, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 2, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1, 1])
    # Trapezoids: 0 + (1/2)(1/3 + 1)/2 + (1/2)(1 + 1)/2 = 1/3 + 1/2 = 5/6.
    assert M.auroc(y, s) == pytest.approx(5 / 6)
    assert np.trapezoid(tpr, fpr) == pytest.approx(5 / 6)


def test_auroc_mann_whitney_by_hand() -> None:
    y = [1, 0, 1, 0]
    s = [0.9, 0.8, 0.3, 0.1]
    # Pairs (pos, neg): (0.9,0.8) win, (0.9,0.1) win, (0.3,0.8) loss, (0.3,0.1) win -> 3/4.
    assert M.auroc(y, s) == pytest.approx(0.75)
    # A tied pair counts 1/2: (0.5,0.5) tie, (0.5,0.2) win -> (0.5 + 1)/2.
    assert M.auroc([1, 0, 0], [0.5, 0.5, 0.2]) == pytest.approx(0.75)


def test_auroc_all_scores_equal_is_half() -> None:
    y = [0, 1, 1, 0, 0, 1, 0]
    assert M.auroc(y, [0.3] * 7) == 0.5
    fpr, tpr, thr = M.roc_curve(y, [0.3] * 7)
    np.testing.assert_array_equal(fpr, [0, 1])
    np.testing.assert_array_equal(tpr, [0, 1])
    np.testing.assert_array_equal(thr, [np.inf, 0.3])


def test_auroc_single_class_is_nan() -> None:
    assert math.isnan(M.auroc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(M.auroc([0], [0.2]))
    fpr, tpr, _ = M.roc_curve([1, 1, 1], [0.2, 0.5, 0.9])
    assert np.isnan(fpr).all()
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 1])
    fpr, tpr, _ = M.roc_curve([0, 0], [0.2, 0.5])
    assert np.isnan(tpr).all()
    np.testing.assert_allclose(fpr, [0, 0.5, 1])


def test_roc_curve_keeps_every_threshold() -> None:
    # Collinear points (here all positives first) are kept: one point per distinct score,
    # as operating_points needs; scikit-learn's default drop_intermediate=True would drop them.
    y = [1, 1, 1, 0, 0]
    s = [0.9, 0.8, 0.7, 0.2, 0.1]
    fpr, tpr, thr = M.roc_curve(y, s)
    np.testing.assert_array_equal(thr, [np.inf, 0.9, 0.8, 0.7, 0.2, 0.1])
    np.testing.assert_array_equal(tpr, [0, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_array_equal(fpr, [0, 0, 0, 0, 0.5, 1])
    assert all(a.dtype == np.float64 for a in (fpr, tpr, thr))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tied", [False, True])
def test_roc_and_auroc_match_spec_formulas(n: int, seed: int, tied: bool) -> None:
    y, s = _random_case(n, seed)
    if tied:
        s = np.round(s, 1)  # many ties
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # single-class draws must not warn either
        fpr, tpr, thr = M.roc_curve(y, s)
        auc = M.auroc(y, s)
    ref_fpr, ref_tpr, ref_thr = _slow_roc(y, s)
    np.testing.assert_array_equal(thr, ref_thr)
    # count / N in float64 either way: the same floats.
    np.testing.assert_array_equal(fpr, ref_fpr)
    np.testing.assert_array_equal(tpr, ref_tpr)
    if len(np.unique(y)) < 2:
        assert math.isnan(auc)
        return
    # Mann–Whitney from exact rank sums: the correctly rounded exact AUROC, so equal AUROCs
    # always compare equal (the reason it is not sklearn's trapezoid sum).
    assert auc == float(_exact_auroc(y, s))
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc, abs=1e-12)
    # auroc is hand-written, so scikit-learn is an independent oracle for it.
    assert auc == pytest.approx(skm.roc_auc_score(y, s), rel=1e-15)


@pytest.mark.parametrize("seed", SEEDS)
def test_auroc_invariant_under_monotone_transform(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=500)
    logits = rng.normal(size=500) + y
    probs = 1.0 / (1.0 + np.exp(-logits))
    a = M.auroc(y, logits)
    assert M.auroc(y, probs) == pytest.approx(a, abs=1e-12)
    assert M.auroc(y, 3.0 * logits - 7.0) == pytest.approx(a, abs=1e-12)
    assert M.auroc(y, np.exp(logits)) == pytest.approx(a, abs=1e-12)
    # A strictly decreasing transform flips the ranking.
    assert M.auroc(y, -logits) == pytest.approx(1.0 - a, abs=1e-12)


# ----------------------------------------------------------------------------- PR / AP


def test_pr_curve_and_average_precision_by_hand() -> None:
    y = [0, 1, 1, 0, 1]
    s = [0.1, 0.4, 0.4, 0.4, 0.8]
    # t=0.8: tp 1 of 1 predicted; t=0.4: tp 3 of 4; t=0.1: tp 3 of 5. Recall 1/3, 1, 1.
    precision, recall, thr = M.precision_recall_curve(y, s)
    np.testing.assert_array_equal(thr, [0.8, 0.4, 0.1])
    np.testing.assert_array_equal(precision, [1.0, 3 / 4, 3 / 5])
    np.testing.assert_array_equal(recall, [1 / 3, 1.0, 1.0])
    # AP = (1/3)(1) + (2/3)(3/4) + 0 = 5/6.
    assert M.average_precision(y, s) == pytest.approx(5 / 6)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tied", [False, True])
def test_pr_curve_and_average_precision_match_spec_formulas(n: int, seed: int, tied: bool) -> None:
    y, s = _random_case(n, seed)
    if tied:
        s = np.round(s, 1)
    if not y.any():
        y[0] = 1
    precision, recall, thr = M.precision_recall_curve(y, s)
    ref_p, ref_r = _exact_pr(y, s)
    np.testing.assert_array_equal(thr, sorted(set(s.tolist()), reverse=True))
    # One division of exact counts each: the correctly rounded rationals.
    np.testing.assert_array_equal(precision, [float(v) for v in ref_p])
    np.testing.assert_array_equal(recall, [float(v) for v in ref_r])
    # scikit-learn sums AP's terms right to left: within a few ulps of the exact value.
    assert M.average_precision(y, s) == pytest.approx(
        float(_exact_average_precision(y, s)), rel=1e-15
    )


def test_pr_curve_and_average_precision_without_positives() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        precision, recall, thr = M.precision_recall_curve([0, 0, 0], [0.2, 0.5, 0.5])
        assert math.isnan(M.average_precision([0, 0, 0], [0.2, 0.5, 0.5]))
    np.testing.assert_array_equal(thr, [0.5, 0.2])
    np.testing.assert_array_equal(precision, [0.0, 0.0])  # TP = 0 of >= 1 predicted
    assert np.isnan(recall).all()  # 0 / 0, as tpr in roc_curve


# ----------------------------------------------------------------------------- calibration


def test_calibration_bins_edges_by_hand() -> None:
    y = [1, 0, 1, 0, 1, 1]
    p = [0.0, 0.2, 0.2000001, 0.4, 0.5, 1.0]
    b = M.calibration_bins(y, p, n_bins=5)
    np.testing.assert_array_equal(b["edges"], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    # Bins (0,.2], (.2,.4], (.4,.6], (.6,.8], (.8,1]; p=0 -> bin 0; p=0.2 on an edge -> bin 0;
    # 0.2000001 and 0.4 (on an edge) -> bin 1; 0.5 -> bin 2; 1.0 -> last bin.
    np.testing.assert_array_equal(b["counts"], [2, 2, 1, 0, 1])
    # bin 0: p {0, 0.2}, y {1, 0}: conf 0.1, freq 0.5; bin 1: p {0.2000001, 0.4}, y {1, 0}.
    np.testing.assert_allclose(b["confidence"][[0, 1, 2, 4]], [0.1, 0.30000005, 0.5, 1.0])
    np.testing.assert_allclose(b["frequency"][[0, 1, 2, 4]], [0.5, 0.5, 1.0, 1.0])
    assert np.isnan(b["confidence"][3]) and np.isnan(b["frequency"][3])


@pytest.mark.parametrize("n_bins", [1, 3, 5, 6, 7, 10, 12, 15, 20, 49])
def test_probability_on_every_inner_edge_goes_to_lower_bin(n_bins: int) -> None:
    # p = m/M exactly (correctly rounded) must land in bin m (1-based), i.e. (a_{m-1}, a_m].
    p = np.arange(n_bins + 1) / n_bins
    b = M.calibration_bins(np.zeros(n_bins + 1, dtype=int), p, n_bins=n_bins)
    expected = np.ones(n_bins, dtype=int)
    expected[0] += 1  # p = 0 joins p = 1/M in the first bin
    np.testing.assert_array_equal(b["counts"], expected)


def test_ece_by_hand() -> None:
    y = [0, 1, 1, 0, 1]
    p = [0.1, 0.2, 0.6, 0.7, 0.9]
    # M=2: bin (0,.5] = {0.1, 0.2}, y {0,1}: conf .15, acc .5 -> |.35| * 2/5 = .14.
    #      bin (.5,1] = {.6,.7,.9}, y {1,0,1}: conf 2.2/3, acc 2/3 -> |-.2/3| * 3/5 = .04.
    assert M.expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.18)
    # One sample: ECE = |y - p|.
    assert M.expected_calibration_error([1], [0.3], n_bins=10) == pytest.approx(0.7)
    # Perfectly calibrated bins: four samples at p=0.25 with exactly one positive.
    assert M.expected_calibration_error([1, 0, 0, 0], [0.25] * 4, n_bins=4) == 0.0
    # Positive-class calibration, not top-label confidence. M=1, y=[0,1], p=[.2,.8]:
    # conf = .5, frequency of y=1 = .5 -> ECE 0. (Top-label: conf .8, both right -> .2.)
    assert M.expected_calibration_error([0, 1], [0.2, 0.8], n_bins=1) == pytest.approx(0.0)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_bins", [1, 5, 15])
def test_ece_matches_slow_reference(n: int, seed: int, n_bins: int) -> None:
    y, p = _random_case(min(n, 400), seed)
    # Add exact edge hits, 0 and 1, which the reference handles by its own comparisons.
    p = np.concatenate([p, np.arange(n_bins + 1) / n_bins])
    y = np.concatenate([y, np.arange(n_bins + 1) % 2])
    assert M.expected_calibration_error(y, p, n_bins) == pytest.approx(
        _slow_ece(y, p, n_bins), abs=1e-12
    )


@pytest.mark.parametrize("n", [7, 50, 333, 2000])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_ece_matches_torchmetrics_on_continuous_probs(n: int, seed: int, n_bins: int) -> None:
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.classification")
    y, p = _random_case(n, seed)
    metric = tmc.BinaryCalibrationError(n_bins=n_bins, norm="l1")
    expected = float(metric(torch.tensor(p, dtype=torch.float64), torch.tensor(y)))
    assert M.expected_calibration_error(y, p, n_bins) == pytest.approx(expected, abs=1e-6)


def test_torchmetrics_bins_differ_on_edges() -> None:
    # torchmetrics bins with torch.bucketize(p, linspace(0, 1, M+1), right=True) - 1, i.e.
    # left-closed bins [a_{m-1}, a_m) plus a separate bin for p = 1, whereas the spec uses
    # right-closed (a_{m-1}, a_m]. The two agree unless some p falls exactly on an edge.
    torch = pytest.importorskip("torch")
    tmc = pytest.importorskip("torchmetrics.classification")
    y = [0, 1]
    p = [0.2, 0.3]
    # Spec, M=5: 0.2 -> (0,.2]: |0 - .2| / 2 = .1; 0.3 -> (.2,.4]: |1 - .3| / 2 = .35 -> .45.
    assert M.expected_calibration_error(y, p, n_bins=5) == pytest.approx(0.45)
    # torchmetrics: both in [.2,.4): conf .25, acc .5 -> .25.
    metric = tmc.BinaryCalibrationError(n_bins=5, norm="l1")
    tm = float(metric(torch.tensor(p, dtype=torch.float64), torch.tensor(y)))
    assert tm == pytest.approx(0.25)


# ----------------------------------------------------------------------------- binary_metrics


def test_binary_metrics_dict() -> None:
    y, p = _random_case(200, 3)
    logits = np.log(p / (1 - p))
    out = M.binary_metrics(y, p, scores=logits, n_bins=10, threshold=0.4)
    assert set(out) == {
        "n",
        "n_positive",
        "n_negative",
        "accuracy",
        "balanced_accuracy",
        "auroc",
        "ece",
        "confusion",
        "threshold",
        "n_bins",
    }
    assert out["n"] == 200 and out["n_positive"] + out["n_negative"] == 200
    assert out["n_positive"] == int(y.sum())
    assert out["accuracy"] == M.accuracy(y, p, 0.4)
    assert out["balanced_accuracy"] == M.balanced_accuracy(y, p, 0.4)
    assert out["auroc"] == pytest.approx(M.auroc(y, p), abs=1e-12)
    assert out["ece"] == M.expected_calibration_error(y, p, 10)
    assert out["confusion"] == M.confusion_matrix(y, p, 0.4)
    assert out["threshold"] == 0.4 and out["n_bins"] == 10
    assert json.loads(json.dumps(out)) == out
    for key, value in out.items():
        if key != "confusion":
            assert type(value) in (int, float), key


def test_binary_metrics_single_class() -> None:
    out = M.binary_metrics([1, 1], [0.7, 0.2])
    assert math.isnan(out["auroc"])
    assert out["balanced_accuracy"] == 0.5
    assert out["n_negative"] == 0


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("targets", "probs", "match"),
    [
        ([0, 1], [0.5], "same length"),
        ([], [], "empty"),
        ([[0, 1]], [[0.2, 0.3]], "1-D"),
        ([0, 2], [0.1, 0.2], "only 0 and 1"),
        ([0, 0.5], [0.1, 0.2], "only 0 and 1"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.2], r"\[0, 1\]"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        (["a", "b"], [0.1, 0.2], "numeric"),
    ],
)
def test_invalid_probability_inputs(targets: list, probs: list, match: str) -> None:
    for fn in (
        M.confusion_matrix,
        M.accuracy,
        M.balanced_accuracy,
        M.calibration_bins,
        M.expected_calibration_error,
        M.binary_metrics,
    ):
        with pytest.raises(ValueError, match=match):
            fn(targets, probs)


@pytest.mark.parametrize(
    ("targets", "scores", "match"),
    [
        ([0, 1], [0.5], "same length"),
        ([], [], "empty"),
        ([0, 3], [0.1, 0.2], "only 0 and 1"),
        ([0, 1], [0.1, float("inf")], "NaN or inf"),
    ],
)
def test_invalid_score_inputs(targets: list, scores: list, match: str) -> None:
    for fn in (M.roc_curve, M.auroc, M.precision_recall_curve, M.average_precision):
        with pytest.raises(ValueError, match=match):
            fn(targets, scores)


def test_scores_may_be_any_real_but_probs_may_not() -> None:
    assert M.auroc([0, 1], [-3.0, 5.0]) == 1.0
    with pytest.raises(ValueError, match="threshold"):
        M.accuracy([0, 1], [0.1, 0.2], threshold=float("nan"))
    with pytest.raises(ValueError, match="n_bins"):
        M.expected_calibration_error([0, 1], [0.1, 0.2], n_bins=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.binary_metrics([0, 1], [-3.0, 5.0])
