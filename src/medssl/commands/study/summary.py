"""What a study found, from its run folders: the supervised recipes, the label-efficiency
curves of every family, the pretraining runs, the method and the runs chosen on validation
(summary.json, which the report renders)."""

from __future__ import annotations

import platform
import statistics
from pathlib import Path

import torch

from medssl import data as D
from medssl.catalog import METHOD_TITLES
from medssl.commands.study.plan import BUDGETS, Step
from medssl.io.artifacts import read_csv, read_json
from medssl.io.records import read_metrics, read_result
from medssl.io.rundir import MARKERS
from medssl.options import StudyConfig

FAMILIES = {
    "fine-tune all (BCE)": "sup-all-bce",
    "fine-tune all (weighted BCE)": "sup-all-wbce",
    "head-only": "sup-head",
}


def best_runs(out: Path, steps: list[Step]) -> dict[str, str]:
    """The run with the best validation AUROC in each supervised family, and among the SSL
    fine-tunes with all labels of every method (never test)."""
    candidates = {label: [s for s in steps if s.family == fam] for label, fam in FAMILIES.items()}
    candidates["SSL fine-tune (all labels)"] = [
        s for s in steps if s.family == "ft-ssl" and s.fraction == 1.0
    ]
    best = {}
    for label, group in candidates.items():
        scored = [
            (read_metrics(out / "runs" / s.name / MARKERS["train"])["val"]["auroc"], s.name)
            for s in group
            if (out / "runs" / s.name / MARKERS["train"]).is_file()
        ]
        if scored:
            best[label] = max(scored)[1]
    return best


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _rows(metrics: dict[float, list[dict]]) -> list[dict]:
    """Label-efficiency rows (mean ± std over seeds of test metrics) of train runs by fraction."""
    rows = []
    for f, ms in metrics.items():
        row = {"label_fraction": f, "n_train": ms[0]["n_train"]}
        for key in ("auroc", "balanced_accuracy", "ece"):
            mean, std = _mean_std([m["test"][key] for m in ms])
            row[f"test_{key}"], row[f"test_{key}_std"] = mean, std
        row["val_auroc"] = statistics.mean(m["val"]["auroc"] for m in ms)
        rows.append(row)
    return rows


SUPERVISED_FAMILIES = (
    ("fine-tune all, BCE", "sup-all-bce"),
    ("fine-tune all, weighted BCE", "sup-all-wbce"),
    ("head-only (random encoder)", "sup-head"),
)


def _supervised(ms: list[dict]) -> dict:
    """One supervised recipe over its seeds: test metrics and val AUROC (mean, std), time."""
    row = {
        k: _mean_std([m["test"][k] for m in ms])
        for k in ("auroc", "balanced_accuracy", "accuracy", "ece")
    }
    row["val_auroc"] = _mean_std([m["val"]["auroc"] for m in ms])
    row["train_time_s"] = statistics.mean(m["train_time_s"] for m in ms)
    return row | {"stem": ms[0]["stem"], "epochs": ms[0]["epochs"]}


def _pretrained(runs: Path, step: Step) -> dict:
    """A pretraining run's summary (pretrain.json) and its folder name."""
    pre = read_result(runs / step.name, "pretrain", ("epochs",))
    init = runs / step.name / "knn_init.json"
    if pre.get("knn_val_auroc_init") is None and init.is_file():  # runs made before it
        pre["knn_val_auroc_init"] = read_json(init, "kNN monitor").get("knn_val_auroc")
    return pre | {"run": step.name}


def summarise(cfg: StudyConfig, out: Path, steps: list[Step], best: dict, wall_s: float) -> dict:
    """Everything the reports show, from the run directories (re-readable at any time)."""
    runs = out / "runs"

    def metrics(step: Step) -> dict:
        return read_metrics(runs / step.name / MARKERS["train"])

    def by_fraction(family: str, method: str | None) -> dict[float, list[dict]]:
        group = [s for s in steps if s.family == family and s.method == method]
        return {f: [metrics(s) for s in group if s.fraction == f] for f in b["fractions"]}

    b = BUDGETS[cfg.budget]
    supervised = {
        label: _supervised([metrics(s) for s in steps if s.family == family])
        for label, family in SUPERVISED_FAMILIES
    }
    # label-efficiency curves by display label (the plot's legend); `curves` says what each is
    efficiency: dict[str, list[dict]] = {}
    curves: dict[str, dict] = {}
    probes, probe_runs = {}, {}
    for step in (s for s in steps if s.kind == "probe"):
        summary = read_result(runs / step.name, "probe", ("table",))
        results = read_csv(runs / step.name / "results.csv", {"val_auroc": float})
        probes[step.method] = statistics.mean(r["val_auroc"] for r in results)
        probe_runs[step.method or ""] = step.name  # "": the random encoder's probe
        title = METHOD_TITLES.get(step.method or "")
        label = f"{title} linear probe" if title else "random-encoder probe"
        efficiency[label] = summary["table"]
        curves[label] = {"family": "probe", "method": step.method}
    efficiency["supervised from scratch"] = _rows(by_fraction("ft-scratch", None))
    curves["supervised from scratch"] = {"family": "scratch", "method": None}
    for m in cfg.methods:
        efficiency[f"{METHOD_TITLES[m]} fine-tune"] = _rows(by_fraction("ft-ssl", m))
        curves[f"{METHOD_TITLES[m]} fine-tune"] = {"family": "fine-tune", "method": m}
    pretrained = {s.method: _pretrained(runs, s) for s in steps if s.kind == "pretrain"}
    info = D.dataset_info(cfg.dataset)
    positive = D.resolve_positive(info, cfg.positive_class)
    chosen = max(cfg.methods, key=lambda m: probes[m])  # on validation only
    return {
        "dataset": cfg.dataset,
        "budget": cfg.budget,
        "seeds": b["seeds"],
        "methods": list(cfg.methods),
        "best_method": {
            "method": chosen,
            "val_auroc": probes[chosen],
            "by": "mean probe val AUROC",
        },
        "probe_val_auroc": {m: probes[m] for m in cfg.methods},
        "positive_class": {
            "label": positive,
            "name": info.label_names[positive],
        },
        "supervised": supervised,
        "label_efficiency": efficiency,
        "curves": curves,
        "probe_runs": probe_runs,
        "pretrain": pretrained,
        "best_runs": best,
        "wall_time_s": wall_s,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "steps": [s.name for s in steps],
    }
