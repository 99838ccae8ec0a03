"""Unlabeled pretraining pools: MedMNIST training splits, image folders, npz/npy arrays, and
the check that no held-out (validation/test) image of the evaluated dataset is pretrained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medssl.data.load import load_arrays
from medssl.data.preprocess import Preprocessing
from medssl.data.sources import (
    as_prep,
    convert_array,
    decode_files,
    image_hashes,
    images_under,
    is_path,
    resolve_bits,
)
from medssl.errors import MedsslError
from medssl.io.artifacts import expand, read_arrays


def load_pool(
    sources: list[str], data_root, size: int | Preprocessing, log=print
) -> tuple[np.ndarray, list[dict]]:
    """Images of an unlabeled pretraining pool, (N, size, size) uint8, and what each source gave.

    A source is a MedMNIST name (its training split), a folder of images (any depth; labels and
    folder names unused), or an .npz/.npy array (MedMNIST layout: its train_images; else its
    only array). `size` may be the run's Preprocessing (16-bit folders: bits found per source)."""
    prep = as_prep(size)
    parts, seen = [], []
    for src in sources:
        if not is_path(src):
            images = load_arrays(src, data_root, prep.size, prep=prep)["train"][0]
            kind = "train split"
        else:
            path = expand(src)
            if path.is_dir():
                files, other = images_under(path)
                if not files:
                    raise MedsslError(f"--unlabeled {path}: no images in this folder")
                folder_prep = resolve_bits(files, files, prep, log)
                images, kind = decode_files(files, folder_prep, log, f"{path}"), "folder"
            elif path.is_file() and path.suffix.lower() in (".npz", ".npy"):
                images, kind = convert_array(_pool_array(path), prep, str(path)), "array"
            elif path.exists():
                raise MedsslError(f"--unlabeled {path}: not a folder, .npz or .npy file")
            else:
                raise MedsslError(
                    f"--unlabeled {src!r}: not breastmnist or pneumoniamnist, nor an existing "
                    "folder, .npz or .npy file"
                )
        parts.append(images)
        seen.append({"source": src, "kind": kind, "n": int(len(images))})
    return np.concatenate(parts), seen


def _pool_array(path: Path) -> np.ndarray:
    arrays = read_arrays(path, None, "image array")
    if "train_images" in arrays:
        return arrays["train_images"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise MedsslError(f"{path}: holds {', '.join(arrays)}; give one array or MedMNIST's layout")


def check_pool(pool: np.ndarray, splits: dict, dataset: str) -> None:
    """Refuse a pool holding a validation or test image of the evaluated dataset (pixel-exact)
    that its training split does not also hold."""
    train = set(image_hashes(splits["train"][0]))
    held_out = {}
    for s in ("val", "test"):
        for i, h in enumerate(image_hashes(splits[s][0])):
            if h not in train:
                held_out.setdefault(h, (s, i))
    hits = [(j, held_out[h]) for j, h in enumerate(image_hashes(pool)) if h in held_out]
    if hits:
        j, (s, i) = hits[0]
        raise MedsslError(
            f"--unlabeled: {len(hits)} pool image(s) are {dataset} validation/test images (e.g. "
            f"pool image {j} = {s} image {i}); held-out images cannot be pretrained on"
        )
