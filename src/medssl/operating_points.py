"""Operating points: decision thresholds chosen on validation, reported on test.

Rules (on any real score, e.g. logits; predicted positive iff score >= threshold):
- ``sensitivity``: the highest threshold whose sensitivity (TPR) is at least the target;
- ``fpr``: the lowest threshold whose false-positive rate is at most the target (highest TPR
  within the FPR budget);
- ``youden``: the threshold maximising TPR - FPR (= 2 balanced accuracy - 1).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from medssl.metrics import _check_scores, roc_curve


def choose_threshold(
    targets: ArrayLike, scores: ArrayLike, rule: str, target: float | None = None
) -> float:
    """Threshold on `scores` by `rule` (see module docstring); +inf means "call nobody"."""
    fpr, tpr, thresholds = roc_curve(targets, scores)
    if rule == "sensitivity":
        ok = np.flatnonzero(tpr >= target)
        return float(thresholds[ok[0]])  # tpr rises as the threshold falls: first is highest
    if rule == "fpr":
        ok = np.flatnonzero(fpr <= target)
        return float(thresholds[ok[-1]])
    if rule == "youden":
        return float(thresholds[int(np.argmax(tpr - fpr))])
    raise ValueError(f"unknown operating-point rule {rule!r}; use sensitivity, fpr or youden")


def rates_at(targets: ArrayLike, scores: ArrayLike, threshold: float) -> dict:
    """Confusion matrix, sensitivity, specificity, PPV, NPV, balanced accuracy at a threshold."""
    y, s = _check_scores(targets, scores)
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    sens, spec = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {
        "threshold": float(threshold),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "balanced_accuracy": (sens + spec) / 2,
    }


def operating_points(
    val_targets: ArrayLike,
    val_scores: ArrayLike,
    test_targets: ArrayLike,
    test_scores: ArrayLike,
    target_sensitivity: float = 0.9,
    target_fpr: float = 0.1,
) -> dict:
    """Choose each rule's threshold on validation and report it on validation and test.

    Rules with a target also record whether the target still holds on test
    (``target``: metric, value, test_value, ``met_on_test``): a threshold fitted on validation
    can miss it on a test split that is distributed differently."""
    rules = {
        f"sensitivity>={target_sensitivity:g}": ("sensitivity", target_sensitivity),
        f"fpr<={target_fpr:g}": ("fpr", target_fpr),
        "youden": ("youden", None),
    }
    out = {}
    for name, (rule, target) in rules.items():
        t = choose_threshold(val_targets, val_scores, rule, target)
        test = rates_at(test_targets, test_scores, t)
        out[name] = {"val": rates_at(val_targets, val_scores, t), "test": test}
        if target is not None:  # rule is the metric: "sensitivity" or "fpr"
            value = test["sensitivity"] if rule == "sensitivity" else 1 - test["specificity"]
            met = value >= target if rule == "sensitivity" else value <= target
            out[name]["target"] = {
                "metric": rule,
                "value": target,
                "test_value": value,
                "met_on_test": met,
            }
    return out


def target_on_test(op: dict) -> str:
    """'met', 'missed: test FPR 0.363' or '' (no target) for one operating point's entry."""
    target = op.get("target")
    if target is None:
        return ""
    if target["met_on_test"]:
        return "met"
    name = "FPR" if target["metric"] == "fpr" else target["metric"]
    return f"missed: test {name} {target['test_value']:.3f}"
