"""Draw docs/figures/clinical-mappings.png: one real image through each intensity mapping.

    python scripts/clinical_figure.py [--data-root DIR]

Row 1: pydicom's CT_small.dcm (a real CT slice, 16-bit signed, no window in the file) through
medssl's DICOM path: its own min-max, a soft-tissue window and a lung window (--window).
Row 2: a BreastMNIST test image stored as 12-bit data in a 16-bit PNG (values x 16) through
`--intensity bits`, `range` and `percentile`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from medssl import data as D  # noqa: E402
from medssl.data import dicom  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "clinical-mappings.png"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default=os.environ.get("MEDSSL_DATA_ROOT"))
    args = ap.parse_args()
    ct = Path(get_testdata_file("CT_small.dcm"))
    row1 = [
        ("CT: no window: min-max", dicom.read(ct, None, [])),
        ("CT: --window 40,400", dicom.read(ct, (40.0, 400.0), [])),
        ("CT: --window -600,1500", dicom.read(ct, (-600.0, 1500.0), [])),
    ]
    v = D.load_arrays("breastmnist", args.data_root)["test"][0][0]
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "x16.png"
        Image.fromarray(v.astype(np.uint16) * 16).save(png)
        row2 = [
            (
                f"12-bit PNG: --intensity {m}",
                D.read_file(png, D.Preprocessing(intensity=m, bits=12 if m == "bits" else None)),
            )
            for m in ("bits", "range", "percentile")
        ]
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
    for ax, (title, img) in zip(axes.ravel(), row1 + row2, strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"{title}\n{len(np.unique(img))} grey levels", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
