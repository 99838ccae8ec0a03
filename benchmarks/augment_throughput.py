"""Augmentation throughput: medssl's batched on-device family vs a torchvision PIL pipeline.

Same images (PneumoniaMNIST train, 4708 x 28 x 28), same kind of transforms (crop-scale,
rotation, horizontal flip, brightness/contrast), measured side by side in one run; median of
repeats of one pass over the split. Prints a Markdown table and writes JSON.

    python benchmarks/augment_throughput.py [--data-root DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from medssl import data as D
from medssl.augment import augment, preset, to_float


class PilDataset(Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i]))


def time_medssl(images: torch.Tensor, batch: int) -> float:
    gen = torch.Generator().manual_seed(0)
    cfg = preset("light")
    t = time.perf_counter()
    for start in range(0, len(images), batch):
        augment(to_float(images[start : start + batch]), cfg, gen)
    return time.perf_counter() - t


def time_pil(images, batch: int, workers: int) -> float:
    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(28, scale=(0.85, 1.0), ratio=(0.9, 1.1)),
            transforms.RandomRotation(10),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.1, contrast=0.1),
            transforms.ToTensor(),
        ]
    )
    loader = DataLoader(
        PilDataset(images, tf),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=False,
    )
    t = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    arrays = D.load_arrays("pneumoniamnist", args.data_root)
    np_images = arrays["train"][0]
    images = torch.from_numpy(np_images).unsqueeze(1)
    n = len(images)
    rows = [
        (
            "medssl batched (1 pass, CPU)",
            [time_medssl(images, args.batch) for _ in range(args.repeats)],
        )
    ]
    for w in (0, 2):
        rows.append(
            (
                f"torchvision PIL + DataLoader, {w} workers",
                [time_pil(np_images, args.batch, w) for _ in range(args.repeats)],
            )
        )
    result = [{"pipeline": name, "img_per_s": n / statistics.median(ts)} for name, ts in rows]
    base = result[1]["img_per_s"]
    lines = [
        f"Augmentation throughput, PneumoniaMNIST train ({n} images), batch {args.batch}, "
        f"median of {args.repeats}, torch {torch.get_num_threads()} threads",
        "",
        "| pipeline | images/s | vs PIL, 0 workers |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['pipeline']} | {r['img_per_s']:.0f} | {r['img_per_s'] / base:.1f}x |" for r in result
    ]
    print("\n".join(lines))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "augment-cpu.md").write_text("\n".join(lines) + "\n")
    (out / "augment-cpu.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
