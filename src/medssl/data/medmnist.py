"""The official MedMNIST npz files: names, MD5s, download through `medmnist`, validation.

`load_official` returns ``{split: (images uint8 (N, H, W), labels int64 (N,))}`` for the three
official splits after checking the file's presence, keys, shapes, dtypes and binary labels;
every failure is one line naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from medssl.catalog import DATA_ROOT_ENV, DATASETS, SIZES, SPLITS
from medssl.errors import MedsslError
from medssl.io.artifacts import expand, read_arrays


def default_data_root() -> Path:
    """Data root: $MEDSSL_DATA_ROOT if set, else medmnist's default (~/.medmnist)."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return expand(env)
    return expand("~/.medmnist")


def npz_filename(name: str, size: int) -> str:
    """The official file name medmnist uses for `name` at image `size`."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def official_md5(name: str, size: int) -> str:
    """The official MD5 of the npz file, from medmnist's INFO."""
    from medmnist import INFO  # imports torch: only when an MD5 is checked

    key = "MD5" if size == 28 else f"MD5_{size}"
    return INFO[name][key]


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_official(
    name: str,
    root: Path | str | None = None,
    size: int = 28,
    download: bool = False,
    verify_md5: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load all three splits of the official npz file (medmnist's layout and names).

    Returns ``{split: (images uint8 (N, H, W), labels int64 (N,))}`` after validating file
    presence, keys, shapes, dtypes and binary labels. Raises MedsslError with one line naming
    the file and the problem. `download` fetches a missing file through `medmnist`.
    """
    if size not in SIZES:
        raise MedsslError(f"--size must be one of {SIZES}, got {size}")
    root = expand(root) if root is not None else default_data_root()
    path = root / npz_filename(name, size)
    if download and not path.is_file():
        _download(name, root, size)
    if not path.is_file():
        raise MedsslError(
            f"{path}: file not found; pass --data-root DIR holding {path.name}, set "
            f"${DATA_ROOT_ENV}, or add --download (needs network)"
        )
    if verify_md5:
        expected = official_md5(name, size)
        got = file_md5(path)
        if got != expected:
            raise MedsslError(f"{path}: MD5 {got} does not match the official {expected}")
    keys = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))
    arrays = read_arrays(path, keys, f"{name} npz file")
    return {
        s: _validate(path, s, arrays[f"{s}_images"], arrays[f"{s}_labels"], size) for s in SPLITS
    }


def _download(name: str, root: Path, size: int) -> None:
    """Fetch the official file with medmnist (needs network)."""
    import medmnist  # imports torch: only when a download is asked for

    made = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(medmnist, medmnist.INFO[name]["python_class"])
    try:
        cls(split="train", root=str(root), download=True, size=size)
    except Exception as exc:  # medmnist raises bare RuntimeError/URLError/...
        if made and not any(root.iterdir()):
            root.rmdir()  # a failed download leaves nothing behind
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise MedsslError(f"cannot download {name} into {root}: {msg[:160]}") from None


def _validate(
    path: Path, split: str, images: np.ndarray, labels: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    where = f"{path}: {split}"
    if images.ndim != 3 or images.shape[1:] != (size, size):
        raise MedsslError(f"{where}_images has shape {images.shape}, expected (N, {size}, {size})")
    if images.dtype != np.uint8:
        raise MedsslError(f"{where}_images has dtype {images.dtype}, expected uint8")
    if labels.ndim == 0:
        raise MedsslError(f"{where}_labels is a single value, expected one label per image")
    if len(images) == 0 or len(labels) == 0:
        raise MedsslError(f"{where} split is empty")
    labels = labels.reshape(len(labels), -1)
    if labels.shape != (len(images), 1):
        raise MedsslError(f"{where}_labels has shape {labels.shape}, expected ({len(images)}, 1)")
    values = np.unique(labels)
    if not np.all(np.isin(values, (0, 1))):
        raise MedsslError(f"{where}_labels are not binary: values {values.tolist()[:10]}")
    if len(values) < 2:  # AUROC, balanced accuracy and the probes need both classes
        raise MedsslError(f"{where}_labels hold one class only ({values.tolist()})")
    return images, labels[:, 0].astype(np.int64)


def dataset_summary(
    name: str, root: Path | str | None = None, size: int = 28, verify_md5: bool = True
) -> dict:
    """What `medssl data` shows for one dataset: label meanings, default positive class, and,
    when the file is present, its MD5 check and class balance per split."""
    info = DATASETS[name]
    root = expand(root) if root is not None else default_data_root()
    path = root / npz_filename(name, size)
    out = {
        "dataset": name,
        "modality": info.modality,
        "labels": {str(k): v for k, v in info.label_names.items()},
        "default_positive": {
            "label": info.default_positive,
            "name": info.label_names[info.default_positive],
        },
        "file": str(path),
        "present": path.is_file(),
    }
    if not path.is_file():
        return out
    if verify_md5:
        out["md5_ok"] = file_md5(path) == official_md5(name, size)
    arrays = load_official(name, root, size=size)
    out["splits"] = {
        s: {"n": int(len(lab)), "label_0": int((lab == 0).sum()), "label_1": int((lab == 1).sum())}
        for s, (_, lab) in arrays.items()
    }
    return out
