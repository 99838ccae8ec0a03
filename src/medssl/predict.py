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

import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from medssl.errors import MedsslError
from medssl.rundir import read_yaml, write_csv

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _fit(img: Image.Image, size: int, in_channels: int) -> np.ndarray:
    """PIL image -> uint8 (C, size, size) in the classifier's channels."""
    img = img.convert("L" if in_channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _array_images(path: Path, key: str | None) -> np.ndarray:
    """The uint8 image array of a .npy file or of one key of a .npz file."""
    try:
        if path.suffix == ".npy":
            if key:
                raise MedsslError(f"{path}: a .npy file holds one array; drop ':{key}'")
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if key is None:
                candidates = [k for k in keys if k == "images" or k.endswith("_images")]
                if len(candidates) != 1:
                    raise MedsslError(
                        f"{path}: name the images array as {path.name}:KEY (keys: {keys})"
                    )
                key = candidates[0]
            if key not in keys:
                raise MedsslError(f"{path}: no array {key!r} (keys: {keys})")
            return z[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MedsslError(f"{path}: not a readable NumPy file ({exc})") from None


def _from_array(a: np.ndarray, where: str, size: int, in_channels: int) -> np.ndarray:
    if a.dtype != np.uint8:
        raise MedsslError(f"{where}: expected uint8 images (0-255), got {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 4 and a.shape[-1] in (1, 3):
        a = a[..., 0] if a.shape[-1] == 1 else a
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)) or len(a) == 0:
        raise MedsslError(f"{where}: expected images (N, H, W) or (N, H, W, 1|3), got {a.shape}")
    if a.ndim == 3 and a.shape[1:] == (size, size) and in_channels == 1:
        return a[:, None]  # the common case: MedMNIST-sized grayscale, no conversion
    return np.stack([_fit(Image.fromarray(img), size, in_channels) for img in a])


def load_inputs(
    inputs: list[str], size: int, in_channels: int = 1
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Images (N, C, size, size) uint8 and each one's (source, index within the source)."""
    images: list[np.ndarray] = []
    sources: list[tuple[str, int]] = []
    for spec in inputs:
        path, key = Path(spec), None
        if not path.exists() and ":" in spec:
            head, key = spec.rsplit(":", 1)
            path = Path(head)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise MedsslError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            files = [path]
        else:
            raise MedsslError(f"{spec}: no such file or folder")
        for f in files:
            if f.suffix in (".npy", ".npz"):
                a = _from_array(_array_images(f, key), str(f), size, in_channels)
                images.append(a)
                sources += [(str(f), i) for i in range(len(a))]
                continue
            try:
                with Image.open(f) as img:
                    images.append(_fit(img, size, in_channels)[None])
            except (UnidentifiedImageError, OSError) as exc:
                raise MedsslError(f"{f}: not a readable image ({exc})") from None
            sources.append((str(f), 0))
    return np.concatenate(images), sources


def predict_run(
    run_dir: Path | str,
    inputs: list[str],
    out: Path | str,
    device: str = "auto",
) -> list[dict]:
    """Score `inputs` with RUN_DIR's best model and write the CSV `out`; returns its rows."""
    from medssl import data as D
    from medssl.calibration import sigmoid
    from medssl.evaluate import check_classifier_run, load_classifier
    from medssl.train import TrainConfig, predict_logits, resolve_device

    run_dir = Path(run_dir)
    if Path(out).is_dir():
        raise MedsslError(f"--out {out} is a folder; name the CSV file to write")
    meta = check_classifier_run(run_dir)
    cfg = TrainConfig.from_dict(read_yaml(run_dir / "config.yaml"))
    images, sources = load_inputs(inputs, cfg.size, int(meta.get("in_channels", 1)))
    dev = resolve_device(device)
    model = load_classifier(run_dir / "best.safetensors", dev)
    logits = predict_logits(
        model, torch.from_numpy(images).to(dev), cfg.eval_batch_size, cfg.resize, cfg.precision
    )
    z = logits.double().cpu().numpy()
    info = D.dataset_info(cfg.dataset)
    positive = int(meta.get("positive_label", info.default_positive))
    names = {True: info.label_names[positive], False: info.label_names[1 - positive]}
    thresholds = {"p>=0.5": 0.0}  # logit 0 <=> probability 0.5
    temperature = None
    evaluation = run_dir / "evaluation.json"
    if evaluation.is_file():
        ev = json.loads(evaluation.read_text())
        temperature = float(ev["temperature"])
        for rule, op in ev["operating_points"].items():
            thresholds[rule] = float(op["val"]["threshold"])
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
    return rows
