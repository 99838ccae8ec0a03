"""Evaluation: temperature scaling, PR/AP, bootstrap CIs, operating points, run checks."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve

from medssl import metrics as M
from medssl.calibration import brier, equal_mass_ece, fit_temperature, nll, sigmoid
from medssl.commands.evaluate import evaluate_run
from medssl.errors import MedsslError
from medssl.operating_points import choose_threshold, rates_at
from medssl.robustness import SHIFTS, apply_shift


def _data(n=300, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    z = scale * (y - 0.5) + rng.normal(size=n) * 1.5  # overconfident when scale is large
    return y, z


def test_nll_and_brier_formulas():
    y = np.array([1, 0, 1])
    z = np.array([0.0, 2.0, -1.0])
    expected = (np.log(2) + np.log1p(np.exp(2.0)) + np.log1p(np.exp(1.0))) / 3
    assert nll(y, z) == pytest.approx(expected)
    p = sigmoid(z)
    assert brier(y, p) == pytest.approx(np.mean((p - y) ** 2))
    assert sigmoid(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]


def test_temperature_minimises_nll_and_keeps_auroc():
    y, z = _data(scale=8.0)
    t = fit_temperature(y, z)
    for other in (t * 1.05, t / 1.05):
        assert nll(y, z / t) < nll(y, z / other)
    assert M.auroc(y, sigmoid(z / t)) == M.auroc(y, z)  # ranking unchanged
    # Logits that are already calibrated give T near 1.
    rng = np.random.default_rng(1)
    z0 = rng.normal(size=20000) * 2
    y0 = (rng.uniform(size=20000) < sigmoid(z0)).astype(int)
    assert fit_temperature(y0, z0) == pytest.approx(1.0, abs=0.05)


def test_equal_mass_ece_hand_case():
    y = np.array([0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.9])
    # 2 bins of 2: |0.5 - 0.15| and |1 - 0.8| -> (2*0.35 + 2*0.2) / 4 = 0.275
    assert equal_mass_ece(y, p, 2) == pytest.approx(0.275)


def test_average_precision_and_pr_curve_match_sklearn():
    for seed in range(3):
        y, z = _data(n=200, seed=seed)
        z = z.round(1)  # ties
        assert M.average_precision(y, z) == pytest.approx(average_precision_score(y, z))
        p, r, t = M.precision_recall_curve(y, z)
        sp, sr, st = precision_recall_curve(y, z)
        np.testing.assert_allclose(p, sp[::-1][1:])
        np.testing.assert_allclose(r, sr[::-1][1:])
        np.testing.assert_allclose(t, st[::-1])


def test_bootstrap_ci_is_seeded_and_covers():
    y, z = _data()
    a = M.bootstrap_ci(M.auroc, y, z, 300, seed=4)
    assert a == M.bootstrap_ci(M.auroc, y, z, 300, seed=4)
    assert a[0] < M.auroc(y, z) < a[1]
    # One class only: every resample's AUROC is undefined -> a NaN interval, no crash.
    lo, hi = M.bootstrap_ci(M.auroc, np.ones(5, int), z[:5], 50)
    assert np.isnan(lo) and np.isnan(hi)


def test_operating_points_meet_their_constraints():
    y, z = _data(n=500)
    t = choose_threshold(y, z, "sensitivity", 0.9)
    r = rates_at(y, z, t)
    assert r["sensitivity"] >= 0.9
    # No higher threshold also reaches 0.9 sensitivity.
    higher = np.unique(z[z > t])
    assert all(rates_at(y, z, h)["sensitivity"] < 0.9 for h in higher[:5])
    t = choose_threshold(y, z, "fpr", 0.1)
    assert 1 - rates_at(y, z, t)["specificity"] <= 0.1
    t = choose_threshold(y, z, "youden")
    best = max(rates_at(y, z, s)["balanced_accuracy"] for s in np.unique(z))
    assert rates_at(y, z, t)["balanced_accuracy"] == pytest.approx(best)
    r = rates_at(np.array([1, 1, 0, 0]), np.array([3.0, 1, 2, 0]), 1.5)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (1, 1, 1, 1)
    assert r["ppv"] == 0.5 and r["npv"] == 0.5


def test_operating_point_targets_are_checked_on_test():
    from medssl.operating_points import operating_points, target_on_test

    y, z = _data(n=500)
    same = operating_points(y, z, y, z)  # test = validation: every target holds
    assert same["sensitivity>=0.9"]["target"]["met_on_test"] is True
    assert target_on_test(same["fpr<=0.1"]) == "met" and target_on_test(same["youden"]) == ""
    # Test scores shifted up by 1: the validation thresholds now call far more positives.
    shifted = operating_points(y, z, y, z + 1.0)
    op = shifted["fpr<=0.1"]
    fpr = 1 - op["test"]["specificity"]
    assert fpr > 0.1 and op["target"]["met_on_test"] is False
    assert target_on_test(op) == f"missed: test FPR {fpr:.3f}"
    down = operating_points(y, z, y, z - 1.0)["sensitivity>=0.9"]
    assert down["test"]["sensitivity"] < 0.9 and target_on_test(down).startswith("missed")


def test_evaluate_run_on_a_real_run(tmp_path, data_root):
    from medssl.commands.train import TrainConfig, train

    cfg = TrainConfig(
        data_root=str(data_root),
        out=str(tmp_path / "r"),
        stem="imagenet",
        epochs=2,
        label_fraction=0.5,
        progress=False,
    )
    train(cfg, log=lambda *a: None)
    r = evaluate_run(tmp_path / "r", n_boot=100)
    assert r["test"]["auroc_after_scaling"] == r["test"]["auroc"]
    assert r["val"]["calibration_after"]["nll"] <= r["val"]["calibration_before"]["nll"] + 1e-12
    op = r["operating_points"]["sensitivity>=0.9"]
    assert op["val"]["sensitivity"] >= 0.9  # chosen on validation
    for f in (
        "evaluation.json",
        "evaluation.md",
        "pr.png",
        "reliability_temperature.png",
        "error_gallery.png",
        "robustness.png",
    ):
        assert (tmp_path / "r" / f).stat().st_size > 0
    assert "malignant" in (tmp_path / "r" / "evaluation.md").read_text()
    assert "target on test" in (tmp_path / "r" / "evaluation.md").read_text()
    rows = r["robustness"]
    assert len(rows) == 1 + 3 * len(SHIFTS)
    # Re-predicting the clean test images reproduces the saved predictions' AUROC exactly.
    assert rows[0]["shift"] == "none" and rows[0]["auroc"] == pytest.approx(r["test"]["auroc"])
    assert all(np.isfinite(row["delta_auroc"]) for row in rows[1:])


def test_shifts_identity_and_determinism():
    import torch

    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for name, param in (
        ("brightness", 1.0),
        ("contrast", 1.0),
        ("gamma", 1.0),
        ("crop_resize", 1.0),
        ("gaussian_noise", 0.0),
        ("speckle", 0.0),
    ):
        torch.testing.assert_close(apply_shift(x, name, param), x, atol=1e-5, rtol=0)
    a = apply_shift(x, "gaussian_noise", 0.1, seed=3)
    torch.testing.assert_close(a, apply_shift(x, "gaussian_noise", 0.1, seed=3))
    assert (a - x).abs().max() > 0.05
    j = apply_shift(x, "jpeg", 95)
    assert j.shape == x.shape and (j - x).abs().mean() < 0.1


def test_read_model_refuses_other_kinds_and_runs(tmp_path):
    from medssl.models import Encoder, metadata, read_model, save_model

    enc = Encoder("imagenet")
    save_model(enc, tmp_path / "e.safetensors", metadata("encoder", enc, dataset="breastmnist"))
    with pytest.raises(MedsslError, match="kind 'encoder', expected classifier"):
        read_model(tmp_path / "e.safetensors", "classifier")
    with pytest.raises(MedsslError, match="made for dataset 'breastmnist'"):
        read_model(tmp_path / "e.safetensors", "encoder", dataset="pneumoniamnist")


def test_evaluate_refuses_non_classifier_runs(tmp_path):
    with pytest.raises(MedsslError, match="an empty folder"):
        evaluate_run(tmp_path)
    (tmp_path / "config.yaml").write_text("dataset: breastmnist\n")
    (tmp_path / "encoder.safetensors").write_bytes(b"")
    with pytest.raises(MedsslError, match="SSL encoder, not a classifier"):
        evaluate_run(tmp_path)
