"""`medssl data`: label meanings and default positive class of each dataset, the MD5 check and
class balance of the files present, `--download`, and the exports: `--export-samples DIR` (a
few PNGs per class) and `--export DIR` (a MedMNIST set as the folder tree of your own data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medssl import data as D
from medssl.catalog import DATA_ROOT_ENV, DATASETS, SPLITS
from medssl.data.medmnist import dataset_summary
from medssl.data.sources import list_source
from medssl.errors import MedsslError
from medssl.io.artifacts import atomic_path, expand, write_text
from medssl.io.rundir import enclosing_run
from medssl.options import DataConfig


def run(cfg: DataConfig, log=print) -> None:
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
    if export is not None and enclosing_run(export) is not None:
        raise MedsslError(
            f"--export-samples {export}: inside the run folder {enclosing_run(export)}"
        )
    tree = expand(cfg.export) if cfg.export else None
    if tree is not None:
        if len(names) != 1:
            raise MedsslError("--export writes one dataset: add --dataset breastmnist (or another)")
        if tree.is_file() or (tree.is_dir() and any(tree.iterdir())):
            raise MedsslError(f"--export {tree}: not a new or empty folder; name another")
        if enclosing_run(tree) is not None:
            raise MedsslError(f"--export {tree}: inside the run folder {enclosing_run(tree)}")
    missing, bad_md5 = [], []
    for name in names:
        if cfg.download:
            D.load_arrays(name, cfg.data_root, size=cfg.size, download=True)
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
        from medmnist import INFO  # imports torch: only to name the missing files' URLs

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
        export_folder(names[0], cfg.data_root, cfg.size, tree, log)


def _user_data_report(cfg, log) -> None:
    """`medssl data --dataset PATH`: a user's source as medssl reads it (decoded and cached)."""
    if cfg.export or cfg.export_samples or cfg.download:
        raise MedsslError("--export, --export-samples and --download are for MedMNIST names")
    listing = list_source(cfg.dataset)
    arrays = D.load_arrays(cfg.dataset, size=cfg.size)
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
    images, labels = D.load_arrays(name, root, size=size)["train"]
    for label in (0, 1):
        for i in np.flatnonzero(labels == label)[:per_class]:
            with atomic_path(out / f"{name}_label{label}_{i}.png") as tmp:
                Image.fromarray(images[i]).save(tmp, format="PNG")


def export_folder(name: str, data_root, size: int, out: Path, log=print) -> None:
    """A MedMNIST set as `out/{train,val,test}/{class}/{index}.png` plus `out/labels.csv`
    (path,label,split), in the official order: both read back as the npz's arrays."""
    info = D.dataset_info(name)
    classes = [info.label_names[k].replace("/", "-") for k in sorted(info.label_names)]
    assert classes == sorted(classes), "label order must be the classes' sorted order"
    arrays = D.load_arrays(name, data_root, size=size)
    rows = ["path,label,split"]
    for s in SPLITS:
        images, labels = arrays[s]
        for c in classes:
            (out / s / c).mkdir(parents=True, exist_ok=True)
        for i, (img, y) in enumerate(zip(images, labels, strict=True)):
            rel = f"{s}/{classes[y]}/{i:06d}.png"
            with atomic_path(out / rel) as tmp:
                Image.fromarray(img).save(tmp, format="PNG")
            rows.append(f"{rel},{classes[y]},{s}")
    write_text(out / "labels.csv", "\n".join(rows) + "\n")
    n = sum(len(a[1]) for a in arrays.values())
    log(
        f"{name}: {n} PNGs in {out}/{{train,val,test}}/{{{','.join(classes)}}}/, "
        f"listed in {out / 'labels.csv'}"
    )
