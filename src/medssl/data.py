"""MedMNIST binary datasets: registry, loading through `medmnist`, validation, device splits.

A split is held as one uint8 tensor ``images`` of shape (N, 1, H, W) and a float tensor
``targets`` of shape (N,) with 1 = the positive class chosen for the run. The original medmnist
labels are kept in ``labels`` so that predictions can always be traced back to them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medssl.artifacts import expand, read_arrays
from medssl.errors import MedsslError
from medssl.options import SIZES

DATA_ROOT_ENV = "MEDSSL_DATA_ROOT"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a supported dataset is, and what its labels mean."""

    name: str  # medmnist flag
    modality: str
    label_names: dict[int, str]
    default_positive: int | None  # the clinically meaningful "positive" label (None: ask)
    # The default supervised recipe: `train` values for the options a user leaves unset (the
    # study and the SSL fine-tuning runs use it too); chosen by `medssl tune` (docs/results.md).
    recipe: dict[str, Any] = field(default_factory=dict)


DATASETS: dict[str, DatasetInfo] = {
    "breastmnist": DatasetInfo(
        name="breastmnist",
        modality="ultrasound",
        label_names={0: "malignant", 1: "normal/benign"},
        default_positive=0,
        recipe={  # `medssl tune`, 5-fold CV, trial 22 (docs/results.md)
            "stem": "compact",
            "epochs": 20,
            "lr": 2.67e-4,
            "weight_decay": 2.99e-5,
            "lr_schedule": "constant",
            "augment": "light",
            "loss": "weighted-bce",
            "batch_size": 64,
            "precision": "auto",  # tuned in bf16, where the machine has it natively
        },
    ),
    "pneumoniamnist": DatasetInfo(
        name="pneumoniamnist",
        modality="chest-xray",
        label_names={0: "normal", 1: "pneumonia"},
        default_positive=1,
        recipe={  # `medssl tune`, 3-fold CV, trial 11 (docs/results.md)
            "stem": "imagenet",
            "epochs": 20,
            "lr": 1.81e-2,
            "weight_decay": 2.34e-4,
            "lr_schedule": "constant",
            "augment": "light",
            "loss": "weighted-bce",
            "batch_size": 64,
            "precision": "fp32",
        },
    ),
}


# A user's own data (a folder, CSV or npz: medssl.sources): classes from the data, no default
# positive class, and the fast recipe (imagenet stem) until `medssl tune` says otherwise.
USER_RECIPE = {"stem": "imagenet", "epochs": 30}
_USER_INFO: dict[str, DatasetInfo] = {}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of a MedMNIST name, or the description of a user's source (listed,
    not decoded); raises a clear error for anything else."""
    if name in DATASETS:
        return DATASETS[name]
    from medssl import sources

    key = str(expand(name))
    if key not in _USER_INFO:
        listing = sources.list_source(name)
        _USER_INFO[key] = DatasetInfo(
            name=key,
            modality="unknown",
            label_names=dict(enumerate(listing.classes)),
            default_positive=None,
            recipe=USER_RECIPE,
        )
    return _USER_INFO[key]


def class_names(dataset: str, run_dir: Path | None = None) -> dict[int, str]:
    """Label -> class name; for a user's source, from the run's data.json when it has one (the
    data may have moved since)."""
    if run_dir is not None and dataset not in DATASETS and (run_dir / "data.json").is_file():
        from medssl.artifacts import read_json

        classes = read_json(run_dir / "data.json", "data record", require=("classes",))["classes"]
        if isinstance(classes, list) and len(classes) == 2:
            return dict(enumerate(map(str, classes)))
    return dataset_info(dataset).label_names


def check_same_data(run_dir: Path, dataset: str, size: int) -> None:
    """Refuse when a user's source no longer holds the images the run was made with."""
    from medssl.artifacts import read_json
    from medssl.sources import loaded_record

    if dataset in DATASETS or not (run_dir / "data.json").is_file():
        return
    saved = read_json(run_dir / "data.json", "data record").get("content")
    now = loaded_record(dataset, size)
    if now is not None and saved != now.get("content"):
        raise MedsslError(
            f"{dataset}: its images or split differ from those {run_dir} was made with "
            "(data.json); evaluate on the data the run saw"
        )


