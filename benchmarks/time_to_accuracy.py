"""Time to accuracy: the default `medssl train` against the official MedMNIST recipe, in one run.

Official recipe, written here from its published description (MedMNIST v2, Yang et al. 2023,
Scientific Data; experiments/MedMNIST2D/train_and_eval_pytorch.py): ResNet-18 with a 3x3
stride-1 stem and no max-pool for 28 px, one input channel, two outputs and cross-entropy;
torchvision ToTensor + Normalize(0.5, 0.5) and no augmentation; a shuffled DataLoader of batch
128; Adam, lr 1e-3; 100 epochs with the LR x0.1 at epochs 50 and 75; the epoch with the best
validation AUROC is kept. Its 100 epochs take long on a CPU, so it runs --official-epochs
epochs and its time is scaled to 100 (the LR is constant before epoch 50, so those epochs are
the recipe's own); its AUROC at 100 epochs is the published one (ResNet-18 (28): BreastMNIST
0.901, PneumoniaMNIST 0.944), beside what it reached in the epochs run here.

medssl: `medssl train --dataset D --seed S` with the dataset's default recipe. Training seconds
on both sides = the epochs' wall time (steps + the validation pass that picks the epoch).

    python benchmarks/time_to_accuracy.py [--datasets breastmnist,pneumoniamnist]
        [--seeds 0,1,2,3,4] [--official-seeds 0,1,2] [--official-epochs 10,2] [--out DIR]

Writes time-to-accuracy-cpu.{md,json,png} (the PNG: validation AUROC against training seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torchvision
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from medssl import data as D
from medssl.commands.train import train
from medssl.options import TrainConfig

PUBLISHED = {"breastmnist": 0.901, "pneumoniamnist": 0.944}  # MedMNIST v2, ResNet-18 (28)
OFFICIAL_EPOCHS = 100


class Official(Dataset):
    """MedMNIST split as the official script reads it: uint8 image -> ToTensor -> Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        t = torchvision.transforms
        self.images, self.labels = images, labels
        self.transform = t.Compose([t.ToTensor(), t.Normalize(mean=[0.5], std=[0.5])])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def official_model() -> torch.nn.Module:
    """ResNet-18, 3x3 stride-1 stem without max-pool (the CIFAR form the official 28 px uses)."""
    model = torchvision.models.resnet18(num_classes=2)
    model.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
    return model


