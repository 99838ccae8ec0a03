"""Linear probes: L2-regularised logistic regression on frozen encoder features.

docs/math.md §7: with the backbone fixed, head-only training is a regularised logistic
regression on h = h_phi(x). Features of the unaugmented splits are computed ONCE and cached
(`features.safetensors`); every (label fraction, seed) probe then fits scikit-learn's
`LogisticRegression` on a stratified subset, choosing the inverse regularisation C on validation
AUROC, and reports test metrics of the chosen model.
"""

from __future__ import annotations

import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from tqdm.auto import tqdm

from medssl import data as D
from medssl import plots
from medssl.commands.lifecycle import positive_label, preprocessing, start, tracked
from medssl.errors import MedsslError
from medssl.io.artifacts import atomic_path, write_csv, write_json, write_text
from medssl.io.records import read_result
from medssl.io.rundir import MARKERS
from medssl.metrics import auroc, binary_metrics
from medssl.models import Encoder, load_encoder_weights, read_model
from medssl.options import ProbeConfig
from medssl.runtime import extract_features, resolve_device, resolve_precision


def load_encoder(source: str, stem: str = "imagenet", log=print) -> Encoder:
    """An Encoder from a medssl file (its stem), a torchvision file, 'imagenet' or 'random'."""
    if source.endswith(".safetensors"):
        _, meta = read_model(source, ("encoder", "classifier"))
        stem = meta.get("stem", stem)
    encoder = Encoder(stem)
    if source != "random":
        for change in load_encoder_weights(encoder, source):
            log(f"encoder {source}: {change}")
    return encoder


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    cs: list[float],
    max_iter: int = 2000,
):
    """Standardise on the training subset, fit LogisticRegression(C) for each C, keep the best
    by validation AUROC (ties: the smallest C, i.e. the strongest regularisation).

    Returns (model, scaler mean, scaler std, chosen C, its val AUROC).
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    tx, vx = (train_x - mean) / std, (val_x - mean) / std
    best = None
    for c in cs:
        clf = LogisticRegression(C=c, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(tx, train_y)
        score = auroc(val_y, clf.decision_function(vx))
        if best is None or score > best[-1]:
            best = (clf, c, score)
    clf, c, score = best
    return clf, mean, std, c, score


def embed_2d(
    features: np.ndarray, seed: int = 0, max_points: int = 2000
) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE map of standardised features (scikit-learn's TSNE, PCA init, seeded).

    Beyond `max_points` rows a seeded random subset keeps it to seconds.
    Returns (coordinates (m, 2), the row indices they belong to).
    """
    rows = np.arange(len(features))
    if len(features) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), max_points, False))
    x = features[rows]
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    perplexity = min(30.0, (len(x) - 1) / 3)
    xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    return xy, rows


def write_embedding(
    out: Path, features: np.ndarray, targets: np.ndarray, title: str, positive_name: str
) -> Path:
    """t-SNE of `features` to out/embedding.csv (index, x, y, target) and out/embedding.png."""
    xy, sel = embed_2d(features)
    write_csv(
        out / "embedding.csv",
        [
            {"index": int(i), "x": float(a), "y": float(b), "target": int(targets[i])}
            for (a, b), i in zip(xy, sel, strict=True)
        ],
    )
    return plots.plot_embeddings(
        {title: (xy, targets[sel])}, out / "embedding.png", positive_name=positive_name
    )


def probe(cfg: ProbeConfig, resume: bool = False, log=print) -> dict:
    """Run the probe grid; write features, results.csv, summary.json, table.md and a plot.

    The folder, device, data, encoder file and every (label fraction, seed) subset are checked
    before anything is written."""
    positive = positive_label(cfg)  # a bad --positive-class is refused before the claim
    claimed, done = start(cfg, resume, log, _finished_summary)
    if done is not None:
        return done
    out = claimed.path
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    splits = D.load_splits(
        cfg.dataset, cfg.data_root, positive, cfg.size, device, prep=preprocessing(cfg)
    )
    encoder = load_encoder(cfg.encoder, cfg.stem, log)
    if cfg.encoder == "random":
        torch.manual_seed(0)
        encoder = Encoder(cfg.stem)
    encoder = encoder.to(device, memory_format=torch.channels_last)
    grid = [(f, s) for f in cfg.fractions() for s in cfg.seed_list()]
    subsets = {  # label fractions against the class counts, before anything is written
        (f, s): D.stratified_subset(splits["train"].targets, f, s).numpy() for f, s in grid
    }
    with tracked(claimed, cfg) as tracker:
        t0 = time.perf_counter()
        x = _features(cfg, encoder, splits, precision, out)
        feat_time = time.perf_counter() - t0
        y = {s: sp.targets.cpu().numpy().astype(np.int64) for s, sp in splits.items()}
        t1 = time.perf_counter()
        rows = _fit_grid(cfg, x, y, subsets, out)
        times = {"feature_time_s": feat_time, "probe_time_s": time.perf_counter() - t1}
        return _finish(cfg, positive, rows, x["test"], y["test"], times, out, tracker)


