"""Training throughput of the ResNet-18 stems and precisions, measured side by side in one run.

One training step = augment (light preset) + forward + BCE + backward + AdamW, batch 128 of
28x28 grey images, channels_last, on the chosen device. Prints a Markdown table (median of
repeats) and writes JSON next to it.

    python benchmarks/throughput.py [--device cpu] [--repeats 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import torch

from medssl.augment import augment
from medssl.catalog import preset
from medssl.losses import bce
from medssl.models import Classifier
from medssl.runtime import autocast


def step_time(stem: str, precision: str, device: torch.device, batch: int, repeats: int) -> list:
    torch.manual_seed(0)
    model = Classifier(stem).to(device, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(0)
    x0 = torch.rand(batch, 1, 28, 28, device=device)
    y = (torch.rand(batch, device=device) > 0.5).float()
    times = []
    for i in range(repeats + 2):  # two warm-up steps
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        x = augment(x0, preset("light"), gen)
        with autocast(device, precision):
            z = model(x)
        loss = bce(z, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    device = torch.device(args.device)
    rows = []
    for stem in ("imagenet", "compact", "cifar"):
        for precision in ("fp32", "bf16"):
            t = statistics.median(step_time(stem, precision, device, args.batch, args.repeats))
            rows.append({"stem": stem, "precision": precision, "img_per_s": args.batch / t})
    base = rows[0]["img_per_s"]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    lines = [
        f"Training throughput, batch {args.batch}, 28 px, median of {args.repeats} steps; "
        f"{machine}; torch {torch.__version__}; commit {commit}; {date.today()}",
        "",
        "| stem | precision | images/s | vs imagenet fp32 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['stem']} | {r['precision']} | {r['img_per_s']:.0f} | {r['img_per_s'] / base:.2f}x |"
        for r in rows
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"throughput-{device.type}"
    (out / f"{tag}.md").write_text(text + "\n")
    (out / f"{tag}.json").write_text(
        json.dumps({"machine": machine, "commit": commit, "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
