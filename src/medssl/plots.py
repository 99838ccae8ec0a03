"""Figures of a fine-tuning run: learning curves, reliability diagram and ROC curves as PNGs.

Figures are built with the object-oriented :class:`matplotlib.figure.Figure` API (Agg canvas),
never through pyplot, so plotting works headless and leaves the user's backend and pyplot's
global figure list untouched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from PIL import Image

from medssl import metrics
from medssl.io.artifacts import atomic_path

__all__ = [
    "plot_augmentation_grid",
    "plot_label_efficiency",
    "plot_pareto",
    "plot_learning_curves",
    "plot_pretrain_curves",
    "plot_reliability_diagram",
    "plot_roc_curves",
]

DPI = 120


def _save(fig: Figure, path: str | os.PathLike[str], maker: str = "medssl") -> Path:
    """Write ``fig`` as PNG via a temporary file and an atomic rename; return the path. The
    PNG's Software field names its maker, so a command can tell its own files (`written_by`)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png", metadata={"Software": maker})
    finally:
        fig.clear()
    return path


def written_by(maker: str):
    """A test of whether an existing PNG was written by `medssl {maker}`."""

    def test(path: Path) -> bool:
        try:
            with Image.open(path) as img:
                return img.format == "PNG" and img.info.get("Software") == f"medssl {maker}"
        except Exception:  # not an image at all
            return False

    return test


def _column(history: Sequence[Mapping], key: str) -> np.ndarray:
    """``key`` of every row as float64, NaN where missing or None."""
    return np.array(
        [math.nan if row.get(key) is None else float(row[key]) for row in history],
        dtype=np.float64,
    )


def _check_splits(targets_by_split: Mapping, values_by_split: Mapping, name: str) -> None:
    if not targets_by_split:
        raise ValueError("targets_by_split is empty; pass at least one split, e.g. {'val': y}")
    if set(targets_by_split) != set(values_by_split):
        raise ValueError(
            f"targets_by_split and {name} must have the same split names, got "
            f"{sorted(targets_by_split)} and {sorted(values_by_split)}"
        )


