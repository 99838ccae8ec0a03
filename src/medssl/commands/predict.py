"""`medssl predict RUN_DIR INPUT...`: score new images with a trained classifier.

Inputs are image files (PNG, JPEG, BMP, TIFF, 16-bit PNG/TIFF, DICOM), folders of them (not
recursive), or arrays of uint8/uint16 images: `.npy`, or `.npz` with one images array
(`FILE.npz:KEY` picks one, e.g. `pneumoniamnist.npz:test_images`). Each image goes through the
run's recorded preprocessing (data.json: intensity mapping, DICOM window, aspect, Lanczos resize
to the run's size; `medssl.data.preprocess`), the same function training used.
The output CSV has, per image, the logit and the probability of the run's positive class; when
`medssl evaluate` has run, also the temperature-scaled probability and a decision at each of
its operating points. Everything there was fitted on validation: predict applies it, never refits.
"""

from __future__ import annotations

import zipfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medssl import data as D
from medssl.calibration import sigmoid
from medssl.commands.evaluate import load_classifier_run, read_evaluation
from medssl.data.preprocess import is_dicom
from medssl.data.sources import IMAGE_SUFFIXES, bits_for_inputs, convert_array
from medssl.errors import MedsslError
from medssl.io.artifacts import read_arrays, reading, write_csv
from medssl.io.rundir import check_output_file
from medssl.runtime import predict_logits, resolve_device

HEADER = b"source,index,logit,probability"  # the CSV predict writes starts so
MAX_IMAGES = 2_000_000  # one call; beyond it, split the inputs


def _ours(path: Path) -> bool:
    """An existing CSV that predict wrote (its header)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(HEADER)) == HEADER
    except OSError:
        return False


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


def _files(spec: str) -> tuple[list[Path], str | None]:
    """The files an input names (a folder: its images, not recursive) and an npz key."""
    path, key = Path(spec), None
    if not path.exists() and ":" in spec:
        head, key = spec.rsplit(":", 1)
        path = Path(head)
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_dicom(p))
        )
        if not files:
            raise MedsslError(f"{path}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files, key
    if path.is_file():
        return [path], key
    raise MedsslError(f"{spec}: no such file or folder")


def _listed(spec: str) -> list[tuple[Path, str | None]]:
    files, key = _files(spec)
    return [(f, key) for f in files]


def load_inputs(
    inputs: list[str], prep: D.Preprocessing | int
) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """Images (N, 1, size, size) uint8 by the run's preprocessing, and each one's (source,
    index within the source)."""
    prep = prep if isinstance(prep, D.Preprocessing) else D.Preprocessing(size=int(prep))
    images: list[np.ndarray] = []
    sources: list[tuple[str, int]] = []
    listed = [(f, key) for spec in inputs for f, key in _listed(spec)]
    arrays = {".npy", ".npz"}
    files = [f for f, _ in listed if f.suffix.lower() not in arrays]
    file_prep = bits_for_inputs(files, prep, lambda *a: None) if files else prep
    array_prep = prep if (prep.bits or 8) > 8 else replace(prep, bits=None)
    for f, key in listed:
        if f.suffix.lower() in arrays:
            raw = _array_images(f, key)
            raw = raw[None] if raw.ndim == 2 else raw  # one image (H, W)
            a = convert_array(raw, array_prep, str(f))
            images.append(a[:, None])
            sources += [(str(f), i) for i in range(len(a))]
        else:
            images.append(D.read_file(f, file_prep)[None, None])
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
    images, sources = load_inputs(inputs, D.recorded_preprocessing(run.path, cfg.size))
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
