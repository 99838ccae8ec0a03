"""Tests for medssl.plots: every figure is written as a real, non-empty PNG."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medssl import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.is_file()
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_SIGNATURE
    assert not list(path.parent.glob("*.tmp.png"))  # the temporary file was renamed away


def _splits(seed: int = 0) -> tuple[dict, dict, dict]:
    rng = np.random.default_rng(seed)
    targets, probs, logits = {}, {}, {}
    for split, n in (("val", 120), ("test", 300)):
        y = rng.integers(0, 2, size=n)
        z = rng.normal(size=n) + 2.0 * (y - 0.5)
        targets[split], logits[split], probs[split] = y, z, 1.0 / (1.0 + np.exp(-z))
    return targets, probs, logits


def test_learning_curves_full_history(tmp_path: Path) -> None:
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 1.2 / e,
            "val_auroc": 0.6 + 0.03 * e,
            "lr": 1e-3 * 0.9**e,
        }
        for e in range(1, 8)
    ]
    out = plots.plot_learning_curves(history, tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    _assert_png(out)


def test_learning_curves_missing_validation(tmp_path: Path) -> None:
    history = [
        {"epoch": 1, "train_loss": 0.7, "val_loss": None, "val_auroc": None, "lr": 0.0},
        {"epoch": 2, "train_loss": 0.6, "lr": 1e-3},
        {"epoch": 3, "train_loss": 0.5, "val_loss": 0.55, "val_auroc": math.nan, "lr": 1e-3},
    ]
    _assert_png(plots.plot_learning_curves(history, tmp_path / "sub" / "curves.png"))
    with pytest.raises(ValueError, match="history is empty"):
        plots.plot_learning_curves([], tmp_path / "empty.png")


def test_reliability_diagram(tmp_path: Path) -> None:
    targets, probs, _ = _splits()
    out = plots.plot_reliability_diagram(
        targets, probs, tmp_path / "rel.png", n_bins=10, positive_name="pneumonia"
    )
    _assert_png(out)


def test_roc_curves(tmp_path: Path) -> None:
    targets, _, logits = _splits(1)
    _assert_png(plots.plot_roc_curves(targets, logits, tmp_path / "roc.png", "malignant"))


def test_single_class_split_does_not_crash(tmp_path: Path) -> None:
    targets, probs, logits = _splits(2)
    targets["val"] = np.ones_like(targets["val"])  # AUROC undefined on this split
    _assert_png(plots.plot_roc_curves(targets, logits, tmp_path / "roc.png"))
    _assert_png(plots.plot_reliability_diagram(targets, probs, tmp_path / "rel.png"))


def test_overwrites_existing_file(tmp_path: Path) -> None:
    targets, _, logits = _splits(3)
    path = tmp_path / "roc.png"
    path.write_bytes(b"old")
    _assert_png(plots.plot_roc_curves(targets, logits, path))


def test_mismatched_splits_raise(tmp_path: Path) -> None:
    targets, probs, _ = _splits()
    del probs["test"]
    with pytest.raises(ValueError, match="same split names"):
        plots.plot_reliability_diagram(targets, probs, tmp_path / "rel.png")
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        plots.plot_reliability_diagram({"val": [0, 1]}, {"val": [0.5, 2.0]}, tmp_path / "r.png")