def default_data_root() -> Path:
    """Data root: $MEDSSL_DATA_ROOT if set, else medmnist's default (~/.medmnist)."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return expand(env)
    return expand("~/.medmnist")


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
            if str(positive).lower() == name.lower():
                return label
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


def npz_filename(name: str, size: int) -> str:
    """The official file name medmnist uses for `name` at image `size`."""
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


def official_md5(name: str, size: int) -> str:
    """The official MD5 of the npz file, from medmnist's INFO."""
    from medmnist import INFO

    key = "MD5" if size == 28 else f"MD5_{size}"
    return INFO[name][key]


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_arrays(
    name: str,
    root: Path | str | None = None,
    size: int = 28,
    download: bool = False,
    verify_md5: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Load all three official splits of the npz file (medmnist's layout and names).

    Returns ``{split: (images uint8 (N, H, W), labels int64 (N,))}`` after validating file
    presence, keys, shapes, dtypes and binary labels. Raises MedsslError with one line naming
    the file and the problem. `download` fetches a missing file through `medmnist`.
    """
    info = dataset_info(name)
    if size not in SIZES:
        raise MedsslError(f"--size must be one of {SIZES}, got {size}")
    if name not in DATASETS:
        from medssl.sources import load_labelled

        return load_labelled(name, size)
    root = expand(root) if root is not None else default_data_root()
    path = root / npz_filename(name, size)
    if download and not path.is_file():
        _download(info, root, size)
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


def _download(info: DatasetInfo, root: Path, size: int) -> None:
    """Fetch the official file with medmnist (needs network)."""
    import medmnist

    made = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    cls = getattr(medmnist, medmnist.INFO[info.name]["python_class"])
    try:
        cls(split="train", root=str(root), download=True, size=size)
    except Exception as exc:  # medmnist raises bare RuntimeError/URLError/...
        if made and not any(root.iterdir()):
            root.rmdir()  # a failed download leaves nothing behind
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise MedsslError(f"cannot download {info.name} into {root}: {msg[:160]}") from None


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


@dataclass
class Split:
    """One split on the device: uint8 images (N, 1, H, W), targets in {0., 1.}, raw labels."""

    name: str
    images: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the official split (differs after subsampling)

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx: torch.Tensor) -> Split:
        idx = idx.to(self.images.device)
        return Split(
            self.name, self.images[idx], self.targets[idx], self.labels[idx], self.indices[idx]
        )


def to_split(
    name: str, images: np.ndarray, labels: np.ndarray, positive: int, device: torch.device
) -> Split:
    """Put a validated split on `device` with targets = (label == positive)."""
    imgs = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device)
    lab = torch.from_numpy(labels).to(device)
    targets = (lab == positive).float()
    return Split(name, imgs, targets, lab, torch.arange(len(lab), device=device))


def load_splits(
    name: str,
    root: Path | str | None = None,
    positive: int | None = None,
    size: int = 28,
    device: torch.device | str = "cpu",
    download: bool = False,
    verify_md5: bool = False,
) -> dict[str, Split]:
    """Load train/val/test of a binary MedMNIST dataset onto `device`."""
    pos = resolve_positive(dataset_info(name), None) if positive is None else positive
    arrays = load_arrays(name, root, size=size, download=download, verify_md5=verify_md5)
    return {s: to_split(s, *arrays[s], pos, torch.device(device)) for s in SPLITS}


def stratified_subset(targets: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Seeded stratified subsample: round(fraction * N_c) of each class c, at least one each.

    Returns sorted indices into `targets`. Raises MedsslError when a class is empty or the
    fraction cannot hold one example of each class (round(fraction * N) < 2).
    """
    if not 0.0 < fraction <= 1.0:
        raise MedsslError(f"--label-fraction must be in (0, 1], got {fraction}")
    if round(fraction * len(targets)) < 2:
        raise MedsslError(
            f"--label-fraction {fraction} of {len(targets)} training examples "
            f"cannot hold one example of each class; use >= {2 / len(targets):.4f}"
        )
    if fraction == 1.0:
        return torch.arange(len(targets))
    gen = torch.Generator().manual_seed(seed)
    t = targets.cpu()
    chosen = []
    for c in (0.0, 1.0):
        idx = torch.nonzero(t == c).flatten()
        if len(idx) == 0:
            raise MedsslError(f"class {int(c)} has no training examples; cannot subsample")
        k = max(1, round(fraction * len(idx)))
        chosen.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return torch.cat(chosen).sort().values


def class_counts(targets: torch.Tensor) -> tuple[int, int]:
    """(N0, N1): negatives and positives in a target vector."""
    n1 = int(targets.sum().item())
    return len(targets) - n1, n1


def dataset_summary(
    name: str, root: Path | str | None = None, size: int = 28, verify_md5: bool = True
) -> dict:
    """What `medssl data` shows for one dataset: label meanings, default positive class, and,
    when the file is present, its MD5 check and class balance per split."""
    info = dataset_info(name)
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
    arrays = load_arrays(name, root, size=size)
    out["splits"] = {
        s: {"n": int(len(lab)), "label_0": int((lab == 0).sum()), "label_1": int((lab == 1).sum())}
        for s, (_, lab) in arrays.items()
    }
    return out


def data_command(cfg, log=print) -> None:
    """`medssl data`: label meanings and default positive class of each dataset; for files
    present, the MD5 check and class balance per split. Every check runs before anything is
    written: missing files or a differing MD5 raise one line at the end, after the report, and
    `--export-samples DIR` (a new or empty folder) writes PNGs only when all files are good."""
    if cfg.dataset and cfg.dataset not in DATASETS:
        return _user_data_report(cfg, log)
    names = [cfg.dataset] if cfg.dataset else sorted(DATASETS)
    export = expand(cfg.export_samples) if cfg.export_samples else None
    if export is not None and (export.is_file() or (export.is_dir() and any(export.iterdir()))):
        raise MedsslError(f"--export-samples {export}: not a new or empty folder; name another")
    tree = expand(cfg.export) if cfg.export else None
    if tree is not None:
        if len(names) != 1:
            raise MedsslError("--export writes one dataset: add --dataset breastmnist (or another)")
        if tree.is_file() or (tree.is_dir() and any(tree.iterdir())):
            raise MedsslError(f"--export {tree}: not a new or empty folder; name another")
        from medssl.rundir import enclosing_run

        if enclosing_run(tree) is not None:
            raise MedsslError(f"--export {tree}: inside the run folder {enclosing_run(tree)}")
    missing, bad_md5 = [], []
    for name in names:
        if cfg.download:
            load_arrays(name, cfg.data_root, size=cfg.size, download=True)
        s = dataset_summary(name, cfg.data_root, cfg.size)
        labels = ", ".join(f"{k} = {v}" for k, v in s["labels"].items())
        pos = s["default_positive"]
        log(
            f"{name} ({s['modality']}): labels {labels}; default positive: label "
            f"{pos['label']} ({pos['name']})"
        )
        if not s["present"]:
            missing.append(name)
            log(f"  {s['file']}: missing")
            continue
        log(f"  {s['file']}: MD5 {'matches the official release' if s['md5_ok'] else 'DIFFERS'}")
        if not s["md5_ok"]:
            bad_md5.append(s["file"])
        for split, c in s["splits"].items():
            counts = f"label 0: {c['label_0']:>5}  label 1: {c['label_1']:>5}"
            log(f"  {split:<5} n={c['n']:>5}  {counts}")
    if missing:
        from medmnist import INFO

        key = "url" if cfg.size == 28 else f"url_{cfg.size}"
        urls = " ".join(INFO[n][key].split("?")[0] for n in missing)
        raise MedsslError(
            f"{len(missing)} file(s) missing; run `medssl data --download` online, "
            f"or download {urls} into --data-root (or ${DATA_ROOT_ENV})"
        )
    if bad_md5:
        raise MedsslError(
            f"{' '.join(bad_md5)}: MD5 differs from the official release; download the file again"
        )
    if export is not None:
        for name in names:
            export_samples(name, cfg.data_root, cfg.size, export)
        log(f"sample PNGs in {export}")
    if tree is not None:
        from medssl.sources import export_folder

        export_folder(names[0], cfg.data_root, cfg.size, tree, log)


def _user_data_report(cfg, log) -> None:
    """`medssl data --dataset PATH`: a user's source as medssl reads it (decoded and cached)."""
    from medssl.sources import list_source

    if cfg.export or cfg.export_samples or cfg.download:
        raise MedsslError("--export, --export-samples and --download are for MedMNIST names")
    listing = list_source(cfg.dataset)
    arrays = load_arrays(cfg.dataset, size=cfg.size)
    classes = ", ".join(f"{i} = {c}" for i, c in enumerate(listing.classes))
    log(
        f"{listing.source} ({listing.kind}): labels {classes}; positive class: name it with "
        "--positive-class"
    )
    log(f"  split: {listing.record()['split']}")
    for split, (_, lab) in arrays.items():
        log(
            f"  {split:<5} n={len(lab):>6}  label 0: {(lab == 0).sum():>6}  label 1: "
            f"{(lab == 1).sum():>6}"
        )


def export_samples(name: str, root, size: int, out: Path, per_class: int = 4) -> None:
    """The first `per_class` training images of each label as PNGs in `out`."""
    from PIL import Image

    from medssl.artifacts import atomic_path

    images, labels = load_arrays(name, root, size=size)["train"]
    for label in (0, 1):
        for i in np.flatnonzero(labels == label)[:per_class]:
            with atomic_path(out / f"{name}_label{label}_{i}.png") as tmp:
                Image.fromarray(images[i]).save(tmp, format="PNG")
