"""One entry point to every dataset: a MedMNIST name or a user's folder, CSV or npz.

`dataset_info` describes it (classes, default positive class, recipe), `load_arrays` gives its
three splits as ``{split: (images uint8 (N, H, W), labels int64 (N,))}``, `load_splits` puts them
on the device with targets for the positive class that `resolve_positive` names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medssl.catalog import DATASETS, SIZES, SPLITS, USER_MODALITY, USER_RECIPE, DatasetInfo
from medssl.data.medmnist import load_official
from medssl.data.preprocess import Preprocessing
from medssl.data.sources import list_source, load_labelled, loaded_record
from medssl.data.splits import Split, to_split
from medssl.errors import MedsslError
from medssl.io.artifacts import expand, read_json

_USER_INFO: dict[str, DatasetInfo] = {}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of a MedMNIST name, or the description of a user's source (listed,
    not decoded); raises a clear error for anything else."""
    if name in DATASETS:
        return DATASETS[name]
    key = str(expand(name))
    if key not in _USER_INFO:
        listing = list_source(name)
        _USER_INFO[key] = DatasetInfo(
            name=key,
            modality=USER_MODALITY,
            label_names=dict(enumerate(listing.classes)),
            default_positive=None,
            recipe=USER_RECIPE,
        )
    return _USER_INFO[key]


def class_names(dataset: str, run_dir: Path | None = None) -> dict[int, str]:
    """Label -> class name; for a user's source, from the run's data.json when it has one (the
    data may have moved since)."""
    if run_dir is not None and dataset not in DATASETS and (run_dir / "data.json").is_file():
        classes = read_json(run_dir / "data.json", "data record", require=("classes",))["classes"]
        if isinstance(classes, list) and len(classes) == 2:
            return dict(enumerate(map(str, classes)))
    return dataset_info(dataset).label_names


def check_same_data(run_dir: Path, dataset: str, size: int) -> None:
    """Refuse when a user's source no longer holds the images the run was made with."""
    if dataset in DATASETS or not (run_dir / "data.json").is_file():
        return
    saved = read_json(run_dir / "data.json", "data record").get("content")
    now = loaded_record(dataset, size)
    if now is not None and saved != now.get("content"):
        raise MedsslError(
            f"{dataset}: its images or split differ from those {run_dir} was made with "
            "(data.json); evaluate on the data the run saw"
        )


def recorded_preprocessing(run_dir: Path, size: int) -> Preprocessing:
    """The preprocessing a run folder recorded (data.json), replayed by evaluate and predict;
    a run made before it was recorded read 16-bit over the dtype range and stretched."""
    path = run_dir / "data.json"
    before = Preprocessing(size=size, intensity="range", aspect="stretch")
    if not path.is_file():
        return before
    record = read_json(path, "data record")
    if "preprocessing" not in record:
        return before
    return Preprocessing.from_record(record["preprocessing"], str(path))


def resolve_positive(info: DatasetInfo, positive: int | str | None) -> int:
    """Map a `--positive-class` value (label int, label name, or None) to a label int."""
    names = ", ".join(f"{k} = {v}" for k, v in info.label_names.items())
    if positive is None:
        if info.default_positive is None:
            raise MedsslError(
                f"--positive-class is required for {info.name} (its classes: {names}); name the "
                "class that counts as positive"
            )
        return info.default_positive
    if info.name not in DATASETS:  # a user's classes: the name first, then the label number
        for label, name in info.label_names.items():
            if str(positive) == name:
                return label
        wanted = str(positive).lower()
        folded = [k for k, name in info.label_names.items() if name.lower() == wanted]
        if len(folded) > 1:
            raise MedsslError(
                f"--positive-class {positive!r} matches both classes of {info.name} but for "
                f"case ({names}); give the exact name"
            )
        if folded:
            return folded[0]
        if str(positive) in ("0", "1"):
            return int(positive)
        raise MedsslError(f"--positive-class {positive!r} is not a class of {info.name}: {names}")
    if isinstance(positive, str) and not positive.isdigit():
        for label, name in info.label_names.items():
            if positive.lower() in {name.lower(), *name.lower().split("/")}:
                return label
        names = ", ".join(f"{k}={v}" for k, v in info.label_names.items())
        raise MedsslError(
            f"--positive-class {positive!r} unknown for {info.name}; use one of {names}"
        )
    label = int(positive)
    if label not in info.label_names:
        raise MedsslError(f"--positive-class must be 0 or 1 for {info.name}, got {label}")
    return label


def load_arrays(
    name: str,
    root: Path | str | None = None,
    size: int = 28,
    download: bool = False,
    verify_md5: bool = False,
    prep: Preprocessing | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load all three splits of a MedMNIST name (its official npz file) or of a user's source
    (a folder, CSV or npz: `medssl.data.sources`).

    Returns ``{split: (images uint8 (N, H, W), labels int64 (N,))}`` after validating file
    presence, keys, shapes, dtypes and binary labels. Raises MedsslError with one line naming
    the file and the problem. `download` fetches a missing file through `medmnist`. `prep`
    (default: the default preprocessing at `size`) turns a user's files into the arrays;
    MedMNIST's files are already 8-bit at their size.
    """
    if name not in DATASETS:
        dataset_info(name)  # a clear error for what is neither a MedMNIST name nor a source
        if size not in SIZES:
            raise MedsslError(f"--size must be one of {SIZES}, got {size}")
        return load_labelled(name, prep if prep is not None else Preprocessing(size=size))
    return load_official(name, root, size, download, verify_md5)


def load_splits(
    name: str,
    root: Path | str | None = None,
    positive: int | None = None,
    size: int = 28,
    device: torch.device | str = "cpu",
    download: bool = False,
    verify_md5: bool = False,
    prep: Preprocessing | None = None,
) -> dict[str, Split]:
    """Load train/val/test of a binary MedMNIST dataset or a user's source onto `device`."""
    pos = resolve_positive(dataset_info(name), None) if positive is None else positive
    arrays = load_arrays(name, root, size, download, verify_md5, prep)
    return {s: to_split(s, *arrays[s], pos, torch.device(device)) for s in SPLITS}
