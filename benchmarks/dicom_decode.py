"""Decoding and caching N DICOM files next to the same images as 8-bit PNG.

    python benchmarks/dicom_decode.py [--n 20000] [--size 28]

Writes N BreastMNIST images (the official train split, cycled; each file its own image index in
a corner pixel so no two are identical) once as 8-bit PNG and once as DICOM (12 bits stored,
MONOCHROME1, rescale and window: the full mapping path), then, each in a fresh process with an
empty cache, times `sources.decode_files` (list + hash + decode + cache write), a second call
(from the cache), and reads the process's peak RSS. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_clinical import write_dicom  # noqa: E402  (the DICOM writer the tests use)

CHILD = """
import json, resource, sys, time
from pathlib import Path
from medssl.data import sources
files = sorted(Path(sys.argv[1]).iterdir())
t = time.perf_counter(); a = sources.decode_files(files, int(sys.argv[2]), lambda *x: None)
first = time.perf_counter() - t
t = time.perf_counter(); b = sources.decode_files(files, int(sys.argv[2]), lambda *x: None)
second = time.perf_counter() - t
assert (a == b).all()
print(json.dumps({"first": first, "second": second, "shape": list(a.shape),
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--data-root", default=os.environ.get("MEDSSL_DATA_ROOT"))
    args = ap.parse_args()
    from medssl import data as D

    train = D.load_arrays("breastmnist", args.data_root)["train"][0]
    work = Path(tempfile.mkdtemp(prefix="medssl-dicom-bench-"))
    (work / "png").mkdir()
    (work / "dcm").mkdir()
    t = time.perf_counter()
    for i in range(args.n):
        v = train[i % len(train)].copy()
        v[0, 0], v[0, 1] = i % 256, (i // 256) % 256
        Image.fromarray(v).save(work / "png" / f"{i:06d}.png")
        write_dicom(work / "dcm" / f"{i:06d}.dcm", (255 - v.astype(np.uint16)) * 16,
                    "MONOCHROME1", 12, (0.5, -100), (920.5, 2041.0), f"p{i}")  # fmt: skip
    print(f"wrote {args.n} PNG + {args.n} DICOM files in {time.perf_counter() - t:.0f} s")
    rows = {}
    for kind in ("png", "dcm"):
        env = dict(os.environ, MEDSSL_CACHE=str(work / f"cache-{kind}"))
        out = subprocess.run([sys.executable, "-c", CHILD, str(work / kind), str(args.size)],
                             env=env, capture_output=True, text=True, check=True)  # fmt: skip
        rows[kind] = json.loads(out.stdout.strip().splitlines()[-1])
    mb = {k: sum(p.stat().st_size for p in (work / k).iterdir()) / 2**20 for k in rows}
    print(f"\n{args.n} files, --size {args.size}, {os.cpu_count()} CPUs\n")
    print("| files | on disk (MiB) | first call (s) | files/s | cached call (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    for kind, r in rows.items():
        print(f"| {kind} | {mb[kind]:.0f} | {r['first']:.1f} | {args.n / r['first']:.0f} | "
              f"{r['second']:.2f} | {r['peak_mib']:.0f} |")  # fmt: skip
    print(f"\nDICOM / PNG first-call time: {rows['dcm']['first'] / rows['png']['first']:.2f}x")


if __name__ == "__main__":
    main()
