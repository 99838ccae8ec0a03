"""Linear probes: L2-regularised logistic regression on frozen encoder features.

finetuning-theory.md §7: with the backbone fixed, head-only training is a regularised logistic
regression on h = h_phi(x). Features of the unaugmented splits are computed ONCE and cached
(`features.safetensors`); every (label fraction, seed) probe then fits scikit-learn's
`LogisticRegression` on a stratified subset, choosing the inverse regularisation C on validation
AUROC, and reports test metrics of the chosen model.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medssl import data as D
from medssl.errors import MedsslError
from medssl.metrics import auroc, binary_metrics
from medssl.models import STEMS, Encoder, load_encoder_weights, read_model
from medssl.rundir import config_from_dict, run_lock, write_csv, write_json, write_text, write_yaml
from medssl.tracking import Tracker
from medssl.train import extract_features, resolve_device, resolve_precision


def parse_list(text: str | list, cast, name: str) -> list:
    """'0.1,0.2' or [0.1, 0.2] -> list of `cast` values, with a clear error."""
    items = text if isinstance(text, list) else str(text).split(",")
    try:
        return [cast(x) for x in items if str(x).strip() != ""]
    except ValueError:
        raise MedsslError(f"--{name} must be a comma-separated list, got {text!r}") from None


@dataclass
class ProbeConfig:
    """Options of `medssl probe`."""

    encoder: str = "random"  # medssl .safetensors (encoder or classifier), torchvision .pth,
    # imagenet, or random (a randomly initialised encoder: the floor to beat)
    dataset: str = "breastmnist"
    data_root: str | None = None
    out: str = "runs/probe"
    label_fractions: str = "0.01,0.05,0.1,0.2,1.0"
    seeds: str = "0,1,2"
    c_grid: str = "0.0001,0.001,0.01,0.1,1,10,100"  # inverse L2 strengths tried (chosen on val)
    max_iter: int = 2000
    stem: str = "imagenet"  # used for random/imagenet encoders; files carry their own stem
    positive_class: str | None = None
    size: int = 28
    resize: int | None = None
    precision: str = "auto"
    device: str = "auto"
    eval_batch_size: int = 512
    n_bins: int = 15
    embedding: bool = True  # t-SNE map of the test features (embedding.png / .csv)
    progress: bool = True
    tensorboard: bool = True  # event files in RUN_DIR/tensorboard

    def __post_init__(self) -> None:
        D.dataset_info(self.dataset)
        if self.stem not in STEMS:
            raise MedsslError(f"--stem must be one of {STEMS}, got {self.stem!r}")
        for f in self.fractions():
            if not 0 < f <= 1:
                raise MedsslError(f"--label-fractions must be in (0, 1], got {f}")
        if not self.seed_list():
            raise MedsslError("--seeds must name at least one seed")
        if not self.cs() or min(self.cs()) <= 0:
            raise MedsslError("--c-grid must be positive numbers")
        known = ("random", "imagenet")
        if self.encoder not in known and not Path(self.encoder).is_file():
            raise MedsslError(f"--encoder {self.encoder}: no such file (or use random/imagenet)")

    def fractions(self) -> list[float]:
        return parse_list(self.label_fractions, float, "label-fractions")

    def seed_list(self) -> list[int]:
        return parse_list(self.seeds, int, "seeds")

    def cs(self) -> list[float]:
        return sorted(parse_list(self.c_grid, float, "c-grid"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ProbeConfig:
        return config_from_dict(cls, d, "probe")


def load_encoder(source: str, stem: str = "imagenet", log=print) -> Encoder:
    """An Encoder from a medssl file (its stem), a torchvision file, 'imagenet' or 'random'."""
    if source.endswith(".safetensors"):
        _, meta = read_model(source)
        if meta.get("kind") not in ("encoder", "classifier"):
            raise MedsslError(f"{source}: a {meta.get('kind')} file holds no encoder")
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
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

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
    from sklearn.manifold import TSNE

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
    from medssl import plots

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


def probe(cfg: ProbeConfig, log=print) -> dict:
    """Run the probe grid; write features, results.csv, summary.json, table.md and a plot."""
    from medssl import plots

    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    info = D.dataset_info(cfg.dataset)
    positive = D.resolve_positive(info, cfg.positive_class)
    splits = D.load_splits(cfg.dataset, cfg.data_root, positive, cfg.size, device)
    encoder = load_encoder(cfg.encoder, cfg.stem, log)
    if cfg.encoder == "random":
        torch.manual_seed(0)
        encoder = Encoder(cfg.stem)
    encoder = encoder.to(device, memory_format=torch.channels_last)
    with (
        run_lock(out),
        contextlib.closing(
            Tracker(out, cfg.to_dict(), cfg.tensorboard, experiment=f"medssl-{cfg.dataset}")
        ) as tracker,
    ):
        write_yaml(out / "config.yaml", {"command": "probe"} | cfg.to_dict())
        t0 = time.perf_counter()
        feats = {
            s: extract_features(
                encoder, sp.images, cfg.eval_batch_size, cfg.resize, precision
            ).cpu()
            for s, sp in splits.items()
        }
        feat_time = time.perf_counter() - t0
        from safetensors.torch import save_file

        from medssl.rundir import atomic_path

        with atomic_path(out / "features.safetensors") as tmp:
            save_file(
                {s: f.contiguous() for s, f in feats.items()},
                str(tmp),
                metadata={"encoder": cfg.encoder, "dataset": cfg.dataset},
            )
        x = {s: f.double().numpy() for s, f in feats.items()}
        y = {s: sp.targets.cpu().numpy().astype(np.int64) for s, sp in splits.items()}
        rows, indices = [], {}
        grid = [(f, s) for f in cfg.fractions() for s in cfg.seed_list()]
        t1 = time.perf_counter()
        for frac, seed in tqdm(grid, desc="probe", disable=not cfg.progress):
            idx = D.stratified_subset(splits["train"].targets, frac, seed).numpy()
            indices[f"{frac:g}/{seed}"] = idx.tolist()
            clf, mean, std, c, val_auc = fit_probe(
                x["train"][idx], y["train"][idx], x["val"], y["val"], cfg.cs(), cfg.max_iter
            )
            z = clf.decision_function((x["test"] - mean) / std)
            p = 1 / (1 + np.exp(-z))
            m = binary_metrics(y["test"], p, scores=z, n_bins=cfg.n_bins)
            rows.append(
                {
                    "label_fraction": frac,
                    "seed": seed,
                    "n_train": len(idx),
                    "C": c,
                    "val_auroc": val_auc,
                    "test_auroc": m["auroc"],
                    "test_balanced_accuracy": m["balanced_accuracy"],
                    "test_accuracy": m["accuracy"],
                    "test_ece": m["ece"],
                }
            )
        probe_time = time.perf_counter() - t1
        write_csv(out / "results.csv", rows)
        write_json(out / "subsets.json", indices)
        table = summarise(rows)
        table_md = format_table(table, cfg, info.label_names[positive])
        write_text(out / "table.md", table_md)
        plots.plot_label_efficiency({"probe": table}, out / "label_efficiency.png")
        tracker.figure("figures/label_efficiency", out / "label_efficiency.png")
        for r in table:  # step = percent of the training labels
            step = round(100 * r["label_fraction"])
            tracker.scalars(step, {k: v for k, v in r.items() if k.startswith("test_")}, "probe/")
        if cfg.embedding:
            write_embedding(
                out,
                x["test"],
                y["test"],
                f"encoder: {Path(cfg.encoder).parent.name or cfg.encoder}",
                info.label_names[positive],
            )
            tracker.figure("figures/embedding", out / "embedding.png")
        summary = {
            "dataset": cfg.dataset,
            "encoder": cfg.encoder,
            "positive_class": {"label": positive, "name": info.label_names[positive]},
            "feature_time_s": feat_time,
            "probe_time_s": probe_time,
            "table": table,
            "table_md": table_md,
        }
        write_json(out / "summary.json", summary)
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
        f"mean ± std over seeds {cfg.seeds}; C chosen on val AUROC.",
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