@torch.no_grad()
def _auroc(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    scores, labels = [], []
    for x, y in loader:
        scores.append(torch.softmax(model(x), 1)[:, 1])
        labels.append(y)
    return float(roc_auc_score(torch.cat(labels).numpy(), torch.cat(scores).numpy()))


def run_official(dataset: str, root: str | None, seed: int, epochs: int) -> dict:
    """`epochs` epochs of the official recipe; per epoch: time (train + val), val and test AUROC."""
    arrays = D.load_arrays(dataset, root)
    positive = D.dataset_info(dataset).default_positive
    loaders = {
        s: DataLoader(
            Official(arrays[s][0], (arrays[s][1].reshape(-1) == positive).astype(np.int64)),
            batch_size=128,
            shuffle=s == "train",
            generator=torch.Generator().manual_seed(seed),
        )
        for s in ("train", "val", "test")
    }
    torch.manual_seed(seed)
    model = official_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    milestones = [int(0.5 * OFFICIAL_EPOCHS), int(0.75 * OFFICIAL_EPOCHS)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        t = time.perf_counter()
        model.train()
        for x, y in loaders["train"]:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        sched.step()
        val = _auroc(model, loaders["val"])
        seconds = time.perf_counter() - t
        history.append({"epoch": epoch, "time_s": seconds, "val_auroc": val})
        history[-1]["test_auroc"] = _auroc(model, loaders["test"])  # outside the timing
    best = max(history, key=lambda r: r["val_auroc"])
    per_epoch = statistics.mean(r["time_s"] for r in history)
    return {
        "seed": seed,
        "epochs_run": epochs,
        "time_s_run": sum(r["time_s"] for r in history),
        "time_s_100": per_epoch * OFFICIAL_EPOCHS,
        "test_auroc_run": best["test_auroc"],
        "history": history,
    }


def run_medssl(dataset: str, root: str | None, seed: int, tmp: Path) -> dict:
    """The default recipe of `medssl train` (its own run folder, thrown away)."""
    cfg = TrainConfig(
        dataset=dataset, data_root=root, seed=seed, out=str(tmp / f"{dataset}-{seed}")
    )
    cfg.progress, cfg.tensorboard = False, False
    wall = time.perf_counter()
    m = train(cfg, log=lambda *a, **k: None)
    history = [
        json.loads(line) for line in (Path(cfg.out) / "history.jsonl").read_text().splitlines()
    ]
    return {
        "seed": seed,
        "recipe": {k: getattr(cfg, k) for k in ("stem", "epochs", "lr", "batch_size", "augment")},
        "time_s": m["train_time_s"],
        "wall_s": time.perf_counter() - wall,
        "test_auroc": m["test"]["auroc"],
        "test_bal_acc": m["test"]["balanced_accuracy"],
        "history": [{"time_s": r["epoch_time_s"], "val_auroc": r["val_auroc"]} for r in history],
    }


def _mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (0 for one value)."""
    from scipy.stats import t

    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def table(results: dict, machine: str, commit: str) -> str:
    lines = [
        f"Time to accuracy, default `medssl train` vs the official MedMNIST recipe (ResNet-18, "
        f"{OFFICIAL_EPOCHS} epochs, scaled from the epochs run); {machine}; torch "
        f"{torch.__version__}; commit {commit}; {date.today()}. Test AUROC: mean and 95% CI of "
        "the mean over seeds.",
        "",
        "| dataset | recipe | seeds | train s | test AUROC | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for ds, r in results.items():
        ours, off = r["medssl"], r["official"]
        t_ours = statistics.mean(x["time_s"] for x in ours)
        t_off = statistics.mean(x["time_s_100"] for x in off)
        m, h = _mean_ci([x["test_auroc"] for x in ours])
        mo, ho = _mean_ci([x["test_auroc_run"] for x in off])
        e = off[0]["epochs_run"]
        rec = ours[0]["recipe"]
        lines += [
            f"| {ds} | medssl default ({rec['stem']} stem, {rec['epochs']} ep) | {len(ours)} | "
            f"{t_ours:.1f} | {m:.3f} ± {h:.3f} | {t_off / t_ours:.1f}x |",
            f"| {ds} | official, {OFFICIAL_EPOCHS} ep (time scaled; AUROC published) | - | "
            f"{t_off:.0f} | {PUBLISHED[ds]:.3f} | 1x |",
            f"| {ds} | official, first {e} ep (measured) | {len(off)} | "
            f"{statistics.mean(x['time_s_run'] for x in off):.0f} | {mo:.3f} ± {ho:.3f} | |",
        ]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (ds, r) in zip(axes[0], results.items(), strict=True):
        for runs, colour, name in (
            (r["medssl"], "C0", "medssl default"),
            (r["official"], "C3", "official"),
        ):
            for i, run in enumerate(runs):
                t = np.cumsum([h["time_s"] for h in run["history"]])
                v = [h["val_auroc"] for h in run["history"]]
                ax.plot(
                    t, v, color=colour, alpha=0.6, marker="o", ms=2, label=name if i == 0 else None
                )
        t100 = statistics.mean(x["time_s_100"] for x in r["official"])
        ax.scatter(
            [t100],
            [PUBLISHED[ds]],
            color="C3",
            marker="*",
            s=120,
            label=f"official at {OFFICIAL_EPOCHS} ep (scaled time, published test)",
        )
        ax.set_xscale("log")
        ax.set(
            title=ds,
            xlabel="training seconds (log)",
            ylabel="validation AUROC (star: published test)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="breastmnist,pneumoniamnist")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--official-seeds", default="0,1,2")
    ap.add_argument("--official-epochs", default="10,2", help="per dataset, in --datasets order")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    root = args.data_root
    datasets = args.datasets.split(",")
    epochs = [int(e) for e in args.official_epochs.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ds, e in zip(datasets, epochs, strict=True):
            results[ds] = {
                "medssl": [run_medssl(ds, root, int(s), Path(tmp)) for s in args.seeds.split(",")],
                "official": [
                    run_official(ds, root, int(s), e) for s in args.official_seeds.split(",")
                ],
            }
            print(f"{ds}: done", flush=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    machine = f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    text = table(results, machine, commit)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "time-to-accuracy-cpu.md").write_text(text + "\n")
    (out / "time-to-accuracy-cpu.json").write_text(
        json.dumps({"machine": machine, "commit": commit, "results": results}, indent=2) + "\n"
    )
    plot(results, out / "time-to-accuracy-cpu.png")


if __name__ == "__main__":
    main()
