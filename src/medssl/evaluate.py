"""`medssl evaluate RUN_DIR`: calibration, discrimination with confidence intervals and
operating points of a finished classifier run, from its saved predictions (float64).

Everything chosen (temperature, thresholds) is fitted on validation and reported on test.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medssl.calibration import calibration_report, fit_temperature, sigmoid
from medssl.errors import MedsslError
from medssl.metrics import auroc, average_precision, balanced_accuracy, bootstrap_ci
from medssl.metrics import expected_calibration_error as ece
from medssl.models import read_model
from medssl.operating_points import operating_points
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
) -> dict:
    """Evaluate a finished run; writes evaluation.json, evaluation.md and figures."""
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
    write_json(run_dir / "evaluation.json", result)
    write_text(run_dir / "evaluation.md", format_evaluation(result, pos_name))
    return result


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
        "| rule | threshold | sensitivity | specificity | PPV | NPV | TP FP FN TN |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, op in r["operating_points"].items():
        o = op["test"]
        lines.append(
            f"| {name} | {o['threshold']:.3f} | {o['sensitivity']:.3f} | "
            f"{o['specificity']:.3f} | {o['ppv']:.3f} | {o['npv']:.3f} | "
            f"{o['tp']} {o['fp']} {o['fn']} {o['tn']} |"
        )
    return "\n".join(lines) + "\n"
