"""`medssl evaluate RUN_DIR`: calibration, discrimination with confidence intervals and
operating points of a finished classifier run, from its saved predictions (float64).

Everything chosen (temperature, thresholds) is fitted on validation and reported on test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from medssl.augment import to_float
from medssl.calibration import calibration_report, fit_temperature, sigmoid
from medssl.errors import MedsslError
from medssl.metrics import auroc, average_precision, balanced_accuracy, bootstrap_ci
from medssl.metrics import expected_calibration_error as ece
from medssl.models import Classifier, read_model
from medssl.operating_points import operating_points, target_on_test
from medssl.robustness import robustness_suite
from medssl.rundir import read_yaml, write_json, write_text


def check_classifier_run(run_dir: Path) -> dict[str, str]:
    """Refuse anything but a finished classifier run; return its model metadata."""
    if not (run_dir / "config.yaml").is_file():
        raise MedsslError(f"{run_dir}: not a medssl run directory (no config.yaml)")
    if (run_dir / "encoder.safetensors").is_file() and not (run_dir / "best.safetensors").exists():
        raise MedsslError(
            f"{run_dir}: holds an SSL encoder, not a classifier; train one with "
            f"`medssl train --init {run_dir}/encoder.safetensors` and evaluate that"
        )
    if not (run_dir / "predictions.csv").is_file():
        raise MedsslError(f"{run_dir}: no predictions.csv (unfinished run? use --resume)")
    _, meta = read_model(run_dir / "best.safetensors")
    if meta.get("kind") != "classifier":
        raise MedsslError(f"{run_dir}/best.safetensors is a {meta.get('kind')}, not a classifier")
    return meta


def read_predictions(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """predictions.csv -> {split: {"target": int array, "logit": float64 array}}."""
    out: dict[str, dict[str, list]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            d = out.setdefault(row["split"], {"target": [], "logit": []})
            d["target"].append(int(row["target"]))
            d["logit"].append(float(row["logit"]))
    return {
        s: {"target": np.array(d["target"]), "logit": np.array(d["logit"], dtype=np.float64)}
        for s, d in out.items()
    }


def evaluate_run(
    run_dir: Path | str,
    n_boot: int = 1000,
    seed: int = 0,
    target_sensitivity: float = 0.9,
    target_fpr: float = 0.1,
    images: bool = True,
    gallery_k: int = 6,
) -> dict:
    """Evaluate a finished run; writes evaluation.json, evaluation.md and figures.

    With `images` (default), the run's model and test images are loaded too, for the
    high-confidence error gallery and the robustness suite.
    """
    from medssl import plots

    run_dir = Path(run_dir)
    meta = check_classifier_run(run_dir)
    cfg = read_yaml(run_dir / "config.yaml")
    n_bins = int(cfg.get("n_bins", 15))
    preds = read_predictions(run_dir / "predictions.csv")
    if set(preds) != {"val", "test"}:
        raise MedsslError(f"{run_dir}/predictions.csv must hold val and test rows")
    val, test = preds["val"], preds["test"]
    temperature = fit_temperature(val["target"], val["logit"])
    result: dict = {
        "run_dir": str(run_dir),
        "dataset": meta.get("dataset"),
        "positive_label": meta.get("positive_label"),
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
    pos_name = _positive_name(meta, cfg)
    targets = {"test": test["target"], "test (T-scaled)": test["target"]}
    probs = {
        "test": sigmoid(test["logit"]),
        "test (T-scaled)": sigmoid(test["logit"] / temperature),
    }
    plots.plot_reliability_diagram(
        targets,
        probs,
        run_dir / "reliability_temperature.png",
        n_bins=n_bins,
        positive_name=pos_name,
    )
    plots.plot_pr_curves(
        {s: d["target"] for s, d in preds.items()},
        {s: d["logit"] for s, d in preds.items()},
        run_dir / "pr.png",
        positive_name=pos_name,
    )
    if images:
        result["robustness"] = _image_checks(run_dir, cfg, result, test, gallery_k, seed)
    write_json(run_dir / "evaluation.json", result)
    write_text(run_dir / "evaluation.md", format_evaluation(result, pos_name))
    return result


def load_classifier(path: Path, device: torch.device) -> Classifier:
    """A medssl classifier file -> Classifier in eval mode; any other kind is refused."""
    state, meta = read_model(path)
    if meta.get("kind") != "classifier":
        raise MedsslError(f"{path} is a {meta.get('kind')} file; a classifier is expected")
    model = Classifier(meta["stem"], int(meta.get("in_channels", 1)))
    model.load_state_dict(state)
    return model.to(device, memory_format=torch.channels_last).eval()


def _image_checks(run_dir: Path, cfg: dict, result: dict, test: dict, k: int, seed: int):
    """Error gallery (top-k FP and FN on test) and the robustness suite; returns its rows."""
    from medssl import data as D
    from medssl import plots
    from medssl.train import TrainConfig, predict_logits, resolve_device

    tc = TrainConfig.from_dict(cfg)
    device = resolve_device(tc.device)
    info = D.dataset_info(tc.dataset)
    positive = D.resolve_positive(info, tc.positive_class)
    split = D.load_splits(tc.dataset, tc.data_root, positive, tc.size, device)["test"]
    if not np.array_equal(split.targets.cpu().numpy().astype(int), test["target"]):
        raise MedsslError(f"{run_dir}: test labels differ from predictions.csv (other data?)")
    model = load_classifier(run_dir / "best.safetensors", device)
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
    names = {1: info.label_names[positive], 0: info.label_names[1 - positive]}
    plots.plot_error_gallery(
        x[idx, 0].cpu().numpy(),
        p[idx],
        [names[int(y[i])] for i in idx],
        ["false positive"] * len(fp) + ["false negative"] * len(fn),
        run_dir / "error_gallery.png",
        title=f"most confident test errors (positive = {names[1]})",
    )
    threshold = result["operating_points"]["youden"]["val"]["threshold"]
    rows = robustness_suite(predict, x, y, threshold, int(cfg.get("n_bins", 15)), seed)
    plots.plot_robustness(rows, run_dir / "robustness.png")
    return rows


def _positive_name(meta: dict, cfg: dict) -> str:
    from medssl.data import dataset_info

    try:
        return dataset_info(cfg["dataset"]).label_names[int(meta.get("positive_label", 1))]
    except (KeyError, MedsslError, ValueError):
        return "positive"


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