def _finished_summary(run: Path) -> dict:
    summary = read_result(run, "probe", ("table",))
    if not isinstance(summary.get("table_md"), str):
        raise MedsslError(f"{run}/{MARKERS['probe']}: the probe summary lacks its table")
    return summary


def _features(cfg: ProbeConfig, encoder, splits: dict, precision: str, out: Path) -> dict:
    """Frozen features of every split, computed once, saved (features.safetensors) and
    returned as float64 arrays (N, 512)."""
    feats = {
        s: extract_features(encoder, sp.images, cfg.eval_batch_size, cfg.resize, precision).cpu()
        for s, sp in splits.items()
    }
    with atomic_path(out / "features.safetensors") as tmp:
        save_file(
            {s: f.contiguous() for s, f in feats.items()},
            str(tmp),
            metadata={"encoder": cfg.encoder, "dataset": cfg.dataset},
        )
    return {s: f.double().numpy() for s, f in feats.items()}


def _fit_grid(cfg: ProbeConfig, x: dict, y: dict, subsets: dict, out: Path) -> list[dict]:
    """One probe per (label fraction, seed): C chosen on validation, test metrics; the subsets
    used are written to subsets.json."""
    rows, indices = [], {}
    for frac, seed in tqdm(list(subsets), desc="probe", disable=not cfg.progress):
        idx = subsets[(frac, seed)]
        indices[f"{frac:g}/{seed}"] = idx.tolist()
        clf, mean, std, c, val_auc = fit_probe(
            x["train"][idx], y["train"][idx], x["val"], y["val"], cfg.cs(), cfg.max_iter
        )
        z = clf.decision_function((x["test"] - mean) / std)
        m = binary_metrics(y["test"], 1 / (1 + np.exp(-z)), scores=z, n_bins=cfg.n_bins)
        rows.append(
            {
                "label_fraction": frac,
                "seed": seed,
                "n_train": len(idx),
                "C": c,
                "val_auroc": val_auc,
            }
            | {f"test_{k}": m[k] for k in ("auroc", "balanced_accuracy", "accuracy", "ece")}
        )
    write_json(out / "subsets.json", indices)
    return rows


def _finish(cfg, positive: int, rows, x_test, y_test, times: dict, out: Path, tracker) -> dict:
    """results.csv, table.md, the plots and summary.json (written last: a finished run)."""
    pos_name = D.dataset_info(cfg.dataset).label_names[positive]
    write_csv(out / "results.csv", rows)
    table = summarise(rows)
    table_md = format_table(table, cfg, pos_name)
    write_text(out / "table.md", table_md)
    plots.plot_label_efficiency({"probe": table}, out / "label_efficiency.png")
    tracker.figure("figures/label_efficiency", out / "label_efficiency.png")
    for r in table:  # step = percent of the training labels
        step = round(100 * r["label_fraction"])
        tracker.scalars(step, {k: v for k, v in r.items() if k.startswith("test_")}, "probe/")
    if cfg.embedding:
        title = f"encoder: {Path(cfg.encoder).parent.name or cfg.encoder}"
        write_embedding(out, x_test, y_test, title, pos_name)
        tracker.figure("figures/embedding", out / "embedding.png")
    summary = {
        "dataset": cfg.dataset,
        "encoder": cfg.encoder,
        "positive_class": {"label": positive, "name": pos_name},
        **times,
        "table": table,
        "table_md": table_md,
    }
    write_json(out / MARKERS["probe"], summary)  # written last: marks a finished run
    return summary


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sample std over seeds of the test metrics, per label fraction."""
    out = []
    for frac in sorted({r["label_fraction"] for r in rows}):
        group = [r for r in rows if r["label_fraction"] == frac]
        entry = {
            "label_fraction": frac,
            "n_seeds": len(group),
            "n_train": statistics.mean(r["n_train"] for r in group),
        }
        for key in ("test_auroc", "test_balanced_accuracy", "test_ece"):
            vals = [r[key] for r in group]
            entry[key] = statistics.mean(vals)
            entry[key + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(entry)
    return out


def format_table(table: list[dict], cfg: ProbeConfig, positive_name: str) -> str:
    lines = [
        f"Linear probe of `{cfg.encoder}` on {cfg.dataset} (positive: {positive_name}); "
        f"mean ± std over seeds {','.join(map(str, cfg.seeds))}; C chosen on val AUROC.",
        "",
        "| labels | n train | test AUROC | test BalAcc | test ECE |",
        "|---|---|---|---|---|",
    ]
    for e in table:
        lines.append(
            f"| {e['label_fraction']:g} | {e['n_train']:.0f} | "
            f"{e['test_auroc']:.3f} ± {e['test_auroc_std']:.3f} | "
            f"{e['test_balanced_accuracy']:.3f} ± {e['test_balanced_accuracy_std']:.3f} | "
            f"{e['test_ece']:.3f} ± {e['test_ece_std']:.3f} |"
        )
    return "\n".join(lines) + "\n"
