"""Tests for medssl.metrics: hand-computed cases, slow references and library oracles."""

from __future__ import annotations

import json
import math
import warnings

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


def _slow_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """ECE straight from finetuning-theory.md §6.2, one Python loop per bin and sample."""
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert M.balanced_accuracy(y, p) == pytest.approx(
            skm.balanced_accuracy_score(y, np.asarray(p) >= 0.5)
        )
        assert M.balanced_accuracy([0, 0, 0], p) == pytest.approx(
            skm.balanced_accuracy_score([0, 0, 0], np.asarray(p) >= 0.5)
        )


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_threshold_metrics_match_sklearn(n: int, seed: int, threshold: float) -> None:
    y, p = _random_case(n, seed)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    assert M.confusion_matrix(y, p, threshold) == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert M.accuracy(y, p, threshold) == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single-class draws at tiny n
        expected_ba = skm.balanced_accuracy_score(y, pred)
    assert M.balanced_accuracy(y, p, threshold) == pytest.approx(expected_ba, abs=1e-12)


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


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tied", [False, True])
def test_roc_and_auroc_match_sklearn(n: int, seed: int, tied: bool) -> None:
    y, s = _random_case(n, seed)
    if tied:
        s = np.round(s, 1)  # many ties
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on single-class draws
        ref_fpr, ref_tpr, ref_thr = skm.roc_curve(y, s, drop_intermediate=False)
    fpr, tpr, thr = M.roc_curve(y, s)
    np.testing.assert_array_equal(thr, ref_thr)
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, ref_tpr, rtol=0, atol=1e-12)
    if len(np.unique(y)) < 2:
        assert math.isnan(M.auroc(y, s))
        return
    expected = skm.roc_auc_score(y, s)
    assert M.auroc(y, s) == pytest.approx(expected, abs=1e-12)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)


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
    for fn in (M.roc_curve, M.auroc):
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
