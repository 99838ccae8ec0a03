"""External validation on shifted copies of BreastMNIST's test split, as files.

    python benchmarks/external_shift.py [--out DIR] [--epochs N]

Trains one BreastMNIST model (`medssl train`, the dataset's recipe, seed 0; choose on val), then
writes the official test split as a labelled folder tree once per shift of the robustness suite
(severity 2) plus the unshifted images, each as 16-bit PNG (values x 16: 12-bit data) or as DICOM
(MONOCHROME1, rescaled, windowed), and runs `medssl evaluate RUN --dataset TREE` on each: the
run's recorded preprocessing, temperature and val-chosen thresholds applied to another "site".
Prints one Markdown table (AUROC, BA, ECE before/after T, sensitivity/specificity at the val
Youden threshold).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from medssl import cli  # noqa: E402
from medssl import data as D  # noqa: E402
from medssl.robustness import SHIFTS, apply_shift  # noqa: E402
from test_clinical import write_dicom  # noqa: E402  (the DICOM writer the tests use)

NAMES = {0: "malignant", 1: "normal-benign"}


def write_tree(root: Path, images: np.ndarray, labels: np.ndarray, kind: str) -> Path:
    for i, (v, y) in enumerate(zip(images, labels, strict=True)):
        path = root / NAMES[int(y)] / f"{i:04d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "png16":
            Image.fromarray(v.astype(np.uint16) * 16).save(path.with_suffix(".png"))
        else:
            stored = (255 - v.astype(np.uint16)) * 16
            write_dicom(path.with_suffix(".dcm"), stored, "MONOCHROME1", 12, (0.5, -100),
                        (920.5, 2041.0), f"site-b-{i}")  # fmt: skip
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--data-root", default=os.environ.get("MEDSSL_DATA_ROOT"))
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="medssl-external-"))
    run = work / "run"
    argv = ["train", "--dataset", "breastmnist", "--out", str(run), "--no-progress",
            "--no-tensorboard"]  # fmt: skip
    argv += ["--epochs", str(args.epochs)] if args.epochs else []
    if args.data_root:
        argv += ["--data-root", args.data_root]
    assert cli.main(argv) == 0
    images, labels = D.load_arrays("breastmnist", args.data_root)["test"]
    x = torch.from_numpy(images).float().unsqueeze(1) / 255
    rows = []
    for shift in ["none", *SHIFTS]:
        if shift == "none":
            shifted = images
            param = 0.0
        else:
            param = SHIFTS[shift][1][1]
            y = apply_shift(x, shift, param, seed=0)
            shifted = (y[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        for kind in ("png16", "dicom") if shift == "none" else ("dicom",):
            tree = write_tree(work / f"{shift}-{kind}", shifted, labels, kind)
            assert cli.main(["evaluate", str(run), "--dataset", str(tree), "--n-bootstrap",
                             "200"]) == 0  # fmt: skip
            m = json.loads((run / "external" / tree.name / "metrics.json").read_text())
            op = m["operating_points"]["youden"]["test"]
            rows.append((shift, param, kind, m, op))
    own = json.loads((run / "metrics.json").read_text())["test"]
    print(f"\nrun {run}: own test AUROC {own['auroc']:.3f}, BA {own['balanced_accuracy']:.3f}\n")
    print(
        "| external set | param | files | AUROC (95% CI) | BA@0.5 | ECE → after T "
        "| sens / spec @ val Youden |"
    )
    print("|---|---|---|---|---|---|---|")
    for shift, param, kind, m, op in rows:
        lo, hi = m["ci95"]["auroc"]
        print(f"| {shift} | {param:g} | {kind} | {m['auroc']:.3f} ({lo:.3f}–{hi:.3f}) | "
              f"{m['balanced_accuracy']:.3f} | {m['calibration_before']['ece']:.3f} → "
              f"{m['calibration_after']['ece']:.3f} | {op['sensitivity']:.3f} / "
              f"{op['specificity']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
