"""`medssl evaluate RUN --dataset SOURCE`: external validation of a finished classifier run.

SOURCE (a MedMNIST name: its test split; a folder, CSV, npz or DICOM tree with labels and the
run's two classes: `sources.list_external`) is read with the run's recorded preprocessing
(data.json), scored by the run's best model, and judged with what the run fitted on its own
validation split: the temperature and the operating points (recomputed from predictions.csv
exactly as `medssl evaluate` does; nothing is fitted on the external set). Writes
RUN/external/NAME/ (metrics.json with the keys of metrics.json's `test` block plus calibration,
CIs and operating points; evaluation.md; reliability.png; roc.png; pr.png) and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medssl import data as D
from medssl import plots
from medssl.calibration import calibration_report, fit_temperature, sigmoid
from medssl.catalog import DATASETS
from medssl.commands.evaluate import ClassifierRun, load_classifier_run, read_predictions
from medssl.data.medmnist import load_official
from medssl.data.sources import bits_for_inputs, convert_array, decode_files, list_external
from medssl.errors import MedsslError
from medssl.io.artifacts import expand, read_arrays, write_json, write_text
from medssl.io.rundir import run_lock
from medssl.metrics import auroc, balanced_accuracy, binary_metrics, bootstrap_ci
from medssl.metrics import expected_calibration_error as ece
from medssl.operating_points import operating_points, target_on_test
from medssl.runtime import predict_logits, resolve_device

FILES = ("metrics.json", "evaluation.md", "reliability.png", "roc.png", "pr.png")


def external_name(source: str) -> str:
    """RUN/external/NAME: the source's file or folder name (a MedMNIST name as it is)."""
    if source in DATASETS:
        return source
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", expand(source).stem).strip("._") or "external"
    return name


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_external(run: ClassifierRun, source: str, log=print) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, size, size), targets 0/1 for the run's positive class) of `source`,
    read with the run's recorded preprocessing; other class names or one class: one line."""
    cfg = run.cfg
    prep = D.recorded_preprocessing(run.path, cfg.size)
    names = D.class_names(cfg.dataset, run.path)
    if source in DATASETS:
        images, labels = load_official(source, cfg.data_root, cfg.size)["test"]
        classes = list(D.dataset_info(source).label_names.values())
    else:
        listing = list_external(source)
        classes = list(listing.classes)
        if listing.kind == "npz":
            raw = read_arrays(listing.source, ("test_images",), "npz")["test_images"]
            prep = prep if (prep.bits or 8) > 8 else replace(prep, bits=None)
            images = convert_array(raw, prep, f"{listing.source}: test_images")
        else:
            files = listing.files["external"]
            prep = bits_for_inputs(files, prep, log)
            images = decode_files(files, prep, log, f"{listing.source}")
        labels = listing.labels["external"]
    if [_norm(c) for c in classes] == [_norm(n) for n in names.values()] or classes == ["0", "1"]:
        mapped = labels
    else:
        raise MedsslError(
            f"{source}: classes {', '.join(classes)} are not the run's ({', '.join(names.values())}"
            "); name the class folders or labels as the run's classes (or 0 and 1)"
        )
    targets = (mapped == run.positive).astype(np.int64)
    if len(np.unique(targets)) < 2:
        raise MedsslError(f"{source}: holds one class only; AUROC needs both")
    return images, targets


def _score(run: ClassifierRun, images: np.ndarray) -> np.ndarray:
    cfg = run.cfg
    dev = resolve_device(cfg.device)
    model = run.model.to(dev, memory_format=torch.channels_last)
    x = torch.from_numpy(images[:, None]).to(dev)
    z = predict_logits(model, x, cfg.eval_batch_size, cfg.resize, cfg.precision)
    return z.double().cpu().numpy()


def evaluate_external(
    run_dir: Path | str,
    source: str,
    n_boot: int = 1000,
    seed: int = 0,
    target_sensitivity: float = 0.9,
    target_fpr: float = 0.1,
    log=print,
) -> dict:
    """Score `source` with RUN's model, temperature and val-chosen operating points; write
    RUN/external/NAME/. Everything is read and computed before the first file is written."""
    run = load_classifier_run(run_dir, "evaluate")
    val = read_predictions(run)["val"]
    out = run.path / "external" / external_name(source)
    if out.exists() and not out.is_dir() or out.is_symlink():
        raise MedsslError(f"{out}: exists and is not a folder evaluate wrote")
    images, y = load_external(run, source, log)
    z = _score(run, images)
    n_bins = run.cfg.n_bins
    temperature = fit_temperature(val["target"], val["logit"])
    p = sigmoid(z)
    result = binary_metrics(y, p, scores=z, n_bins=n_bins) | {
        "source": source,
        "run_dir": str(run.path),
        "temperature": temperature,
        "calibration_before": calibration_report(y, z, n_bins),
        "calibration_after": calibration_report(y, z, n_bins, temperature),
        "ci95": {
            "auroc": bootstrap_ci(auroc, y, z, n_boot, seed),
            "balanced_accuracy": bootstrap_ci(balanced_accuracy, y, p, n_boot, seed),
            "ece": bootstrap_ci(lambda a, b: ece(a, b, n_bins), y, p, n_boot, seed),
        },
        "n_bootstrap": n_boot,
        "operating_points": operating_points(
            val["target"], val["logit"], y, z, target_sensitivity, target_fpr
        ),
    }
    pos = D.class_names(run.cfg.dataset, run.path)[run.positive]
    with run_lock(run.path):
        out.mkdir(parents=True, exist_ok=True)
        targets, probs = (
            {"external": y, "external (T-scaled)": y},
            {
                "external": p,
                "external (T-scaled)": sigmoid(z / temperature),
            },
        )
        plots.plot_reliability_diagram(
            targets, probs, out / "reliability.png", n_bins=n_bins, positive_name=pos
        )
        plots.plot_roc_curves({"external": y}, {"external": z}, out / "roc.png", positive_name=pos)
        plots.plot_pr_curves({"external": y}, {"external": z}, out / "pr.png", positive_name=pos)
        write_text(out / "evaluation.md", format_external(result, pos))
        write_json(out / "metrics.json", result)
    log(f"external validation on {source}: AUROC {result['auroc']:.3f}; wrote {out}")
    return result


def format_external(r: dict, pos_name: str) -> str:
    """A short Markdown summary of an external metrics.json."""
    lo, hi = r["ci95"]["auroc"]
    b, a = r["calibration_before"], r["calibration_after"]
    lines = [
        f"# External validation of {r['run_dir']} on {r['source']}",
        "",
        f"{r['n']} images ({r['n_positive']} {pos_name}). Preprocessing, temperature (T = "
        f"{r['temperature']:.3f}) and thresholds are the run's own (fitted on its validation "
        "split); nothing was fitted here.",
        "",
        "| external | value |",
        "|---|---|",
        f"| AUROC | {r['auroc']:.3f} (95% CI {lo:.3f} – {hi:.3f}) |",
        f"| balanced accuracy @0.5 | {r['balanced_accuracy']:.3f} |",
        f"| ECE | {b['ece']:.3f} → {a['ece']:.3f} after T |",
        "",
        "| rule (val-chosen) | threshold | sensitivity | specificity | target on this set |",
        "|---|---|---|---|---|",
    ]
    for name, op in r["operating_points"].items():
        o = op["test"]
        lines.append(
            f"| {name} | {o['threshold']:.3f} | {o['sensitivity']:.3f} | "
            f"{o['specificity']:.3f} | {target_on_test(op)} |"
        )
    return "\n".join(lines) + "\n"
