"""`medssl study`: the whole comparison on one dataset in one command, resumable.

Steps (each a run directory under OUT/runs/; a finished one is skipped, a killed one resumes):
supervised fine-tune-all, weighted BCE and head-only (per seed) -> pretraining with each SSL
method of --methods (SimCLR by default) -> linear probes of each SSL encoder and of a random
encoder at the label fractions -> supervised and SSL fine-tuning at the label fractions (per
seed and method) -> `evaluate` on the best run of each family (chosen on validation AUROC) ->
summary.json, report.md and a self-contained report.html, with the methods compared and the
best one chosen on validation.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from tqdm.auto import tqdm

from medssl import data as D
from medssl.catalog import METHOD_TITLES
from medssl.commands import pretrain, probe, train
from medssl.commands.evaluate import evaluate_run
from medssl.commands.lifecycle import open_run, positive_label, start
from medssl.data import pools
from medssl.data.sources import list_source
from medssl.errors import MedsslError
from medssl.io.artifacts import read_csv, read_json, write_json
from medssl.io.records import read_metrics, read_result
from medssl.io.rundir import MARKERS, claim
from medssl.options import PretrainConfig, ProbeConfig, StudyConfig, TrainConfig
from medssl.report.study import write_reports
from medssl.runtime import resolve_device

# Budgets: epochs, seeds and label fractions. quick finishes in minutes on a 2-core CPU
# (ImageNet stem everywhere); standard uses each dataset's default supervised recipe.
BUDGETS = {
    "quick": {
        "seeds": [0],
        "fractions": [0.1, 1.0],
        "sup_epochs": {"breastmnist": 15, "pneumoniamnist": 3},
        "stem": "imagenet",
        "pretrain_epochs": {"breastmnist": 30, "pneumoniamnist": 5},
    },
    "standard": {
        "seeds": [0, 1, 2],
        "fractions": [0.01, 0.05, 0.1, 0.2, 1.0],
        "sup_epochs": {},
        "stem": None,
        "pretrain_epochs": {"breastmnist": 150, "pneumoniamnist": 40},
    },
    # smoke: the whole pipeline in about a minute (CI's end-to-end test of the report).
    "smoke": {
        "seeds": [0],
        "fractions": [0.2, 1.0],
        "sup_epochs": {"breastmnist": 1, "pneumoniamnist": 1},
        "stem": "imagenet",
        "pretrain_epochs": {"breastmnist": 1, "pneumoniamnist": 1},
    },
    "full": {
        "seeds": [0, 1, 2],
        "fractions": [0.01, 0.05, 0.1, 0.2, 0.5, 1.0],
        "sup_epochs": {},
        "stem": None,
        "pretrain_epochs": {"breastmnist": 400, "pneumoniamnist": 100},
    },
}


@dataclass(frozen=True)
class Step:
    """One run of the study: what it is (family, SSL method, label fraction, seed) as fields,
    not as meaning recovered from its name; `options` are its command's options."""

    kind: str  # train | pretrain | probe
    name: str  # its folder under OUT/runs
    family: str  # sup-all-bce | sup-all-wbce | sup-head | pretrain | probe | ft-scratch | ft-ssl
    options: dict = field(default_factory=dict)
    method: str | None = None  # the SSL method whose encoder it pretrains, probes or starts from
    fraction: float | None = None
    seed: int | None = None


def _names(method: str) -> tuple[str, str, str]:
    """(pretrain, probe, fine-tune prefix) run names; SimCLR keeps the names of medssl 0.1.0."""
    if method == "simclr":
        return "simclr", "probe-ssl", "ft-ssl"
    return method, f"probe-{method}", f"ft-{method}"


def _epochs(table: dict[str, int], dataset: str) -> int | None:
    """A budget's epochs for `dataset`; a user's data gets BreastMNIST's number of training
    steps (its epochs x 546 / N images, at least 1, at most BreastMNIST's epochs)."""
    if dataset in D.DATASETS or "breastmnist" not in table:
        return table.get(dataset)
    n = len(list_source(dataset).labels["train"])
    return max(1, min(table["breastmnist"], round(table["breastmnist"] * 546 / n)))


def plan(cfg: StudyConfig) -> list[Step]:
    """The study's steps in execution order."""
    b = BUDGETS[cfg.budget]
    common = {"dataset": cfg.dataset, "data_root": cfg.data_root, "device": cfg.device}
    common["progress"] = False
    labelled = dict(common, positive_class=cfg.positive_class)
    sup_epochs = _epochs(b["sup_epochs"], cfg.dataset)
    sup = dict(labelled, epochs=sup_epochs, stem=b["stem"], mlflow=cfg.mlflow)
    ssl_stem = "imagenet"  # pretraining needs many epochs: the cheap stem keeps them affordable
    steps: list[Step] = []
    for s in b["seeds"]:
        bce = dict(sup, seed=s, loss="bce")  # the dataset's recipe may weight the loss
        steps.append(Step("train", f"sup-all-bce-s{s}", "sup-all-bce", bce, seed=s))
        wbce = dict(sup, seed=s, loss="weighted-bce")
        steps.append(Step("train", f"sup-all-wbce-s{s}", "sup-all-wbce", wbce, seed=s))
        head = dict(sup, seed=s, mode="head", augment="none", lr=1e-2)
        steps.append(Step("train", f"sup-head-s{s}", "sup-head", head, seed=s))
    epochs = _epochs(b["pretrain_epochs"], cfg.dataset)
    for m in cfg.methods:
        options = dict(common, mlflow=cfg.mlflow, epochs=epochs, stem=ssl_stem, method=m)
        options["unlabeled"] = cfg.pretrain_on
        options["knn_every"] = min(5, epochs)
        steps.append(Step("pretrain", _names(m)[0], "pretrain", options, method=m))
    fr = ",".join(f"{f:g}" for f in b["fractions"])
    seeds = ",".join(str(s) for s in b["seeds"])
    for m in cfg.methods:
        options = dict(labelled, encoder=f"@{_names(m)[0]}", label_fractions=fr, seeds=seeds)
        steps.append(Step("probe", _names(m)[1], "probe", options, method=m))
    random = dict(labelled, encoder="random", stem=ssl_stem, label_fractions=fr, seeds=seeds)
    steps.append(Step("probe", "probe-random", "probe", random))
    for f in b["fractions"]:
        for s in b["seeds"]:
            scratch = dict(sup, stem=ssl_stem, seed=s, label_fraction=f)
            steps.append(
                Step("train", f"ft-scratch-f{f:g}-s{s}", "ft-scratch", scratch, fraction=f, seed=s)
            )
            for m in cfg.methods:
                pre, _, prefix = _names(m)
                ft = dict(scratch, init=f"@{pre}", encoder_lr_scale=0.1)
                name = f"{prefix}-f{f:g}-s{s}"
                steps.append(Step("train", name, "ft-ssl", ft, method=m, fraction=f, seed=s))
    return steps


