"""`medssl evaluate RUN_DIR`: calibration, discrimination with confidence intervals and
operating points of a finished classifier run, from its saved predictions (float64).

Everything chosen (temperature, thresholds) is fitted on validation and reported on test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medssl import data as D
from medssl import plots
from medssl.calibration import calibration_report, fit_temperature, sigmoid
from medssl.data import class_names
from medssl.errors import MedsslError
from medssl.io.artifacts import read_csv, read_json, read_yaml, write_json, write_text
from medssl.io.records import read_metrics
from medssl.io.rundir import MARKERS, record_added, require_finished, run_lock
from medssl.metrics import auroc, average_precision, balanced_accuracy, bootstrap_ci
from medssl.metrics import expected_calibration_error as ece
from medssl.models import Classifier, load_state, read_model
from medssl.operating_points import operating_points, target_on_test
from medssl.options import TrainConfig
from medssl.robustness import robustness_suite
from medssl.runtime import predict_logits, resolve_device, to_float

OUTPUTS = ("evaluation.json", "evaluation.md", "reliability_temperature.png", "pr.png")
IMAGE_OUTPUTS = ("error_gallery.png", "robustness.png")


@dataclass
class ClassifierRun:
    """A finished `medssl train` run, read and cross-checked: its options, metrics, and best
    model (metadata of this run's dataset, stem and positive class; every key and shape)."""

    path: Path
    cfg: TrainConfig
    metrics: dict
    model: Classifier
    positive: int


def load_classifier_run(run_dir: Path | str, user: str) -> ClassifierRun:
    """Everything `user` (evaluate, predict) needs from a finished train run, or one line."""
    path = require_finished(Path(run_dir), "train", user)
    try:
        cfg = TrainConfig.from_dict(read_yaml(path / "config.yaml"), saved=True)
    except MedsslError as exc:
        msg = str(exc)
        raise MedsslError(
            msg if msg.startswith(str(path)) else f"{path}/config.yaml: {msg}"
        ) from None
    metrics = read_metrics(path / MARKERS["train"])
    positive = D.resolve_positive(D.dataset_info(cfg.dataset), cfg.positive_class)
    state, _ = read_model(
        path / "best.safetensors",
        "classifier",
        dataset=cfg.dataset,
        stem=cfg.stem,
        positive_label=str(positive),
    )
    model = Classifier(cfg.stem, 1)
    load_state(model, state, path / "best.safetensors")
    return ClassifierRun(path, cfg, metrics, model.eval(), positive)


def read_predictions(run: ClassifierRun) -> dict[str, dict[str, np.ndarray]]:
    """predictions.csv -> {split: {"target": int array, "logit": float64 array}}, checked
    against the run (val and test, as many rows as metrics.json counted, binary targets)."""
    path = run.path / "predictions.csv"
    rows = read_csv(path, {"split": str, "target": int, "logit": float}, "predictions file")
    out: dict[str, dict[str, list]] = {}
    for row in rows:
        d = out.setdefault(row["split"], {"target": [], "logit": []})
        d["target"].append(row["target"])
        d["logit"].append(row["logit"])
    if set(out) != {"val", "test"}:
        raise MedsslError(f"{path}: splits {sorted(out)}, expected val and test")
    preds = {
        s: {"target": np.array(d["target"]), "logit": np.array(d["logit"], dtype=np.float64)}
        for s, d in out.items()
    }
    for s, d in preds.items():
        n = run.metrics[s].get("n") if isinstance(run.metrics[s], dict) else None
        if len(d["target"]) != n:
            raise MedsslError(f"{path}: {len(d['target'])} {s} rows, metrics.json counted {n}")
        if set(np.unique(d["target"])) != {0, 1}:
            raise MedsslError(f"{path}: {s} targets must hold both 0 and 1 (and nothing else)")
    return preds


def read_evaluation(path: Path) -> tuple[float, dict[str, float]]:
    """(temperature, {rule: logit threshold}) of an evaluation.json, checked."""
    ev = read_json(path, "evaluation", require=("temperature", "operating_points"))
    try:
        temperature = float(ev["temperature"])
        thresholds = {r: float(op["val"]["threshold"]) for r, op in ev["operating_points"].items()}
    except (TypeError, ValueError, KeyError, AttributeError):
        raise MedsslError(f"{path}: temperature or operating points are malformed") from None
    if not (math.isfinite(temperature) and temperature > 0) or not all(
        math.isfinite(t) for t in thresholds.values()
    ):
        raise MedsslError(f"{path}: temperature or thresholds are not finite positive numbers")
    return temperature, thresholds


def evaluate_run(
    run_dir: Path | str,
    n_boot: int = 1000,
    seed: int = 0,
    target_sensitivity: float = 0.9,
    target_fpr: float = 0.1,
    images: bool = True,
    gallery_k: int = 6,
) -> dict:
    """Evaluate a finished run; writes evaluation.json, evaluation.md and figures into it.

    With `images` (default), the run's model and test images are loaded too, for the
    high-confidence error gallery and the robustness suite. Everything is read, checked and
    computed before the first file is written.
    """
    run = load_classifier_run(run_dir, "evaluate")
    n_bins = run.cfg.n_bins
    preds = read_predictions(run)
    val, test = preds["val"], preds["test"]
    temperature = fit_temperature(val["target"], val["logit"])
    result: dict = {
        "run_dir": str(run.path),
        "dataset": run.cfg.dataset,
        "positive_label": run.positive,
        "temperature": temperature,
        "n_bootstrap": n_boot,
        "bootstrap_seed": seed,
    }
    for name, d in preds.items():
        y, z = d["target"], d["logit"]
        p = sigmoid(z)
        block = {
            "auroc": auroc(y, z),
            "average_precision": average_precision(y, z),
            "balanced_accuracy": balanced_accuracy(y, p),
            "calibration_before": calibration_report(y, z, n_bins),
            "calibration_after": calibration_report(y, z, n_bins, temperature),
            "auroc_after_scaling": auroc(y, sigmoid(z / temperature)),
        }
        block["ci95"] = {
            "auroc": bootstrap_ci(auroc, y, z, n_boot, seed),
            "balanced_accuracy": bootstrap_ci(balanced_accuracy, y, p, n_boot, seed),
            "ece": bootstrap_ci(lambda a, b: ece(a, b, n_bins), y, p, n_boot, seed),
        }
        result[name] = block
    result["operating_points"] = operating_points(
        val["target"], val["logit"], test["target"], test["logit"], target_sensitivity, target_fpr
    )
    outputs = OUTPUTS + (IMAGE_OUTPUTS if images else ())
    blocked = [f for f in outputs if (run.path / f).is_dir() or (run.path / f).is_symlink()]
    if blocked:
        raise MedsslError(f"{run.path}: {blocked} are folders or links, not evaluate's files")
    checks = _image_checks(run, result, test, gallery_k, seed) if images else None
    if checks:
        result["robustness"] = checks["rows"]
    with run_lock(run.path):  # a second evaluate of this run at the same time is refused
        _write(run, result, preds, checks)
    return result


def _write(run: ClassifierRun, result: dict, preds: dict, checks: dict | None) -> None:
    pos_name = _positive_name(run)
    test, t = preds["test"], result["temperature"]
    plots.plot_reliability_diagram(
        {"test": test["target"], "test (T-scaled)": test["target"]},
        {"test": sigmoid(test["logit"]), "test (T-scaled)": sigmoid(test["logit"] / t)},
        run.path / "reliability_temperature.png",
        n_bins=run.cfg.n_bins,
        positive_name=pos_name,
    )
    plots.plot_pr_curves(
        {s: d["target"] for s, d in preds.items()},
        {s: d["logit"] for s, d in preds.items()},
        run.path / "pr.png",
        positive_name=pos_name,
    )
    files = list(OUTPUTS)
    if checks:
        plots.plot_error_gallery(
            *checks["gallery"], run.path / "error_gallery.png", **checks["title"]
        )
        plots.plot_robustness(checks["rows"], run.path / "robustness.png")
        files += IMAGE_OUTPUTS
    write_text(run.path / "evaluation.md", format_evaluation(result, pos_name))
    write_json(run.path / "evaluation.json", result)
    record_added(run.path, "evaluate", files)


def _image_checks(run: ClassifierRun, result: dict, test: dict, k: int, seed: int) -> dict:
    """Error gallery (top-k FP and FN on test) and the robustness suite, computed, not written."""
    tc = run.cfg
    device = resolve_device(tc.device)
    label_names = D.class_names(tc.dataset, run.path)
    prep = D.recorded_preprocessing(run.path, tc.size)
    split = D.load_splits(tc.dataset, tc.data_root, run.positive, tc.size, device, prep=prep)
    split = split["test"]
    D.check_same_data(run.path, tc.dataset, tc.size)
    if not np.array_equal(split.targets.cpu().numpy().astype(int), test["target"]):
        raise MedsslError(f"{run.path}: test labels differ from predictions.csv (other data?)")
    model = run.model.to(device, memory_format=torch.channels_last)
    x = to_float(split.images, tc.resize)

    def predict(imgs: torch.Tensor) -> np.ndarray:
        u8 = (imgs * 255).round().to(torch.uint8)  # back to the stored image format
        return (
            predict_logits(model, u8, tc.eval_batch_size, None, tc.precision).double().cpu().numpy()
        )

    p = sigmoid(test["logit"])
    y = test["target"]
    fp = np.flatnonzero(y == 0)[np.argsort(-p[y == 0], kind="stable")][:k]
    fn = np.flatnonzero(y == 1)[np.argsort(p[y == 1], kind="stable")][:k]
    idx = np.r_[fp, fn]
    names = {1: label_names[run.positive], 0: label_names[1 - run.positive]}
    threshold = result["operating_points"]["youden"]["val"]["threshold"]
    return {
        "gallery": (
            x[idx, 0].cpu().numpy(),
            p[idx],
            [names[int(y[i])] for i in idx],
            ["false positive"] * len(fp) + ["false negative"] * len(fn),
        ),
        "title": {"title": f"most confident test errors (positive = {names[1]})"},
        "rows": robustness_suite(predict, x, y, threshold, tc.n_bins, seed),
    }


def _positive_name(run: ClassifierRun) -> str:
    return class_names(run.cfg.dataset, run.path)[run.positive]


def format_evaluation(r: dict, pos_name: str) -> str:
    """A short Markdown summary of evaluation.json."""
    t = r["test"]
    lines = [
        f"# Evaluation of {r['run_dir']}",
        "",
        f"Positive class: **{pos_name}**. Temperature fitted on validation NLL: "
        f"T = {r['temperature']:.3f}. 95% CIs: {r['n_bootstrap']} seeded bootstrap resamples.",
        "",
        "| test | value | 95% CI |",
        "|---|---|---|",
    ]
    for key, label in (("auroc", "AUROC"),):
        lo, hi = t["ci95"][key]
        lines.append(f"| {label} | {t[key]:.3f} | {lo:.3f} – {hi:.3f} |")
    lines.append(f"| average precision | {t['average_precision']:.3f} | |")
    lo, hi = t["ci95"]["balanced_accuracy"]
    lines.append(f"| balanced accuracy @0.5 | {t['balanced_accuracy']:.3f} | {lo:.3f} – {hi:.3f} |")
    b, a = t["calibration_before"], t["calibration_after"]
    lo, hi = t["ci95"]["ece"]
    lines += [
        f"| ECE (15 equal-width bins) | {b['ece']:.3f} → {a['ece']:.3f} after T | "
        f"{lo:.3f} – {hi:.3f} (before) |",
        f"| ECE (equal-mass bins) | {b['ece_equal_mass']:.3f} → {a['ece_equal_mass']:.3f} | |",
        f"| NLL | {b['nll']:.3f} → {a['nll']:.3f} | |",
        f"| Brier | {b['brier']:.3f} → {a['brier']:.3f} | |",
        "",
        "Operating points (threshold on the logit, chosen on validation, shown on test):",
        "",
        "| rule | threshold | sensitivity | specificity | PPV | NPV | TP FP FN TN "
        "| target on test |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, op in r["operating_points"].items():
        o = op["test"]
        lines.append(
            f"| {name} | {o['threshold']:.3f} | {o['sensitivity']:.3f} | "
            f"{o['specificity']:.3f} | {o['ppv']:.3f} | {o['npv']:.3f} | "
            f"{o['tp']} {o['fp']} {o['fn']} {o['tn']} | {target_on_test(op)} |"
        )
    if "robustness" in r:
        lines += [
            "",
            "Robustness (test images shifted; operating point = val Youden threshold):",
            "",
            "| shift | severity | param | AUROC | ΔAUROC | ΔAcc | ΔECE | Δsens | Δspec |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in r["robustness"][1:]:
            lines.append(
                f"| {row['shift']} | {row['severity']} | {row['param']:g} | "
                f"{row['auroc']:.3f} | {row['delta_auroc']:+.3f} | "
                f"{row['delta_accuracy']:+.3f} | {row['delta_ece']:+.3f} | "
                f"{row['delta_sensitivity']:+.3f} | {row['delta_specificity']:+.3f} |"
            )
    return "\n".join(lines) + "\n"