def plot_learning_curves(
    history: list[dict],
    path: str | os.PathLike[str],
    auroc_label: str = "validation AUROC",
    curve_labels: tuple[str, str] | None = None,
) -> Path:
    """Plot losses, validation AUROC and learning rate against epoch.

    Args:
        history: One row per epoch with keys ``epoch``, ``train_loss``, ``lr`` and optionally
            ``val_loss`` / ``val_auroc`` / ``val_auroc_2`` (missing or None values are skipped).
        path: Output PNG path.
        auroc_label: Title of the AUROC panel.
        curve_labels: Legends of ``val_auroc`` and ``val_auroc_2``; given, the second curve is
            drawn in the AUROC panel too.

    Returns:
        The written path.

    Raises:
        ValueError: If ``history`` is empty.
    """
    if not history:
        raise ValueError("history is empty; need at least one epoch row to plot")
    epoch = _column(history, "epoch")
    train_loss = _column(history, "train_loss")
    val_loss = _column(history, "val_loss")
    val_auroc = _column(history, "val_auroc")
    val_auroc_2 = _column(history, "val_auroc_2")
    lr = _column(history, "lr")
    has_auroc = bool(np.isfinite(val_auroc).any())
    has_lr = bool(np.isfinite(lr).any())

    n_panels = 1 + has_auroc + has_lr
    fig = Figure(figsize=(4.5 * n_panels, 3.6), layout="constrained")
    axes = list(fig.subplots(1, n_panels, squeeze=False)[0])

    ax = axes.pop(0)
    for values, label in ((train_loss, "train"), (val_loss, "val")):
        ok = np.isfinite(values)
        if ok.any():
            ax.plot(epoch[ok], values[ok], marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()

    if has_auroc:
        _auroc_panel(axes.pop(0), epoch, val_auroc, val_auroc_2, auroc_label, curve_labels)

    if has_lr:
        ax = axes.pop(0)
        ok = np.isfinite(lr)
        ax.plot(epoch[ok], lr[ok], marker="o", markersize=3, color="C2")
        if (lr[ok] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title("learning rate")

    return _save(fig, path)


def _auroc_panel(ax, epoch, val_auroc, val_auroc_2, label: str, curve_labels) -> None:
    """Validation AUROC against epoch (and a second curve), the best epoch marked."""
    ok = np.isfinite(val_auroc)
    first, second = curve_labels or (None, None)
    ax.plot(epoch[ok], val_auroc[ok], marker="o", markersize=3, color="C1", label=first)
    ok2 = np.isfinite(val_auroc_2)
    if second and ok2.any():
        ax.plot(epoch[ok2], val_auroc_2[ok2], marker="s", markersize=3, color="C4", label=second)
    best = int(np.nanargmax(val_auroc))  # first maximum, as in "best by strict improvement"
    ax.axvline(epoch[best], color="0.6", linestyle="--", linewidth=1)
    ax.plot(
        epoch[best],
        val_auroc[best],
        marker="*",
        markersize=12,
        color="C3",
        linestyle="none",
        label=f"best: epoch {epoch[best]:g}, AUROC {val_auroc[best]:.4f}",
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(label)
    ax.legend(loc="lower right")


def plot_pretrain_curves(
    history: list[dict], path: str | os.PathLike[str], knn_init: dict | None = None
) -> Path:
    """SimCLR curves: NT-Xent loss, kNN validation AUROC of the frozen encoder with the full
    and the few-label memory bank (the initial encoder's, `knn_init.json`'s keys, at epoch -1
    when given), and LR."""
    init = []
    if knn_init:
        init = [
            {
                "epoch": -1,
                "val_auroc": knn_init.get("knn_val_auroc"),
                "val_auroc_2": knn_init.get("knn_few_val_auroc"),
            }
        ]
    rows = init + [
        {
            "epoch": r["epoch"],
            "train_loss": r["loss"],
            "val_auroc": r.get("knn_val_auroc"),
            "val_auroc_2": r.get("knn_few_val_auroc"),
            "lr": r.get("lr"),
        }
        for r in history
    ]
    few = [r["knn_few_labels"] for r in history if r.get("knn_few_labels")]
    return plot_learning_curves(
        rows,
        path,
        auroc_label="kNN validation AUROC",
        curve_labels=("all training labels", f"{few[-1]} labels") if few else None,
    )


def plot_augmentation_grid(
    originals: np.ndarray, views: np.ndarray, path: str | os.PathLike[str], title: str = ""
) -> Path:
    """Grid: one row per image, the original then its augmented views (grey, [0, 1]).

    Args:
        originals: (R, H, W) images.
        views: (R, V, H, W) augmented views of each image.
    """
    rows, n_views = views.shape[:2]
    fig = Figure(figsize=(1.2 * (n_views + 1), 1.2 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, n_views + 1, squeeze=False)
    for r in range(rows):
        for c in range(n_views + 1):
            ax = axes[r][c]
            ax.imshow(originals[r] if c == 0 else views[r, c - 1], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"view {c}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path, "medssl augment-preview")


def plot_label_efficiency(
    tables: Mapping[str, Sequence[Mapping]],
    path: str | os.PathLike[str],
    metrics_to_plot: Sequence[str] = ("test_auroc", "test_balanced_accuracy", "test_ece"),
) -> Path:
    """Metric (mean ± std over seeds) against label fraction (log axis), one line per method.

    Args:
        tables: method name -> rows with ``label_fraction``, ``<metric>`` and ``<metric>_std``.
        path: Output PNG path.
    """
    if not tables:
        raise ValueError("tables is empty; pass at least one method")
    fig = Figure(figsize=(4.5 * len(metrics_to_plot), 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics_to_plot), squeeze=False)[0]
    for ax, key in zip(axes, metrics_to_plot, strict=True):
        for name, rows in tables.items():
            frac = _column(rows, "label_fraction")
            ax.errorbar(
                frac,
                _column(rows, key),
                yerr=_column(rows, key + "_std"),
                marker="o",
                markersize=4,
                capsize=3,
                label=name,
            )
        ax.set_xscale("log")
        ax.set_xlabel("fraction of training labels")
        ax.set_title(key.replace("test_", "test ").replace("_", " "))
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_embeddings(
    panels: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike[str],
    positive_name: str = "positive",
) -> Path:
    """2-D maps of features (e.g. t-SNE), one panel per encoder, points coloured by class.

    Args:
        panels: title -> (coordinates (n, 2), binary targets (n,)).
        path: Output PNG path.
    """
    if not panels:
        raise ValueError("panels is empty; pass at least one embedding")
    fig = Figure(figsize=(4.2 * len(panels), 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, (xy, targets)) in zip(axes, panels.items(), strict=True):
        xy, targets = np.asarray(xy), np.asarray(targets)
        if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) != len(targets):
            raise ValueError(f"{title}: need (n, 2) coordinates and n targets")
        for value, colour, name in ((0, "tab:blue", "other"), (1, "tab:red", positive_name)):
            sel = targets == value
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, c=colour, alpha=0.6, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8, markerscale=2)
    fig.suptitle("t-SNE of test-set features (colour = class)", fontsize=10)
    return _save(fig, path)


def plot_reliability_diagram(
    targets_by_split: dict[str, ArrayLike],
    probs_by_split: dict[str, ArrayLike],
    path: str | os.PathLike[str],
    n_bins: int = 15,
    positive_name: str = "positive",
) -> Path:
    """Reliability diagram of the positive-class probability with per-bin counts below.

    Upper panel: observed frequency of the positive class against mean predicted probability
    in each non-empty bin of :func:`medssl.metrics.calibration_bins`, per split, with the
    diagonal of perfect calibration and the ECE in the legend. Lower panel: bin counts.

    Args:
        targets_by_split: Split name -> labels in {0, 1}.
        probs_by_split: Split name -> positive-class probabilities in [0, 1].
        path: Output PNG path.
        n_bins: Number of equal-width bins.
        positive_name: Name of the positive class, used in the axis labels.

    Returns:
        The written path.

    Raises:
        ValueError: On mismatched split names or invalid targets/probabilities.
    """
    _check_splits(targets_by_split, probs_by_split, "probs_by_split")
    fig = Figure(figsize=(5.5, 6.5), layout="constrained")
    ax, ax_counts = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="perfect calibration")
    for i, split in enumerate(targets_by_split):
        y, p = targets_by_split[split], probs_by_split[split]
        bins = metrics.calibration_bins(y, p, n_bins)
        ece = metrics.expected_calibration_error(y, p, n_bins)
        ok = bins["counts"] > 0
        color = f"C{i}"
        ax.plot(
            bins["confidence"][ok],
            bins["frequency"][ok],
            marker="o",
            markersize=4,
            color=color,
            label=f"{split} (ECE = {ece:.4f}, n = {int(bins['counts'].sum())})",
        )
        ax_counts.stairs(bins["counts"], bins["edges"], color=color, label=split)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal", adjustable="box")
    ax.set_ylabel(f"observed frequency of {positive_name}")
    ax.set_title(f"reliability ({n_bins} equal-width bins)")
    ax.legend(loc="upper left", fontsize="small")
    ax_counts.set_xlabel(f"predicted P(positive = {positive_name})")
    ax_counts.set_ylabel("count per bin")
    ax_counts.legend(loc="best", fontsize="small")
    return _save(fig, path)


def plot_roc_curves(
    targets_by_split: dict[str, ArrayLike],
    scores_by_split: dict[str, ArrayLike],
    path: str | os.PathLike[str],
    positive_name: str = "positive",
) -> Path:
    """ROC curve per split with its AUROC in the legend and the chance diagonal.

    A split with a single class has no ROC curve; it appears in the legend with AUROC nan.

    Args:
        targets_by_split: Split name -> labels in {0, 1}.
        scores_by_split: Split name -> scores (probabilities or logits), higher = positive.
        path: Output PNG path.
        positive_name: Name of the positive class, used in the title.

    Returns:
        The written path.

    Raises:
        ValueError: On mismatched split names or invalid targets/scores.
    """
    _check_splits(targets_by_split, scores_by_split, "scores_by_split")
    fig = Figure(figsize=(5.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="chance")
    for i, split in enumerate(targets_by_split):
        y, s = targets_by_split[split], scores_by_split[split]
        fpr, tpr, _ = metrics.roc_curve(y, s)
        auc = metrics.auroc(y, s)
        label = f"{split} (AUROC = {auc:.4f})"
        if math.isnan(auc):
            label = f"{split} (AUROC = nan, one class only)"
            fpr, tpr = np.array([]), np.array([])
        ax.plot(fpr, tpr, color=f"C{i}", label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC (positive = {positive_name})")
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_pr_curves(
    targets_by_split: dict[str, ArrayLike],
    scores_by_split: dict[str, ArrayLike],
    path: str | os.PathLike[str],
    positive_name: str = "positive",
) -> Path:
    """Precision-recall curve of the positive class per split, AP in the legend, and each
    split's prevalence (the precision of a random ranking) as a dotted line."""
    _check_splits(targets_by_split, scores_by_split, "scores_by_split")
    fig = Figure(figsize=(5.0, 5.0), layout="constrained")
    ax = fig.subplots()
    for i, split in enumerate(targets_by_split):
        y, s = np.asarray(targets_by_split[split]), scores_by_split[split]
        precision, recall, _ = metrics.precision_recall_curve(y, s)
        ap = metrics.average_precision(y, s)
        ax.step(
            np.r_[0.0, recall],
            np.r_[precision[0], precision],
            where="pre",
            color=f"C{i}",
            label=f"{split} (AP = {ap:.4f})",
        )
        ax.axhline(y.mean(), color=f"C{i}", linestyle=":", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(f"recall (sensitivity for {positive_name})")
    ax.set_ylabel("precision (PPV)")
    ax.set_title(f"precision-recall (positive = {positive_name})")
    ax.legend(loc="lower left", fontsize="small")
    return _save(fig, path)


def plot_error_gallery(
    images: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    titles: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """A row of images with label and probability under each (e.g. the most confident errors).

    Args:
        images: (K, H, W) grey images in [0, 1].
        probs: (K,) predicted P(positive).
        labels: true label name of each image.
        titles: row group of each image, e.g. "false positive".
    """
    k = max(1, len(images))
    fig = Figure(figsize=(1.6 * k, 2.3), layout="constrained")
    axes = fig.subplots(1, k, squeeze=False)[0]
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, img, p, lab, t in zip(axes, images, probs, labels, titles, strict=False):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(t, fontsize=7)
        ax.set_xlabel(f"{lab}\np = {p:.3f}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_robustness(rows: Sequence[Mapping], path: str | os.PathLike[str]) -> Path:
    """Change in AUROC and ECE against shift severity, one line per shift."""
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    shifts = [s for s in dict.fromkeys(r["shift"] for r in rows) if s != "none"]
    for ax, key in zip(axes, ("delta_auroc", "delta_ece"), strict=True):
        for i, name in enumerate(shifts):
            sub = [r for r in rows if r["shift"] == name]
            ax.plot(
                [0] + [r["severity"] for r in sub],
                [0.0] + [r[key] for r in sub],
                marker="o",
                markersize=3,
                color=f"C{i % 10}",
                label=name,
            )
        ax.axhline(0, color="0.5", linewidth=1)
        ax.set_xticks([0, 1, 2, 3])
        ax.set_xlabel("severity")
        ax.set_title(key.replace("delta_", "Δ ").upper().replace("Δ ", "Δ"))
    axes[1].legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_pareto(
    rows: Sequence[Mapping], front: Sequence[Mapping], chosen: Mapping, path: str | os.PathLike
) -> Path:
    """`medssl tune`: CV AUROC (± SEM) against mean training time per fold, every complete
    trial, the Pareto front joined, the chosen recipe circled."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    t, a = _column(rows, "train_time_s"), _column(rows, "cv_auroc")
    ax.errorbar(t, a, yerr=_column(rows, "cv_sem"), fmt="o", ms=4, alpha=0.5, label="trials")
    front = sorted(front, key=lambda r: r["train_time_s"])
    ax.plot(_column(front, "train_time_s"), _column(front, "cv_auroc"), "-o", label="front")
    ax.plot(chosen["train_time_s"], chosen["cv_auroc"], "o", ms=14, mfc="none", label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel("training time per fold (s, log)")
    ax.set_ylabel("cross-validation AUROC")
    ax.legend(fontsize=8)
    return _save(fig, path)
