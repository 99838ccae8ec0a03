"""`medssl predict RUN_DIR INPUT...`: score new images with a trained classifier.

Inputs are image files (PNG, JPEG, BMP, TIFF), folders of them (not recursive), or arrays of
uint8 images: `.npy`, or `.npz` with one images array (`FILE.npz:KEY` picks one, e.g.
`pneumoniamnist.npz:test_images`). Each image is read with the classifier's channels (grayscale
for MedMNIST) and, if its size differs from the run's, resized with bicubic interpolation (PIL).
The output CSV has, per image, the logit and the probability of the run's positive class; when
`medssl evaluate` has run, also the temperature-scaled probability and a decision at each of
its operating points. Everything there was fitted on validation: predict applies it, never refits.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from medssl import data as D
from medssl.calibration import sigmoid
from medssl.commands.evaluate import load_classifier_run, read_evaluation
from medssl.errors import MedsslError
from medssl.io.artifacts import read_arrays, read_image, reading, write_csv
from medssl.io.rundir import check_output_file
from medssl.runtime import predict_logits, resolve_device

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
HEADER = b"source,index,logit,probability"  # the CSV predict writes starts so
MAX_IMAGES = 2_000_000  # one call; beyond it, split the inputs


def _ours(path: Path) -> bool:
    """An existing CSV that predict wrote (its header)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(HEADER)) == HEADER
    except OSError:
        return False


def _fit(img: Image.Image, size: int, in_channels: int) -> np.ndarray:
    """PIL image (already in the classifier's mode) -> uint8 (C, size, size)."""
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _array_images(path: Path, key: str | None) -> np.ndarray:
    """The uint8 image array of a .npy file or of one key of a .npz file."""
    if path.suffix == ".npy":
        if key:
            raise MedsslError(f"{path}: a .npy file holds one array; drop ':{key}'")
        return read_arrays(path)[""]
    if key is None:
        keys = _npz_keys(path)
        candidates = [k for k in keys if k == "images" or k.endswith("_images")]
        if len(candidates) != 1:
            raise MedsslError(f"{path}: name the images array as {path.name}:KEY (keys: {keys})")
        key = candidates[0]
    return read_arrays(path, (key,))[key]


def _npz_keys(path: Path) -> list[str]:
    with reading(path, "NumPy .npz file"), zipfile.ZipFile(path) as z:
        return [n.removesuffix(".npy") for n in z.namelist()]


def _from_array(a: np.ndarray, where: str, size: int, in_channels: int) -> np.ndarray:
    if a.dtype != np.uint8:
        raise MedsslError(f"{where}: expected uint8 images (0-255), got {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4 and a.shape[-1] in (1, 3):
        a = a[..., 0] if a.shape[-1] == 1 else a
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)) or 0 in a.shape:
        raise MedsslError(f"{where}: expected images (N, H, W) or (N, H, W, 1|3), got {a.shape}")
    if a.ndim == 3 and a.shape[1:] == (size, size) and in_channels == 1:
        return a[:, None]  # the common case: MedMNIST-sized grayscale, no conversion
    mode = "L" if in_channels == 1 else "RGB"
    return np.stack([_fit(Image.fromarray(img).convert(mode), size, in_channels) for img in a])


def _files(spec: str) -> tuple[list[Path], str | None]:
    """The files an input names (a folder: its images, not recursive) and an npz key."""
    path, key = Path(spec), None
    if not path.exists() and ":" in spec:
        head, key = spec.rsplit(":", 1)
        path = Path(head)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MedsslError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files, key
    if path.is_file():
        return [path], key
    raise MedsslError(f"{spec}: no such file or folder")


def load_inputs(
    inputs: list[str], size: int, in_channels: int = 1
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Images (N, C, size, size) uint8 and each one's (source, index within the source)."""
    images: list[np.ndarray] = []
    sources: list[tuple[str, int]] = []
    mode = "L" if in_channels == 1 else "RGB"
    for spec in inputs:
        files, key = _files(spec)
        for f in files:
            if f.suffix.lower() in (".npy", ".npz"):
                a = _from_array(_array_images(f, key), str(f), size, in_channels)
                images.append(a)
                sources += [(str(f), i) for i in range(len(a))]
            else:
                images.append(_fit(read_image(f, mode), size, in_channels)[None])
                sources.append((str(f), 0))
            if len(sources) > MAX_IMAGES:
                raise MedsslError(f"more than {MAX_IMAGES} images in one call; split the inputs")
    return np.concatenate(images), sources


def predict_run(
    run_dir: Path | str,
    inputs: list[str],
    out: Path | str,
    device: str = "auto",
    log=print,
) -> list[dict]:
    """Score `inputs` with RUN_DIR's best model and write the CSV `out`; returns its rows.

    The run, its evaluation.json (if any), every input and the output path are checked before
    the CSV is written; `out` is a new file or a CSV predict wrote before, never another file.
    """
    out = check_output_file(out, _ours, "predictions CSV")
    run = load_classifier_run(run_dir, "predict")
    cfg = run.cfg
    thresholds = {"p>=0.5": 0.0}  # logit 0 <=> probability 0.5
    temperature = None
    if (run.path / "evaluation.json").is_file():
        temperature, rules = read_evaluation(run.path / "evaluation.json")
        thresholds |= rules
    dev = resolve_device(device)
    images, sources = load_inputs(inputs, cfg.size, 1)
    model = run.model.to(dev, memory_format=torch.channels_last)
    logits = predict_logits(
        model, torch.from_numpy(images).to(dev), cfg.eval_batch_size, cfg.resize, cfg.precision
    )
    z = logits.double().cpu().numpy()
    label_names = D.class_names(cfg.dataset, run.path)
    names = {True: label_names[run.positive], False: label_names[1 - run.positive]}
    rows = []
    for (src, idx), zz in zip(sources, z, strict=True):
        row = {"source": src, "index": idx, "logit": float(zz), "probability": float(sigmoid(zz))}
        if temperature is not None:
            row["probability_calibrated"] = float(sigmoid(zz / temperature))
        for rule, t in thresholds.items():
            # As operating_points.rates_at: positive when the logit >= the threshold.
            row[f"decision_{rule}"] = names[bool(zz >= t)]
        rows.append(row)
    write_csv(out, rows)
    log(format_predictions(rows, str(run.path), str(out), f"label {run.positive}, {names[True]}"))
    return rows


def format_predictions(rows: list[dict], run_dir: str, out: str, positive: str) -> str:
    """What `medssl predict` prints: how many images, and the calls at each rule."""
    lines = [f"{len(rows)} images scored by {run_dir} (positive class: {positive}); wrote {out}"]
    for rule in (k for k in rows[0] if k.startswith("decision_")):
        counts = Counter(r[rule] for r in rows)
        called = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        lines.append(f"  {rule.removeprefix('decision_'):<22} {called}")
    if "probability_calibrated" not in rows[0]:
        lines.append(
            "  (run `medssl evaluate` on the run for calibrated probabilities and operating points)"
        )
    return "\n".join(lines)
