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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medssl.catalog import DATASETS, SPLITS
from medssl.errors import MedsslError
from medssl.io.artifacts import (
    MAX_IMAGE_PIXELS,
    TEMP_SUFFIX,
    expand,
    read_arrays,
    reading,
)

SPLIT_FRACTIONS = {"val": 0.1, "test": 0.2}  # MedMNIST's 7:1:2; train takes the rest
SPLIT_SEED = 0
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm"}
CACHE_ENV = "MEDSSL_CACHE"
LARGE_FILE = 16 * 1024  # bytes: files this large on average are decoded in threads
CHUNK = 2048  # images decoded per chunk (bounds the memory held outside the cache array)
FORMAT = 1  # bump when decoding changes: old cache entries are then ignored


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
    """Image files (by suffix) at any depth under `folder`, sorted; and the other files."""
    images, other = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.suffix.lower() not in IMAGE_SUFFIXES:
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
            raise MedsslError(f"{root / c}: no images (png, jpg, bmp, tif, gif, webp, pgm)")
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
        split = make_split(labels)
        files = {s: [paths[i] for i in split[s]] for s in SPLITS}
        lab = {s: labels[split[s]] for s in SPLITS}
        return Listing(root, "folder", tuple(classes), lab, files, True, ignored)
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
    return Listing(root, "folder", tuple(classes), lab, files, False, ignored)


def _sorted_classes(values: set[str]) -> list[str]:
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _list_csv(path: Path) -> Listing:
    with reading(path, "CSV of images"), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        rows = [{k.strip(): (v or "").strip() for k, v in r.items() if k} for r in reader]
    if "path" not in header or "label" not in header:
        raise MedsslError(f"{path}: needs the columns path,label[,split]; found {header}")
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
    if has_split:
        idx = {s: np.array([i for i, r in enumerate(rows) if r["split"] == s], int) for s in SPLITS}
        empty = [s for s in SPLITS if len(idx[s]) == 0]
        if empty:
            raise MedsslError(f"{path}: no rows in split {', '.join(empty)}")
    else:
        idx = make_split(labels)
    files = {s: [rows[i]["file"] for i in idx[s]] for s in SPLITS}
    lab = {s: labels[idx[s]] for s in SPLITS}
    return Listing(path, "csv", tuple(classes), lab, files, not has_split)


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


