"""Your own images: labelled folders, CSV files and npz arrays.

A labelled source is a path where a MedMNIST name would go (`--dataset PATH`):
- a folder `ROOT/{train,val,test}/{CLASS_A,CLASS_B}/...` (torchvision ImageFolder's layout per
  split) or `ROOT/{CLASS_A,CLASS_B}/...` without splits; images at any depth under a class;
- a CSV with columns `path,label[,split]`, paths relative to the CSV's folder;
- an npz in MedMNIST's layout (`train_images`, `train_labels`, ... for train/val/test).
Class names come from the data (folder names, CSV labels, npz label values); label 0 is the
first class in sorted order. Without splits, a seeded stratified 7:1:2 train/val/test split is
made (MedMNIST's proportions), the same every time for the same files.

Images become one uint8 channel at the run's `--size` (RGB/RGBA/palette to grey, 16-bit to
8-bit, other sizes resized; each kind of conversion is counted in the log). Decoded arrays are
cached under `$MEDSSL_CACHE` (else `~/.cache/medssl`), keyed by the files' content and the size,
so the second command on the same data skips decoding. Decoding (in threads for large files) streams
into the cache file (a memory-mapped .npy), one chunk of images at a time.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import stat
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from medssl.catalog import DATASETS, SPLITS
from medssl.data.preprocess import (
    Preprocessing,
    bit_depth,
    decode_image,
    is_dicom,
    prepare,
    read_file,
)
from medssl.errors import MedsslError
from medssl.io.artifacts import (
    TEMP_SUFFIX,
    expand,
    read_arrays,
    reading,
)

SPLIT_FRACTIONS = {"val": 0.1, "test": 0.2}  # MedMNIST's 7:1:2; train takes the rest
SPLIT_SEED = 0
IMAGE_SUFFIXES = {
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".gif",
    ".webp",
    ".pgm",
    ".dcm",
    ".dicom",
}
CACHE_ENV = "MEDSSL_CACHE"
LARGE_FILE = 16 * 1024  # bytes: files this large on average are decoded in threads
CHUNK = 2048  # images decoded per chunk (bounds the memory held outside the cache array)
FORMAT = 2  # bump when decoding changes: old cache entries are then ignored


@dataclass
class Listing:
    """A labelled source, listed (not decoded): files or arrays per split and class names."""

    source: Path
    kind: str  # folder | csv | npz
    classes: tuple[str, str]
    labels: dict[str, np.ndarray]  # split -> int64 labels (index into classes)
    files: dict[str, list[Path]] = field(default_factory=dict)  # folder/csv: split -> paths
    made_split: bool = False
    ignored: list[Path] = field(default_factory=list)  # files skipped: not images by suffix
    groups: dict[str, list[str]] | None = None  # split -> patient of each image (if known)
    grouped_by: str | None = None  # "patient column" | "DICOM PatientID"

    def record(self) -> dict:
        """What a run folder records about its data (data.json)."""
        return {
            "source": str(self.source),
            "kind": self.kind,
            "classes": list(self.classes),
            "split": f"made by medssl (seed {SPLIT_SEED}, 7:1:2 stratified)"
            if self.made_split
            else "from the data",
            "n": {s: int(len(v)) for s, v in self.labels.items()},
            "grouping": "none (each image on its own)"
            if self.groups is None
            else f"by patient ({self.grouped_by}): "
            + ", ".join(f"{s} {len(set(g))}" for s, g in self.groups.items())
            + " patients; no patient in two splits",
        }


def is_path(dataset: str) -> bool:
    """True when `dataset` names a user's source rather than a MedMNIST dataset."""
    return dataset not in DATASETS


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return expand(env)
    return expand(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "medssl"


# ---- listing ----


def images_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """Image files (by suffix; DICOM also without one) at any depth under `folder`, sorted; and
    the other files."""
    images, other = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() not in IMAGE_SUFFIXES and not (not p.suffix and is_dicom(p)):
                other.append(p)
                continue
            try:  # a link to a device or a pipe would never end when it is hashed or decoded
                regular = stat.S_ISREG(os.stat(p).st_mode)
            except OSError as exc:
                raise MedsslError(f"{p}: cannot be read ({exc.strerror})") from None
            if not regular:
                raise MedsslError(f"{p}: not a regular file (a device, pipe or socket)")
            images.append(p)
    return sorted(images), sorted(other)


def _subdirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_folders(root: Path, where: str) -> tuple[list[str], dict[str, list[Path]], list[Path]]:
    classes = _subdirs(root)
    if len(classes) != 2:
        found = ", ".join(classes) or "none"
        raise MedsslError(
            f"{where}: expected two class folders (binary task), found {len(classes)}: {found}"
        )
    real = [(root / c).resolve() for c in classes]
    if real[0] == real[1] or real[0] in real[1].parents or real[1] in real[0].parents:
        raise MedsslError(
            f"{where}: the class folders {classes[0]} and {classes[1]} are the same folder or one "
            "holds the other (a link?); each image must belong to one class"
        )
    files, ignored = {}, []
    for c in classes:
        images, other = images_under(root / c)
        if not images:
            raise MedsslError(f"{root / c}: no images (png, jpg, bmp, tif, gif, webp, pgm, dcm)")
        files[c], ignored = images, ignored + other
    return classes, files, ignored


def _list_folder(root: Path) -> Listing:
    names = _subdirs(root)
    split_dirs = [s for s in SPLITS if s in names]
    if split_dirs and len(split_dirs) < 3:
        raise MedsslError(
            f"{root}: has {', '.join(split_dirs)} but not all of train, val and test; give the "
            "three splits, or class folders only (medssl then makes the split)"
        )
    if not split_dirs:
        classes, per_class, ignored = _class_folders(root, str(root))
        paths = [p for c in classes for p in per_class[c]]
        labels = np.array([i for i, c in enumerate(classes) for _ in per_class[c]], np.int64)
        order = sorted(range(len(paths)), key=lambda i: (paths[i].name, str(paths[i])))
        paths, labels = [paths[i] for i in order], labels[order]
        patients = dicom_patients(paths)
        split = make_split(labels, patients)
        files = {s: [paths[i] for i in split[s]] for s in SPLITS}
        lab = {s: labels[split[s]] for s in SPLITS}
        groups = None if patients is None else {s: [patients[i] for i in split[s]] for s in SPLITS}
        return Listing(
            root,
            "folder",
            tuple(classes),
            lab,
            files,
            True,
            ignored,
            groups,
            "DICOM PatientID" if groups else None,
        )
    files, lab, ignored, classes = {}, {}, [], None
    for s in SPLITS:
        cls, per_class, other = _class_folders(root / s, str(root / s))
        if classes is not None and cls != classes:
            raise MedsslError(f"{root / s}: classes {cls} differ from train's {classes}")
        classes, ignored = cls, ignored + other
        pairs = sorted(
            ((p, i) for i, c in enumerate(cls) for p in per_class[c]),
            key=lambda t: (t[0].name, str(t[0])),
        )
        files[s] = [p for p, _ in pairs]
        lab[s] = np.array([i for _, i in pairs], np.int64)
    patients = dicom_patients([p for s in SPLITS for p in files[s]])
    groups = None
    if patients is not None:
        it = iter(patients)
        groups = {s: [next(it) for _ in files[s]] for s in SPLITS}
        check_disjoint(groups, str(root), "DICOM PatientID")
    return Listing(
        root,
        "folder",
        tuple(classes),
        lab,
        files,
        False,
        ignored,
        groups,
        "DICOM PatientID" if groups else None,
    )


def dicom_patients(paths: list[Path]) -> list[str] | None:
    """PatientID of each DICOM file (headers only), or None when no file names a patient."""
    if not any(is_dicom(p) for p in paths[:64]) and not any(is_dicom(p) for p in paths):
        return None
    from medssl.data.dicom import patient_id  # lazy: pydicom for DICOM sources only

    ids = [patient_id(p) if is_dicom(p) else None for p in paths]
    if all(i is None for i in ids):
        return None
    blank = next(p for p, i in zip(paths, ids, strict=True) if i is None) if None in ids else None
    if blank is not None:
        raise MedsslError(
            f"{blank}: no PatientID, where other files of the source have one; every image "
            "needs its patient for a patient-level split"
        )
    return ids


def check_disjoint(groups: dict[str, list[str]], where: str, what: str) -> None:
    """Refuse given splits that share a patient (one patient's images in train and test)."""
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = sorted(set(groups[a]) & set(groups[b]))
            if shared:
                raise MedsslError(
                    f"{where}: {len(shared)} patient(s) ({what}) in both {a} and {b}, e.g. "
                    f"{shared[0]!r}; keep each patient in one split (or drop the split and let "
                    "medssl make a patient-level one)"
                )


def _sorted_classes(values: set[str]) -> list[str]:
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _list_csv(path: Path, external: bool = False) -> Listing:
    with reading(path, "CSV of images"), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    if "path" not in header or "label" not in header:
        raise MedsslError(f"{path}: needs the columns path,label[,split][,patient]; found {header}")
    if not rows:
        raise MedsslError(f"{path}: no rows")
    has_split = "split" in header
    seen: dict[Path, int] = {}
    for line, r in enumerate(rows, start=2):
        if not r["path"] or not r["label"]:
            raise MedsslError(f"{path}, line {line}: empty path or label")
        p = (path.parent / r["path"]).resolve()
        if p in seen:
            raise MedsslError(
                f"{path}, lines {seen[p]} and {line}: the same file {r['path']} is listed twice"
            )
        seen[p] = line
        if "patient" in header and not r.get("patient"):
            raise MedsslError(f"{path}, line {line}: empty patient (every row needs one)")
        if has_split and r.get("split") not in SPLITS:
            raise MedsslError(
                f"{path}, line {line}: split {r.get('split')!r} is not train, val or test"
            )
        r["file"] = p
    missing = [r for r in rows if not r["file"].is_file()]
    if missing:
        raise MedsslError(
            f"{path}: {len(missing)} listed file(s) do not exist, e.g. {missing[0]['path']}"
        )
    classes = _sorted_classes({r["label"] for r in rows})
    if len(classes) != 2:
        raise MedsslError(
            f"{path}: expected two labels (binary task), found {len(classes)}: "
            f"{', '.join(classes[:10])}"
        )
    labels = np.array([classes.index(r["label"]) for r in rows], np.int64)
    if external:  # one set to score: its test rows, or all of them
        keep = [i for i, r in enumerate(rows) if not has_split or r["split"] == "test"]
        if not keep:
            raise MedsslError(f"{path}: no rows with split = test")
        files = {"external": [rows[i]["file"] for i in keep]}
        return Listing(path, "csv", tuple(classes), {"external": labels[keep]}, files)
    if has_split:
        idx = {s: np.array([i for i, r in enumerate(rows) if r["split"] == s], int) for s in SPLITS}
        empty = [s for s in SPLITS if len(idx[s]) == 0]
        if empty:
            raise MedsslError(f"{path}: no rows in split {', '.join(empty)}")
    patients = [r["patient"] for r in rows] if "patient" in header else None
    if not has_split:
        idx = make_split(labels, patients)
    files = {s: [rows[i]["file"] for i in idx[s]] for s in SPLITS}
    lab = {s: labels[idx[s]] for s in SPLITS}
    groups = None if patients is None else {s: [patients[i] for i in idx[s]] for s in SPLITS}
    if groups and has_split:
        check_disjoint(groups, str(path), "patient column")
    return Listing(
        path,
        "csv",
        tuple(classes),
        lab,
        files,
        not has_split,
        [],
        groups,
        "patient column" if groups else None,
    )


def _list_npz(path: Path) -> Listing:
    keys = tuple(f"{s}_{k}" for s in SPLITS for k in ("images", "labels"))
    arrays = read_arrays(path, keys, "npz file in MedMNIST's layout")
    lab = {}
    for s in SPLITS:
        y = np.asarray(arrays[f"{s}_labels"]).reshape(-1)
        if len(y) != len(arrays[f"{s}_images"]):
            raise MedsslError(f"{path}: {s}_labels and {s}_images differ in length")
        if not np.all(np.isin(y, (0, 1))):
            raise MedsslError(f"{path}: {s}_labels are not binary 0/1: {np.unique(y)[:10]}")
        lab[s] = y.astype(np.int64)
    return Listing(path, "npz", ("0", "1"), lab)


def list_source(dataset: str) -> Listing:
    """List a labelled source (folder, CSV or npz) without decoding any image."""
    path = expand(dataset)
    if path.is_dir():
        return _list_folder(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _list_csv(path)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _list_npz(path)
    if path.exists():
        raise MedsslError(f"{path}: not a folder, .csv or .npz file")
    raise MedsslError(
        f"unknown dataset {dataset!r}: not breastmnist or pneumoniamnist, nor an existing "
        "folder, .csv or .npz file"
    )


def list_external(dataset: str) -> Listing:
    """A labelled set to score a finished run on (`evaluate --dataset`), listed as one split
    "external": a folder's test/ split if it has train/val/test, else every image under its
    class folders; a CSV's `split = test` rows if it has the column, else every row; an npz's
    test_images/test_labels. Nothing is split, so a small set is fine."""
    path = expand(dataset)
    if path.is_file() and path.suffix.lower() == ".npz":
        full = _list_npz(path)
        return Listing(path, "npz", full.classes, {"external": full.labels["test"]})
    if path.is_dir():
        root = path / "test" if (path / "test").is_dir() and (path / "train").is_dir() else path
        classes, per_class, ignored = _class_folders(root, str(root))
        pairs = sorted(
            ((p, i) for i, c in enumerate(classes) for p in per_class[c]),
            key=lambda t: (t[0].name, str(t[0])),
        )
        labels = np.array([i for _, i in pairs], np.int64)
        files = {"external": [p for p, _ in pairs]}
        return Listing(path, "folder", tuple(classes), {"external": labels}, files, False, ignored)
    if path.is_file() and path.suffix.lower() == ".csv":
        return _list_csv(path, external=True)
    return list_source(dataset)  # the error for anything else


def make_split(
    labels: np.ndarray, groups: list[str] | None = None, seed: int = SPLIT_SEED
) -> dict[str, np.ndarray]:
    """Seeded stratified train/val/test indices (7:1:2 per class), each sorted. With `groups`
    (a patient per image), grouped too: sklearn's StratifiedGroupKFold in 10 folds, two to
    test and one to val, so no patient is in two splits."""
    if groups is not None:
        return _grouped_split(labels, groups, seed)
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(SPLIT_FRACTIONS["test"] * len(idx))
        n_val = round(SPLIT_FRACTIONS["val"] * len(idx))
        if len(idx) - n_test - n_val < 1 or n_val < 1 or n_test < 1:
            raise MedsslError(
                f"class {c} has {len(idx)} images: too few for a 7:1:2 split (needs >= 6); "
                "give train/val/test splits yourself"
            )
        out["test"].append(idx[:n_test])
        out["val"].append(idx[n_test : n_test + n_val])
        out["train"].append(idx[n_test + n_val :])
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


def _grouped_split(labels: np.ndarray, groups: list[str], seed: int) -> dict[str, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold  # lazy: sklearn is slow to import

    n_groups = len(set(groups))
    if n_groups < 10:
        raise MedsslError(
            f"{n_groups} patients: too few for a patient-level 7:1:2 split (needs >= 10); give "
            "train/val/test splits yourself"
        )
    kfold = StratifiedGroupKFold(10, shuffle=True, random_state=seed)
    fold = np.empty(len(labels), int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" for small sets
        try:
            for f, (_, held) in enumerate(kfold.split(np.zeros(len(labels)), labels, groups)):
                fold[held] = f
        except ValueError:  # a class with fewer than 10 images
            raise MedsslError(
                f"a class has fewer than 10 images: too few for a patient-level 7:1:2 split "
                f"({n_groups} patients); give train/val/test splits yourself"
            ) from None
    out = {
        "test": np.flatnonzero(fold < 2),
        "val": np.flatnonzero(fold == 2),
        "train": np.flatnonzero(fold > 2),
    }
    for s, idx in out.items():
        if len(np.unique(labels[idx])) < 2:
            raise MedsslError(
                f"the patient-level split leaves {s} with one class ({n_groups} patients); give "
                "train/val/test splits yourself"
            )
    return out


# ---- decoding ----


def as_prep(prep: Preprocessing | int) -> Preprocessing:
    """A Preprocessing, or the default one at size `prep`."""
    return prep if isinstance(prep, Preprocessing) else Preprocessing(size=int(prep))


def decode(path: Path, prep: Preprocessing | int) -> tuple[np.ndarray, list[str]]:
    """One image file as a (size, size) uint8 grey array (`preprocess.read_file`), and the
    conversions it needed."""
    tags: list[str] = []
    return read_file(path, as_prep(prep), tags), tags


def bits_for_inputs(paths: list[Path], prep: Preprocessing, log=print) -> Preprocessing:
    """`prep` for files a finished run scores (predict, evaluate --dataset): a run trained on
    16-bit images replays its recorded bits; one trained on 8-bit images (bits 8) reads 16-bit
    inputs by the bits those inputs use (their largest pixel), as training would have."""
    if prep.intensity != "bits" or (prep.bits is not None and prep.bits > 8):
        return prep
    return resolve_bits(paths, paths, replace(prep, bits=None), log)


def resolve_bits(paths: list[Path], train: list[Path], prep: Preprocessing, log=print):
    """`prep` with the bits its `bits` mapping replays: 8 for 8-bit images, else the bit length
    of the largest pixel of the `train` files. Images of mixed bit depth are refused."""
    if prep.bits is not None:
        return prep
    plain = [p for p in paths if not is_dicom(p)]
    depths = {}
    for p in plain:
        try:
            depths.setdefault(bit_depth(p), p)
        except (MedsslError, UnidentifiedImageError, OSError, ValueError, SyntaxError):
            depths.setdefault(0, p)  # unreadable: decoding names it below
        if len(depths.keys() - {0}) > 1:
            raise MedsslError(
                f"mixed bit depths in one source: {depths[8]} is 8-bit, {depths[16]} is 16-bit; "
                "convert them to one depth"
            )
    if 16 not in depths or prep.intensity != "bits":
        return prep.with_bits(8)
    top = 0
    for p in (p for p in train if not is_dicom(p)):
        try:
            top = max(top, int(decode_image(p, []).max()))
        except (MedsslError, UnidentifiedImageError, OSError, ValueError, SyntaxError):
            continue  # decoding names the file below
    bits = max(8, top.bit_length())
    log(
        f"16-bit images: the training images use {bits} bits (largest pixel {top}); "
        f"intensity 'bits' keeps their top 8"
    )
    return prep.with_bits(bits)


def describe_conversions(counts: Counter, n: int) -> str:
    if not counts:
        return f"{n} images already one-channel 8-bit at the run's size"
    parts = [f"{k}: {v}" for k, v in counts.most_common(6)]
    more = f" (+{len(counts) - 6} other kinds)" if len(counts) > 6 else ""
    return f"converted {n} images - " + "; ".join(parts) + more


def _file_digest(path: Path) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def content_key(paths: list[Path], prep: Preprocessing | int, workers: int | None = None) -> str:
    """Cache key: the files' bytes (in order), the preprocessing and the decoding format."""
    key = f"medssl-{FORMAT}-{as_prep(prep).key()}-{len(paths)}"
    h = hashlib.blake2b(key.encode(), digest_size=20)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for digest in pool.map(_file_digest, paths, chunksize=256):
            h.update(digest)
    return h.hexdigest()


def decode_files(
    paths: list[Path], prep: Preprocessing | int, log=print, what: str = "images"
) -> np.ndarray:
    """Decode `paths` into (N, size, size) uint8 by `prep`, through the content-keyed cache."""
    if not paths:
        raise MedsslError(f"no {what} to read")
    prep = as_prep(prep)
    size = prep.size
    key = content_key(paths, prep)
    cache = cache_dir()
    target, meta = cache / f"{key}.npy", cache / f"{key}.json"
    if target.is_file() and meta.is_file():
        try:
            arr = np.load(target, mmap_mode="r")
            if arr.shape == (len(paths), size, size) and arr.dtype == np.uint8:
                note = json.loads(meta.read_text()).get("conversions", "")
                log(f"{what}: {len(paths)} images from the cache ({note})")
                return np.array(arr)
        except (OSError, ValueError):
            pass  # a damaged entry is rebuilt below
    return _decode_into_cache(paths, prep, target, meta, log, what)


def _decode_workers(paths: list[Path]) -> int:
    """Threads for decoding: one for small files (for 28 px PNGs threads were 3x slower than one
    loop: the GIL, not the decoder, is the cost; benchmarks/convert.py), several for large ones
    (Pillow releases the GIL while it decodes)."""
    sample = paths[:: max(1, len(paths) // 64)][:64]
    mean = sum(p.stat().st_size for p in sample) / len(sample)
    return 1 if mean < LARGE_FILE else min(8, (os.cpu_count() or 1) * 2)


def _decode_into_cache(paths, prep, target: Path, meta: Path, log, what: str) -> np.ndarray:
    counts: Counter = Counter()
    size = prep.size
    tmp = target.with_name(f"{target.name}.{os.getpid()}{TEMP_SUFFIX}")
    out = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(paths), size, size))
        with ThreadPoolExecutor(_decode_workers(paths)) as pool:
            for start in range(0, len(paths), CHUNK):
                part = paths[start : start + CHUNK]
                for i, (arr, tags) in enumerate(pool.map(lambda p: decode(p, prep), part)):
                    out[start + i] = arr
                    counts.update(tags)
        out.flush()
        result = np.array(out)
        del out
        out = None
        os.replace(tmp, target)
        note = describe_conversions(counts, len(paths))
        meta.write_text(json.dumps({"conversions": note, "n": len(paths), "size": size}))
    except OSError:  # the cache is not writable (decode errors are MedsslErrors): no cache
        result = None
    finally:
        if out is not None:
            del out
        tmp.unlink(missing_ok=True)
    if result is None:
        result = np.empty((len(paths), size, size), np.uint8)
        for i, p in enumerate(paths):
            result[i], tags = decode(p, prep)
            counts.update(tags)
        note = describe_conversions(counts, len(paths))
    log(f"{what}: {note}")
    return result


def convert_array(images: np.ndarray, prep: Preprocessing | int, where: str) -> np.ndarray:
    """An (N, H, W[, C]) uint8/uint16 array as (N, size, size) uint8 grey, by `prep` (RGB to
    grey by ITU-R 601-2 luma, as PIL's convert("L"))."""
    prep = as_prep(prep)
    a = np.asarray(images)
    if a.ndim == 4 and a.shape[-1] in (1, 3, 4):
        if a.shape[-1] == 1:
            a = a[..., 0]
        else:
            rgb = a[..., :3].astype(np.float64)
            a = (rgb @ np.array([0.299, 0.587, 0.114]) + 0.5).clip(0, 255).astype(a.dtype)
    if a.ndim != 3 or len(a) == 0 or 0 in a.shape:
        raise MedsslError(f"{where}: shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
    if a.dtype not in (np.uint8, np.uint16):
        raise MedsslError(f"{where}: dtype {a.dtype}; expected uint8 or uint16")
    if a.dtype == np.uint16 and prep.intensity == "bits" and prep.bits is None:
        prep = prep.with_bits(max(8, int(a.max()).bit_length()))
    if a.dtype == np.uint8 and prep.intensity in ("bits", "range"):
        if a.shape[1:] == (prep.size, prep.size):
            return np.ascontiguousarray(a)  # the common case: nothing to convert
    try:
        return np.stack([prepare(x, prep) for x in a])
    except MedsslError as exc:
        raise MedsslError(f"{where}: {exc}") from None


# ---- labelled sources ----

_LOADED: dict[tuple[str, int], dict] = {}  # (source, size) -> record of the last load
_GROUPS: dict[str, dict[str, list[str]]] = {}  # source -> split -> patient of each image


def load_labelled(
    dataset: str, prep: Preprocessing | int, log=print
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{split: (images uint8 (N, size, size), labels int64 (N,))}` of a user's source, by
    `prep` (its bits found on the train split). What was converted, ignored or found twice is
    logged once per process and source; the record (with the resolved preprocessing) is
    `loaded_record`."""
    listing = list_source(dataset)
    prep = as_prep(prep)
    size = prep.size
    lines: list[str] = []
    if listing.ignored:
        names = ", ".join(p.name for p in listing.ignored[:3])
        lines.append(
            f"{listing.source}: ignored {len(listing.ignored)} non-image file(s) ({names})"
        )
    arrays = None
    if listing.kind == "npz":
        keys = tuple(f"{s}_images" for s in SPLITS)
        arrays = read_arrays(listing.source, keys, "npz")
        if {arrays[k].dtype for k in keys} - {np.dtype(np.uint8)} and prep.bits is None:
            if len({arrays[k].dtype for k in keys}) > 1:
                raise MedsslError(f"{listing.source}: mixed bit depths (dtypes) across splits")
            prep = convert_array_bits(arrays["train_images"], prep)
        prep = prep if prep.bits is not None else prep.with_bits(8)
    else:
        every = [p for s in SPLITS for p in listing.files[s]]
        prep = resolve_bits(every, listing.files["train"], prep, lines.append)
    out = {}
    for s in SPLITS:
        if arrays is not None:
            imgs = convert_array(arrays[f"{s}_images"], prep, f"{listing.source}: {s}_images")
        else:
            imgs = decode_files(listing.files[s], prep, lines.append, f"{listing.source} {s}")
        out[s] = (imgs, listing.labels[s])
    for s in SPLITS:
        if len(np.unique(out[s][1])) < 2:
            raise MedsslError(f"{listing.source}: the {s} split holds one class only")
    record = listing.record() | {"size": size, "preprocessing": prep.record()}
    record["content"] = _arrays_digest(out)
    dup = _cross_split_duplicates(out)
    if dup:
        lines.append(f"warning: {dup} in {listing.source}; test metrics may be optimistic")
    record["duplicates"] = dup or "none"
    earlier = _LOADED.get((str(listing.source), size))
    if earlier is None or earlier["content"] != record["content"]:
        for line in lines:
            log(line)
    _LOADED[(str(listing.source), size)] = record
    if listing.groups is not None:
        _GROUPS[str(listing.source)] = listing.groups
    if listing.made_split:  # paths relative to the folder, or to the CSV's folder
        base = listing.source if listing.source.is_dir() else listing.source.parent
        record["split_files"] = {
            s: [os.path.relpath(p, base) for p in listing.files[s]] for s in SPLITS
        }
    return out


def convert_array_bits(train: np.ndarray, prep: Preprocessing) -> Preprocessing:
    """`prep` with the bits of a 16-bit training array (its largest pixel's bit length)."""
    if prep.intensity != "bits" or np.asarray(train).dtype != np.uint16:
        return prep.with_bits(8)
    return prep.with_bits(max(8, int(np.asarray(train).max()).bit_length()))


def _arrays_digest(arrays: dict) -> str:
    h = hashlib.blake2b(digest_size=16)
    for s in SPLITS:
        h.update(np.ascontiguousarray(arrays[s][0]).tobytes())
        h.update(arrays[s][1].astype(np.int64).tobytes())
    return h.hexdigest()


def image_hashes(images: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(x.tobytes(), digest_size=12).digest() for x in images]


def _cross_split_duplicates(arrays: dict) -> str:
    h = {s: set(image_hashes(arrays[s][0])) for s in SPLITS}
    pairs = [(a, b) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1 :]]
    found = [f"{len(h[a] & h[b])} identical images in {a} and {b}" for a, b in pairs]
    return ", ".join(f for f, (a, b) in zip(found, pairs, strict=True) if h[a] & h[b])


def loaded_groups(dataset: str) -> dict[str, list[str]] | None:
    """The patient of each image per split of this process's load of a user source, if known."""
    return _GROUPS.get(str(expand(dataset)))


def loaded_record(dataset: str, size: int) -> dict | None:
    """The record of this process's load of a user source (for the run folder's data.json)."""
    return _LOADED.get((str(expand(dataset)), size))
