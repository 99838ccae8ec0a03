"""Converting a large folder of the user's images: time and peak memory, first read and cached.

Makes a folder of N distinct PNGs (default 50,000) by tiling the official BreastMNIST and
PneumoniaMNIST training images (image i is official image i mod M, rolled by i // M pixels),
then, each in a fresh process so that peak memory is its own:
1. decoders side by side on the same 5,000 files: Pillow (`Image.open` + `np.asarray`) and
   torchvision.io (`decode_png`), one thread;
2. `medssl.data.sources.decode_files` on the whole folder with an empty cache (list, hash, decode in
   threads, stream into the memory-mapped cache file), then again (cache hit);
and prints seconds, images/s and peak RSS (ru_maxrss) of each.

    python benchmarks/convert.py [--n 50000] [--data-root DIR] [--work /tmp/medssl-convert]

Writes benchmarks/results/convert-cpu.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))


def make_folder(work: Path, n: int, data_root: str) -> Path:
    from PIL import Image

    from medssl import data as D

    folder = work / "images"
    if folder.is_dir() and len(list(folder.rglob("*.png"))) == n:
        return folder
    base = np.concatenate(
        [D.load_arrays(d, data_root)["train"][0] for d in ("breastmnist", "pneumoniamnist")]
    )
    for i in range(n):
        img = np.roll(base[i % len(base)], i // len(base), axis=1)
        path = folder / f"{i // 1000:03d}" / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    return folder


def child(kind: str, folder: str, cache: str) -> dict:
    """One measurement in this (fresh) process."""
    os.environ["MEDSSL_CACHE"] = cache
    from medssl.data import sources

    start = time.perf_counter()
    files, _ = sources._images_under(Path(folder))  # every row includes listing the folder
    if kind == "pillow":
        from PIL import Image

        files = files[:5000]
        for p in files:
            with Image.open(p) as im:
                np.asarray(im)
    elif kind == "torchvision":
        import torch
        from torchvision.io import decode_png, read_file

        torch.set_num_threads(1)
        files = files[:5000]
        for p in files:
            decode_png(read_file(str(p)))
    elif kind == "baseline":  # the imports and the listing: what every row carries
        pass
    else:
        sources.decode_files(files, 28, lambda *a: None, "benchmark")
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "n": len(files), "seconds": seconds, "peak_rss_mb": rss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--data-root", default=os.environ.get("MEDSSL_DATA_ROOT",
                                                         "../shared/data/medmnist"))  # fmt: skip
    p.add_argument("--work", default="/tmp/medssl-convert")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    work = Path(a.work)
    t = time.perf_counter()
    folder = make_folder(work, a.n, a.data_root)
    print(f"{a.n} PNGs in {folder} ({time.perf_counter() - t:.0f} s to make)")
    cache = work / "cache"
    for f in cache.glob("*"):
        f.unlink()
    rows = []
    for kind in ("baseline", "pillow", "torchvision", "medssl-first", "medssl-cached"):
        cmd = [sys.executable, __file__, "--child", kind, str(folder), str(cache)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["images_per_s"] = r["n"] / r["seconds"]
        rows.append(r)
        print(f"{kind:14} {r['n']:>6} images {r['seconds']:7.2f} s {r['images_per_s']:9.0f} img/s"
              f"  peak RSS {r['peak_rss_mb']:.0f} MB")  # fmt: skip
    import torch
    from suite import machine

    size_mb = sum(f.stat().st_size for f in folder.rglob("*.png")) / 2**20
    lines = [
        f"# Converting a folder of {a.n} PNGs ({date.today()}, {machine(torch.device('cpu'))})",
        "",
        f"`python benchmarks/convert.py --n {a.n}`: {size_mb:.0f} MB of 28x28 PNGs tiled from the "
        "official training images; each row a fresh process.",
        "",
        "| what | images | seconds | images/s | peak RSS MB |",
        "|---|---|---|---|---|",
    ]
    names = {
        "baseline": "listing the folder only (RSS: the imports, the floor of every row)",
        "pillow": "Pillow decode, 1 thread (5,000 files)",
        "torchvision": "torchvision.io decode_png, 1 thread (5,000 files)",
        "medssl-first": "medssl: list + hash + decode into the cache (one loop: small files)",
        "medssl-cached": "medssl: list + hash + read the cache",
    }
    for r in rows:
        lines.append(f"| {names[r['kind']]} | {r['n']} | {r['seconds']:.2f} | "
                     f"{r['images_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    res = Path(__file__).parent / "results"
    (res / "convert-cpu.md").write_text(text)
    (res / "convert-cpu.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