def make_split(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Seeded stratified train/val/test indices (7:1:2 per class), each sorted."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(SPLIT_FRACTIONS["test"] * len(idx))
        n_val = round(SPLIT_FRACTIONS["val"] * len(idx))
        if len(idx) - n_test - n_val < 1 or n_val < 1 or n_test < 1:
            raise MedsslError(
                f"class {c} has {len(idx)} images: too few for a 7:1:2 split (needs >= 5); "
                "give train/val/test splits yourself"
            )
        out["test"].append(idx[:n_test])
        out["val"].append(idx[n_test : n_test + n_val])
        out["train"].append(idx[n_test + n_val :])
    return {s: np.sort(np.concatenate(v)) for s, v in out.items()}


# ---- decoding ----


def _to_grey(arr: np.ndarray, mode: str, tags: list[str]) -> np.ndarray:
    """A uint8 grey image from a decoded array (16-bit scaled linearly to 8 bits)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype in (np.uint16, np.int32, np.int64, np.uint32) and arr.min() >= 0:
        if arr.max() <= 65535:
            tags.append("16-bit to 8-bit")
            return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise MedsslError(f"image mode {mode} ({arr.dtype}) is not supported; save as 8/16-bit")


def decode(path: Path, size: int) -> tuple[np.ndarray, list[str]]:
    """One image file as a (size, size) uint8 grey array, and the conversions it needed."""
    tags: list[str] = []
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS or 0 in im.size:
                raise MedsslError(f"{im.width}x{im.height} pixels: empty or too large to read")
            im.load()
            mode = im.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                tags.append(f"{mode} to grey (alpha dropped)")
                im = im.convert("RGBA").convert("L")
            elif mode not in ("L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                tags.append(f"{mode} to grey")
                im = im.convert("L")
            if mode == "F":
                raise MedsslError(f"{path}: floating-point image; save it as 8 or 16-bit")
            arr = _to_grey(np.asarray(im), mode, tags)
    except MedsslError as exc:
        msg = str(exc)
        raise MedsslError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        msg = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise MedsslError(f"{path}: not a readable image ({msg})") from None
    if arr.ndim != 2:
        raise MedsslError(f"{path}: unexpected image shape {arr.shape}")
    if arr.shape != (size, size):
        tags.append(f"resized from {arr.shape[1]}x{arr.shape[0]}")
        arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.Resampling.LANCZOS))
    return arr, tags


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


def content_key(paths: list[Path], size: int, workers: int | None = None) -> str:
    """Cache key: the files' bytes (in order), the size and the decoding format."""
    h = hashlib.blake2b(f"medssl-{FORMAT}-{size}-{len(paths)}".encode(), digest_size=20)
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        for digest in pool.map(_file_digest, paths, chunksize=256):
            h.update(digest)
    return h.hexdigest()


def decode_files(paths: list[Path], size: int, log=print, what: str = "images") -> np.ndarray:
    """Decode `paths` into (N, size, size) uint8, through the content-keyed cache."""
    if not paths:
        raise MedsslError(f"no {what} to read")
    key = content_key(paths, size)
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
    return _decode_into_cache(paths, size, target, meta, log, what)


def _decode_workers(paths: list[Path]) -> int:
    """Threads for decoding: one for small files (for 28 px PNGs threads were 3x slower than one
    loop: the GIL, not the decoder, is the cost; benchmarks/convert.py), several for large ones
    (Pillow releases the GIL while it decodes)."""
    sample = paths[:: max(1, len(paths) // 64)][:64]
    mean = sum(p.stat().st_size for p in sample) / len(sample)
    return 1 if mean < LARGE_FILE else min(8, (os.cpu_count() or 1) * 2)


def _decode_into_cache(paths, size, target: Path, meta: Path, log, what: str) -> np.ndarray:
    counts: Counter = Counter()
    tmp = target.with_name(f"{target.name}.{os.getpid()}{TEMP_SUFFIX}")
    out = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(paths), size, size))
        with ThreadPoolExecutor(_decode_workers(paths)) as pool:
            for start in range(0, len(paths), CHUNK):
                part = paths[start : start + CHUNK]
                for i, (arr, tags) in enumerate(pool.map(lambda p: decode(p, size), part)):
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
            result[i], tags = decode(p, size)
            counts.update(tags)
        note = describe_conversions(counts, len(paths))
    log(f"{what}: {note}")
    return result


def convert_array(images: np.ndarray, size: int, where: str) -> np.ndarray:
    """An (N, H, W[, C]) uint8/uint16 array as (N, size, size) uint8 grey."""
    a = np.asarray(images)
    if a.ndim == 4 and a.shape[-1] in (1, 3, 4):
        if a.shape[-1] == 1:
            a = a[..., 0]
        else:  # ITU-R 601-2 luma, as PIL's convert("L")
            rgb = a[..., :3].astype(np.float64)
            a = (rgb @ np.array([0.299, 0.587, 0.114]) + 0.5).clip(0, 255).astype(a.dtype)
    if a.ndim != 3 or len(a) == 0:
        raise MedsslError(f"{where}: shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
    if a.dtype == np.uint16:
        a = ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if a.dtype != np.uint8:
        raise MedsslError(f"{where}: dtype {a.dtype}; expected uint8 or uint16")
    if a.shape[1:] != (size, size):
        lanczos = Image.Resampling.LANCZOS
        a = np.stack([np.asarray(Image.fromarray(x).resize((size, size), lanczos)) for x in a])
    return np.ascontiguousarray(a)


# ---- labelled sources ----

_LOADED: dict[tuple[str, int], dict] = {}  # (source, size) -> record of the last load


def load_labelled(dataset: str, size: int, log=print) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{split: (images uint8 (N, size, size), labels int64 (N,))}` of a user's source. What
    was converted, ignored or found twice is logged once per process and source."""
    listing = list_source(dataset)
    lines: list[str] = []
    if listing.ignored:
        names = ", ".join(p.name for p in listing.ignored[:3])
        lines.append(
            f"{listing.source}: ignored {len(listing.ignored)} non-image file(s) ({names})"
        )
    out = {}
    for s in SPLITS:
        if listing.kind == "npz":
            images = read_arrays(listing.source, (f"{s}_images",), "npz")[f"{s}_images"]
            imgs = convert_array(images, size, f"{listing.source}: {s}_images")
        else:
            imgs = decode_files(listing.files[s], size, lines.append, f"{listing.source} {s}")
        out[s] = (imgs, listing.labels[s])
    for s in SPLITS:
        if len(np.unique(out[s][1])) < 2:
            raise MedsslError(f"{listing.source}: the {s} split holds one class only")
    record = listing.record()
    record["size"] = size
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
    if listing.made_split:  # paths relative to the folder, or to the CSV's folder
        base = listing.source if listing.source.is_dir() else listing.source.parent
        record["split_files"] = {
            s: [os.path.relpath(p, base) for p in listing.files[s]] for s in SPLITS
        }
    return out


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


def loaded_record(dataset: str, size: int) -> dict | None:
    """The record of this process's load of a user source (for the run folder's data.json)."""
    return _LOADED.get((str(expand(dataset)), size))
