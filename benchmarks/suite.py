"""medssl benchmark suite: every figure side by side with a conventional pipeline, in one run.

Sections (issue 5), each the median of repeats on the same machine, model and batch size:
  augment     augmentation images/s: medssl batched on-device vs torchvision PIL + DataLoader
  ssl         SimCLR pretraining views/s: medssl vs lightly (SimCLRTransform + DataLoader +
              NTXentLoss), same ResNet-18 encoder and projection head, batch 256 (512 views)
  supervised  one supervised epoch on PneumoniaMNIST: medssl loop vs a DataLoader loop
  probe       label-efficiency grid (5 fractions x 3 seeds, 30-epoch logistic head per cell) with
              cached features vs re-running the frozen backbone every epoch; and `medssl probe`
  stems       training images/s per stem and precision (+ test AUROC of runs/stems if present)
  compile     torch.compile vs eager training step (compile time and steady-state images/s)

    python benchmarks/suite.py [--data-root DIR] [--sections augment,ssl,...] [--device cpu]

Writes benchmarks/results/suite-<device>.md and .json (date, machine, commit, torch).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")
sys.path.insert(0, str(Path(__file__).parent))

from medssl import data as D  # noqa: E402
from medssl.augment import augment, two_views  # noqa: E402
from medssl.catalog import preset  # noqa: E402
from medssl.losses import bce  # noqa: E402
from medssl.methods.simclr import SimCLR  # noqa: E402
from medssl.models import Classifier, Encoder  # noqa: E402
from medssl.runtime import (  # noqa: E402
    autocast,
    extract_features,
    resolve_precision,
    to_float,  # noqa: E402
)

# DataLoader worker counts for the conventional pipelines: 0, 2 and, on a machine with the
# cores for it (a GPU box), 8, so the baseline is the best loader setting, not a starved one.
WORKERS = sorted({0, 2, min(8, os.cpu_count() or 1)})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PilDataset(Dataset):
    """uint8 images -> PIL -> a torchvision/lightly transform, one image per call."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        x = self.transform(Image.fromarray(self.images[i]))
        return x if self.labels is None else (x, float(self.labels[i]))