def _finished(step: Step, out: Path) -> bool:
    return (out / "runs" / step.name / MARKERS[step.kind]).is_file()


def _step_configs(out: Path, steps: list[Step]) -> list:
    """Each step's validated options (bad ones fail here, before the study writes anything)."""
    classes = {"train": TrainConfig, "pretrain": PretrainConfig, "probe": ProbeConfig}
    configs = []
    for step in steps:
        opts, later = {}, False
        for k, v in step.options.items():
            if isinstance(v, str) and v.startswith("@"):  # an encoder a pretrain step makes
                v, later = str(out / "runs" / v[1:] / "encoder.safetensors"), True
            if v is not None:
                opts[k] = v
        opts["out"] = str(out / "runs" / step.name)
        configs.append(classes[step.kind].parse(opts, files_later=later))
    return configs


def run_study(cfg: StudyConfig, resume: bool = False, log=print) -> dict:
    """Run (or resume) every step, evaluate the best models, and write the reports."""
    positive_label(cfg)  # a bad --positive-class is refused before anything is claimed
    claimed, done = start(cfg, resume, log, lambda run: read_result(run, "study", ("supervised",)))
    if done is not None:
        return done
    out = claimed.path
    resolve_device(cfg.device)
    arrays = D.load_arrays(cfg.dataset, cfg.data_root)  # bad data fails here, before any write
    if cfg.pretrain_on:  # so does a pool holding held-out images
        pool, _ = pools.load_pool(cfg.pretrain_on, cfg.data_root, 28, log)
        pools.check_pool(pool, arrays, cfg.dataset)
    steps = plan(cfg)
    configs = _step_configs(out, steps)
    record = out / "study.json"
    earlier = 0.0  # wall time adds up over invocations (a resumed study keeps its earlier time)
    if claimed.action == "resume" and record.is_file():
        earlier = read_json(record, "study record").get("wall_time_s", 0.0)
        if not isinstance(earlier, int | float) or isinstance(earlier, bool) or earlier < 0:
            raise MedsslError(f"{record}: wall_time_s {earlier!r} is not a time in seconds")
    for step, run_cfg in zip(steps, configs, strict=True):  # each step's folder is checked too
        if not _finished(step, out):
            claim(run_cfg, resume=True)
    t0 = time.perf_counter()

    def save_record() -> None:
        write_json(
            record,
            {
                "config": cfg.to_dict(),
                "steps": [s.name for s in steps],
                "wall_time_s": earlier + time.perf_counter() - t0,
            },
        )

    with open_run(claimed, cfg):
        save_record()
        bar = tqdm(
            list(zip(steps, configs, strict=True)),
            desc=f"study {cfg.dataset} ({cfg.budget})",
            unit="run",
            disable=not cfg.progress,
            dynamic_ncols=True,
        )
        quiet = lambda *a, **k: None  # noqa: E731  (each run's own lines stay out of the bar)
        # looked up at call time: a test (or a user) may wrap a command's function
        run = {"train": train.train, "pretrain": pretrain.pretrain, "probe": probe.probe}
        for step, run_cfg in bar:
            bar.set_postfix_str(step.name)
            if not _finished(step, out):
                run[step.kind](run_cfg, resume=True, log=quiet)
                save_record()
        bar.close()
        _embeddings(cfg, out, steps)
        best = best_runs(out, steps)
        for family, name in best.items():
            if not (out / "runs" / name / "evaluation.json").is_file():
                log(f"evaluating {family}: {name}")
                evaluate_run(out / "runs" / name, n_boot=500)
        summary = summarise(cfg, out, steps, best, earlier + time.perf_counter() - t0)
        write_reports(out, summary)
        write_json(out / MARKERS["study"], summary)  # written last: marks a finished study
    return summary


def _embeddings(cfg: StudyConfig, out: Path, steps: list[Step]) -> None:
    """t-SNE maps for the report from the probes' cached test features, where a probe lacks one."""
    info = D.dataset_info(cfg.dataset)
    for step in (s for s in steps if s.kind == "probe"):
        run = out / "runs" / step.name
        if (run / "embedding.csv").is_file() or not (run / "features.safetensors").is_file():
            continue
        positive = D.resolve_positive(info, cfg.positive_class)
        targets = D.load_splits(cfg.dataset, cfg.data_root, positive)["test"].targets.numpy()
        feats = load_file(str(run / "features.safetensors"))["test"].astype(np.float64)  # ours
        pos = info.label_names[D.resolve_positive(info, cfg.positive_class)]
        probe.write_embedding(run, feats, targets.astype(np.int64), step.name, pos)


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