def light_pil_transform() -> transforms.Compose:
    """The torchvision counterpart of medssl's `light` preset."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(28, scale=(0.85, 1.0), ratio=(0.9, 1.1)),
            transforms.RandomRotation(10),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.1, contrast=0.1),
            transforms.ToTensor(),
        ]
    )


# ----------------------------------------------------------------------------- augment
def bench_augment(arrays, device, repeats, batch=256) -> list[dict]:
    np_images = arrays["pneumoniamnist"]["train"][0]
    images = torch.from_numpy(np_images).unsqueeze(1).to(device)
    n, cfg = len(images), preset("light")

    def medssl_pass() -> float:
        gen = torch.Generator(device=device).manual_seed(0)
        _sync(device)
        t = time.perf_counter()
        for s in range(0, n, batch):
            augment(to_float(images[s : s + batch]), cfg, gen)
        _sync(device)
        return time.perf_counter() - t

    def pil_pass(workers: int) -> float:
        loader = DataLoader(
            PilDataset(np_images, None, light_pil_transform()),
            batch_size=batch,
            shuffle=True,
            num_workers=workers,
        )
        t = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - t

    rows = [("medssl batched, on device", [medssl_pass() for _ in range(repeats)])]
    for w in WORKERS:
        rows.append(
            (f"torchvision PIL + DataLoader, {w} workers", [pil_pass(w) for _ in range(repeats)])
        )
    out = [{"pipeline": k, "img_per_s": n / statistics.median(ts)} for k, ts in rows]
    base = out[1]["img_per_s"]  # the per-image pipeline without workers
    for r in out:
        r["ratio"] = r["img_per_s"] / base
    return out


# ----------------------------------------------------------------------------- ssl
def bench_ssl(arrays, device, repeats, steps=8, batch=256) -> list[dict]:
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform

    np_images = arrays["pneumoniamnist"]["train"][0]
    images = torch.from_numpy(np_images).unsqueeze(1).to(device)

    def model_and_opt():
        torch.manual_seed(0)
        m = SimCLR("imagenet", (512, 512, 128)).to(device, memory_format=torch.channels_last)
        return m, torch.optim.AdamW(m.parameters(), lr=2e-3)

    def medssl_run(precision: str) -> tuple[float, float]:
        model, opt = model_and_opt()
        gen = torch.Generator(device=device).manual_seed(0)
        cfg = preset("simclr-xray")
        perm = torch.randperm(len(images), generator=gen, device=device)
        times, data = [], []
        for i in range(steps + 2):
            _sync(device)
            t = time.perf_counter()
            idx = perm[(i * batch) % (len(images) - batch) :][:batch]
            v1, v2 = two_views(to_float(images[idx]), cfg, gen)
            _sync(device)
            data.append(time.perf_counter() - t)
            with autocast(device, precision):  # the package's own step: SimCLR.forward
                loss = model(v1, v2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device)
            if i >= 2:
                times.append(time.perf_counter() - t)
        return 2 * batch / statistics.median(times), statistics.median(data[2:])

    def lightly_run(workers: int) -> tuple[float, float]:
        model, opt = model_and_opt()
        tf = SimCLRTransform(
            input_size=28,
            min_scale=0.35,
            cj_prob=0.8,
            cj_bright=0.2,
            cj_contrast=0.3,
            cj_sat=0.0,
            cj_hue=0.0,
            random_gray_scale=0.0,
            gaussian_blur=0.2,
            sigmas=(0.1, 0.7),
            hf_prob=0.5,
            rr_prob=1.0,
            rr_degrees=10,
            normalize=None,
        )
        loader = DataLoader(
            PilDataset(np_images, None, tf),
            batch_size=batch,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=workers > 0,
        )
        criterion = NTXentLoss(temperature=0.2)
        it = iter(loader)
        times, data = [], []
        for i in range(steps + 2):
            t = time.perf_counter()
            try:
                v1, v2 = next(it)
            except StopIteration:
                it = iter(loader)
                v1, v2 = next(it)
            v1 = v1.to(device, non_blocking=True)
            v2 = v2.to(device, non_blocking=True)
            _sync(device)
            data.append(time.perf_counter() - t)
            z = model.embed(torch.cat([v1, v2]))
            loss = criterion(z[:batch], z[batch:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device)
            if i >= 2:
                times.append(time.perf_counter() - t)
        return 2 * batch / statistics.median(times), statistics.median(data[2:])

    auto = resolve_precision("auto", device)
    rows = [
        (f"lightly: SimCLRTransform + DataLoader ({w} workers) + NTXentLoss, fp32", lightly_run, w)
        for w in WORKERS
    ]
    rows.append(("medssl: batched views on device + nt_xent, fp32", medssl_run, "fp32"))
    if auto != "fp32":
        rows.append((f"medssl, precision auto ({auto})", medssl_run, "auto"))
    out = []
    for name, fn, arg in rows:
        runs = [fn(arg) for _ in range(repeats)]
        v = statistics.median(r[0] for r in runs)
        views_ms = 1000 * statistics.median(r[1] for r in runs)
        step_ms = 1000 * 2 * batch / v  # profile: getting the views vs the whole step
        out.append(
            {
                "pipeline": name,
                "views_per_s": v,
                "step_ms": step_ms,
                "views_ms": views_ms,
                "views_share": views_ms / step_ms,
            }
        )
    base = max(r["views_per_s"] for r in out[: len(WORKERS)])  # the best lightly setting
    for r in out:
        r["ratio_vs_best_lightly"] = r["views_per_s"] / base
    return out


# ----------------------------------------------------------------------------- supervised
def bench_supervised(arrays, device, repeats, batch=128) -> list[dict]:
    np_images, np_labels = arrays["pneumoniamnist"]["train"]
    images = torch.from_numpy(np_images).unsqueeze(1).to(device)
    targets = torch.from_numpy(np_labels.reshape(-1)).float().to(device)
    n, cfg = len(images), preset("light")

    def model_and_opt():
        torch.manual_seed(0)
        m = Classifier("imagenet").to(device, memory_format=torch.channels_last)
        return m, torch.optim.AdamW(m.parameters(), lr=1e-3)

    def medssl_epoch(precision: str) -> float:
        model, opt = model_and_opt()
        gen = torch.Generator(device=device).manual_seed(0)
        _sync(device)
        t = time.perf_counter()
        for idx in torch.randperm(n, generator=gen, device=device).split(batch):
            x = augment(to_float(images[idx]), cfg, gen)
            with autocast(device, precision):
                z = model(x)
            loss = bce(z, targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        return time.perf_counter() - t

    def loader_epoch(workers: int) -> float:
        model, opt = model_and_opt()
        loader = DataLoader(
            PilDataset(np_images, np_labels.reshape(-1), light_pil_transform()),
            batch_size=batch,
            shuffle=True,
            num_workers=workers,
        )
        t = time.perf_counter()
        for x, y in loader:
            x = x.to(device, memory_format=torch.channels_last)
            loss = bce(model(x), y.float().to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        return time.perf_counter() - t

    auto = resolve_precision("auto", device)
    rows = [(f"DataLoader + torchvision PIL ({w} workers), fp32", loader_epoch, w) for w in WORKERS]
    rows.append(("medssl loop, fp32", medssl_epoch, "fp32"))
    if auto != "fp32":
        rows.append((f"medssl loop, precision auto ({auto})", medssl_epoch, "auto"))
    out = []
    for name, fn, arg in rows:
        out.append(
            {"pipeline": name, "epoch_s": statistics.median(fn(arg) for _ in range(repeats))}
        )
    base = min(r["epoch_s"] for r in out[: len(WORKERS)])
    for r in out:
        r["speedup_vs_best_loader"] = base / r["epoch_s"]
    return out


# ----------------------------------------------------------------------------- probe
def bench_probe(arrays, device, data_root, epochs=30, batch=128) -> list[dict]:
    """Head-only training per (fraction, seed) cell, identical but for where features come from."""
    splits = D.load_splits("breastmnist", data_root, device=device)
    torch.manual_seed(0)
    encoder = Encoder("imagenet").to(device, memory_format=torch.channels_last).eval()
    precision = resolve_precision("auto", device)
    cells = [(f, s) for f in (0.01, 0.05, 0.1, 0.2, 1.0) for s in (0, 1, 2)]
    val_t = splits["val"].targets

    def grid(cached: bool) -> float:
        _sync(device)
        t = time.perf_counter()
        feats = {}
        if cached:
            feats = {
                k: extract_features(encoder, sp.images, 512, None, precision)
                for k, sp in splits.items()
            }
        for frac, seed in cells:
            idx = D.stratified_subset(splits["train"].targets, frac, seed)
            head = torch.nn.Linear(512, 1).to(device)
            opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
            for _ in range(epochs):
                for b in idx.split(batch):
                    if cached:
                        h = feats["train"][b]
                    else:
                        h = extract_features(
                            encoder, splits["train"].images[b], 512, None, precision
                        )
                    loss = bce(head(h).squeeze(1), splits["train"].targets[b])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                hv = (
                    feats["val"]
                    if cached
                    else extract_features(encoder, splits["val"].images, 512, None, precision)
                )
                bce(head(hv).squeeze(1), val_t).item()  # the per-epoch validation check
        _sync(device)
        return time.perf_counter() - t

    cached, uncached = grid(True), grid(False)
    rows = [
        {
            "pipeline": f"re-run frozen backbone every epoch ({epochs} epochs x 15 cells)",
            "grid_s": uncached,
        },
        {"pipeline": f"cached features, same {epochs}-epoch heads", "grid_s": cached},
    ]
    # medssl probe itself: cached features + scikit-learn logistic regressions, C chosen on val
    import tempfile

    from medssl.commands.probe import ProbeConfig, probe

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        probe(
            ProbeConfig(
                encoder="random",
                dataset="breastmnist",
                data_root=data_root,
                out=str(Path(tmp) / "p"),
                device=str(device),
                progress=False,
                embedding=False,
                tensorboard=False,
            ),
            log=lambda *a: None,
        )
        rows.append(
            {
                "pipeline": "`medssl probe` (sklearn LR, 7 C values per cell)",
                "grid_s": time.perf_counter() - t,
            }
        )
    for r in rows:
        r["speedup_vs_uncached"] = uncached / r["grid_s"]
    return rows


# ----------------------------------------------------------------------------- stems
def bench_stems(device, repeats) -> list[dict]:
    from throughput import step_time

    rows = []
    for stem in ("imagenet", "compact", "cifar"):
        for precision in ("fp32", "bf16"):
            t = statistics.median(step_time(stem, precision, device, 128, repeats))
            row = {"stem": stem, "precision": precision, "img_per_s": 128 / t}
            for ds in ("breastmnist", "pneumoniamnist"):
                run = Path("runs/stems") / f"{ds}-{stem}"
                if (run / "metrics.json").is_file():
                    import yaml

                    ran = yaml.safe_load((run / "config.yaml").read_text())["precision"]
                    if ran == precision:
                        m = json.loads((run / "metrics.json").read_text())
                        row[f"{ds}_test_auroc"] = m["test"]["auroc"]
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- compile
def bench_compile(device, repeats, batch=128, steps=10) -> list[dict]:
    """torch.compile of the training step's model: is it worth a flag? (compile time included
    separately; steady-state images/s compared with eager)."""

    def run(compiled: bool) -> dict:
        torch.manual_seed(0)
        model = Classifier("imagenet").to(device, memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        fwd = torch.compile(model) if compiled else model
        gen = torch.Generator(device=device).manual_seed(0)
        x0 = torch.rand(batch, 1, 28, 28, device=device)
        y = (torch.rand(batch, device=device) > 0.5).float()
        times = []
        for _ in range(steps + 1):
            _sync(device)
            t = time.perf_counter()
            x = augment(x0, preset("light"), gen)
            loss = bce(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device)
            times.append(time.perf_counter() - t)
        return {"first_step_s": times[0], "img_per_s": batch / statistics.median(times[1:])}

    rows = []
    for compiled in (False, True):
        r = run(compiled)
        rows.append({"model": "torch.compile" if compiled else "eager", **r})
    rows[1]["ratio"] = rows[1]["img_per_s"] / rows[0]["img_per_s"]
    return rows


# ----------------------------------------------------------------------------- report
def _md_table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            cells.append(
                f"{v:.3g}"
                if isinstance(v, float) and abs(v) < 100
                else f"{v:.0f}"
                if isinstance(v, float)
                else str(v)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=os.environ.get("MEDSSL_DATA_ROOT"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sections", default="augment,ssl,supervised,probe,stems,compile")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    arrays = {n: D.load_arrays(n, args.data_root) for n in ("breastmnist", "pneumoniamnist")}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    header = (
        f"medssl benchmark suite, {date.today()}, {machine(device)}, torch {torch.__version__}, "
        f"commit {commit}; median of {args.repeats} repeats"
    )
    print(header, flush=True)
    out = Path(args.out)
    tag = f"suite-{device.type}"
    previous = out / f"{tag}.json"
    # sections run earlier (on this machine) are kept; the ones run now replace theirs
    results: dict = json.loads(previous.read_text()) if previous.is_file() else {}
    results.setdefault("sections", {})
    sections = {
        "augment": (
            "Augmentation throughput (PneumoniaMNIST train, batch 256)",
            lambda: bench_augment(arrays, device, args.repeats),
        ),
        "ssl": (
            "SimCLR pretraining views/s (ResNet-18 imagenet stem + 512-512-128 head, "
            "batch 256 = 512 views)",
            lambda: bench_ssl(arrays, device, args.repeats),
        ),
        "supervised": (
            "One supervised epoch, PneumoniaMNIST (4708 images, batch 128, ResNet-18 "
            "imagenet stem)",
            lambda: bench_supervised(arrays, device, args.repeats),
        ),
        "probe": (
            "Label-efficiency probe grid, BreastMNIST, random encoder",
            lambda: bench_probe(arrays, device, args.data_root),
        ),
        "stems": (
            "Stems and precisions: training images/s (batch 128) and test AUROC of "
            "runs/stems (seed 0, where that run used this precision)",
            lambda: bench_stems(device, 5),
        ),
        "compile": (
            "torch.compile vs eager: ResNet-18 imagenet stem, fp32 training step, batch 128 "
            "(first step includes compilation)",
            lambda: bench_compile(device, args.repeats),
        ),
    }
    unknown = set(args.sections.split(",")) - set(sections)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; known: {','.join(sections)}")
    for key in args.sections.split(","):
        title, fn = sections[key]
        t = time.perf_counter()
        rows = fn()
        results["sections"][key] = {
            "title": title,
            "header": header,
            "seconds": time.perf_counter() - t,
            "rows": rows,
        }
        print(f"## {title}\n\n{_md_table(rows)}\n", flush=True)
        _write(out, tag, results, sections)  # after every section: a crash keeps the rest


def _write(out: Path, tag: str, results: dict, sections: dict) -> None:
    md = ["# medssl benchmark suite", ""]
    for key in sections:
        if key in results["sections"]:
            sec = results["sections"][key]
            md += [f"## {sec['title']}", "", sec["header"], "", _md_table(sec["rows"]), ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.md").write_text("\n".join(md))
    (out / f"{tag}.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
