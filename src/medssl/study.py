"""`medssl study`: the whole comparison on one dataset in one command, resumable.

Steps (each a run directory under OUT/runs/; a finished one is skipped, a killed one resumes):
supervised fine-tune-all, weighted BCE and head-only (per seed) -> SimCLR pretraining -> linear
probes of the SSL encoder and of a random encoder at the label fractions -> supervised and SSL
fine-tuning at the label fractions (per seed) -> `evaluate` on the best run of each family
(chosen on validation AUROC) -> summary.json, report.md and a self-contained report.html.
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from medssl import data as D
from medssl.artifacts import read_json, write_json
from medssl.options import StudyConfig
from medssl.rundir import claim, open_run

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


def plan(cfg: StudyConfig) -> list[tuple[str, str, dict]]:
    """The study's steps as (kind, run name, options), in execution order."""
    b = BUDGETS[cfg.budget]
    common = {
        "dataset": cfg.dataset,
        "data_root": cfg.data_root,
        "device": cfg.device,
        "progress": False,
    }
    sup = dict(common, epochs=b["sup_epochs"].get(cfg.dataset), stem=b["stem"], mlflow=cfg.mlflow)
    ssl_stem = "imagenet"  # SimCLR needs many epochs: the cheap stem keeps them affordable
    steps: list[tuple[str, str, dict]] = []
    for s in b["seeds"]:
        steps.append(("train", f"sup-all-bce-s{s}", dict(sup, seed=s)))
        steps.append(("train", f"sup-all-wbce-s{s}", dict(sup, seed=s, loss="weighted-bce")))
        steps.append(
            ("train", f"sup-head-s{s}", dict(sup, seed=s, mode="head", augment="none", lr=1e-2))
        )
    steps.append(
        (
            "pretrain",
            "simclr",
            dict(
                common,
                mlflow=cfg.mlflow,
                epochs=b["pretrain_epochs"][cfg.dataset],
                stem=ssl_stem,
                knn_every=min(5, b["pretrain_epochs"][cfg.dataset]),
            ),
        )
    )
    fr = ",".join(f"{f:g}" for f in b["fractions"])
    seeds = ",".join(str(s) for s in b["seeds"])
    steps.append(
        ("probe", "probe-ssl", dict(common, encoder="@simclr", label_fractions=fr, seeds=seeds))
    )
    steps.append(
        (
            "probe",
            "probe-random",
            dict(common, encoder="random", stem=ssl_stem, label_fractions=fr, seeds=seeds),
        )
    )
    for f in b["fractions"]:
        for s in b["seeds"]:
            steps.append(
                (
                    "train",
                    f"ft-scratch-f{f:g}-s{s}",
                    dict(sup, stem=ssl_stem, seed=s, label_fraction=f),
                )
            )
            steps.append(
                (
                    "train",
                    f"ft-ssl-f{f:g}-s{s}",
                    dict(
                        sup,
                        stem=ssl_stem,
                        seed=s,
                        label_fraction=f,
                        init="@simclr",
                        encoder_lr_scale=0.1,
                    ),
                )
            )
    return steps


def _finished(kind: str, run: Path) -> bool:
    marker = {"train": "metrics.json", "pretrain": "pretrain.json", "probe": "summary.json"}
    return (run / marker[kind]).is_file()


def _step_configs(cfg: StudyConfig, out: Path, steps: list) -> list:
    """Each step's validated options (bad ones fail here, before the study writes anything)."""
    from medssl.options import PretrainConfig, ProbeConfig, TrainConfig

    classes = {"train": TrainConfig, "pretrain": PretrainConfig, "probe": ProbeConfig}
    encoder = str(out / "runs" / "simclr" / "encoder.safetensors")
    configs = []
    for kind, name, opts in steps:
        # The SSL encoder is made by the study's pretrain step: its file is checked when used.
        later = "@simclr" in opts.values()
        opts = {k: (encoder if v == "@simclr" else v) for k, v in opts.items() if v is not None}
        opts["out"] = str(out / "runs" / name)
        configs.append(classes[kind].parse(opts, files_later=later))
    return configs


def run_study(cfg: StudyConfig, resume: bool = False, log=print) -> dict:
    """Run (or resume) every step, evaluate the best models, and write the reports."""
    from medssl.evaluate import evaluate_run
    from medssl.pretrain import pretrain
    from medssl.probe import probe
    from medssl.train import resolve_device, train

    claimed = claim(cfg, resume)
    if claimed.action == "finished":
        log(f"{claimed.path} already holds this finished study; nothing to do")
        return read_json(claimed.path / "summary.json", "study summary", require=("supervised",))
    out = claimed.path
    resolve_device(cfg.device)
    D.load_arrays(cfg.dataset, cfg.data_root)  # bad data fails here, before anything is made
    steps = plan(cfg)
    configs = _step_configs(cfg, out, steps)
    record = out / "study.json"
    earlier = 0.0  # wall time adds up over invocations (a resumed study keeps its earlier time)
    if claimed.action == "resume" and record.is_file():
        earlier = float(read_json(record, "study record").get("wall_time_s", 0.0))
    t0 = time.perf_counter()

    def save_record() -> None:
        write_json(
            record,
            {
                "config": cfg.to_dict(),
                "steps": [s[1] for s in steps],
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
        for (kind, name, _), run_cfg in bar:
            bar.set_postfix_str(name)
            if _finished(kind, out / "runs" / name):
                continue
            if kind == "train":
                train(run_cfg, resume=True, log=quiet)
            elif kind == "pretrain":
                pretrain(run_cfg, resume=True, log=quiet)
            else:
                probe(run_cfg, resume=True, log=quiet)
            save_record()
        bar.close()
        _embeddings(cfg, out)
        best = best_runs(out, steps)
        for family, name in best.items():
            if not (out / "runs" / name / "evaluation.json").is_file():
                log(f"evaluating {family}: {name}")
                evaluate_run(out / "runs" / name, n_boot=500)
        summary = summarise(cfg, out, steps, best, earlier + time.perf_counter() - t0)
        from medssl.report_html import write_reports

        write_reports(out, summary)
        write_json(out / "summary.json", summary)  # written last: marks a finished study
    return summary


def _embeddings(cfg: StudyConfig, out: Path) -> None:
    """t-SNE maps for the report from the probes' cached test features, where a probe lacks one."""
    from safetensors.numpy import load_file

    from medssl.probe import write_embedding

    info = D.dataset_info(cfg.dataset)
    for name in ("probe-ssl", "probe-random"):
        run = out / "runs" / name
        if (run / "embedding.csv").is_file() or not (run / "features.safetensors").is_file():
            continue
        targets = D.load_splits(cfg.dataset, cfg.data_root)["test"].targets.numpy()
        feats = load_file(str(run / "features.safetensors"))["test"].astype(np.float64)  # ours
        pos = info.label_names[info.default_positive]
        write_embedding(run, feats, targets.astype(np.int64), name, pos)


def best_runs(out: Path, steps: list) -> dict[str, str]:
    """The run with the best validation AUROC in each supervised family (never test)."""
    families = {
        "fine-tune all (BCE)": "sup-all-bce-",
        "fine-tune all (weighted BCE)": "sup-all-wbce-",
        "head-only": "sup-head-",
        "SSL fine-tune (all labels)": "ft-ssl-f1-",
    }
    best = {}
    for family, prefix in families.items():
        names = [n for k, n, _ in steps if k == "train" and n.startswith(prefix)]
        scored = [
            (read_json(out / "runs" / n / "metrics.json", "metrics")["val"]["auroc"], n)
            for n in names
            if (out / "runs" / n / "metrics.json").is_file()
        ]
        if scored:
            best[family] = max(scored)[1]
    return best


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(cfg: StudyConfig, out: Path, steps: list, best: dict, wall_s: float) -> dict:
    """Everything the reports show, from the run directories (re-readable at any time)."""
    runs = out / "runs"

    def metrics(name: str) -> dict:
        return read_json(runs / name / "metrics.json", "metrics")

    b = BUDGETS[cfg.budget]
    supervised = {}
    for label, prefix in (
        ("fine-tune all, BCE", "sup-all-bce-s"),
        ("fine-tune all, weighted BCE", "sup-all-wbce-s"),
        ("head-only (random encoder)", "sup-head-s"),
    ):
        ms = [metrics(f"{prefix}{s}") for s in b["seeds"]]
        supervised[label] = {
            k: _mean_std([m["test"][k] for m in ms])
            for k in ("auroc", "balanced_accuracy", "accuracy", "ece")
        }
        supervised[label]["val_auroc"] = _mean_std([m["val"]["auroc"] for m in ms])
        supervised[label]["train_time_s"] = statistics.mean(m["train_time_s"] for m in ms)
        supervised[label]["stem"] = ms[0]["stem"]
        supervised[label]["epochs"] = ms[0]["epochs"]
    efficiency: dict[str, list[dict]] = {}
    for label, name in (
        ("SSL linear probe", "probe-ssl"),
        ("random-encoder probe", "probe-random"),
    ):
        efficiency[label] = read_json(runs / name / "summary.json", "probe summary")["table"]
    for label, prefix in (("supervised from scratch", "ft-scratch"), ("SSL fine-tune", "ft-ssl")):
        rows = []
        for f in b["fractions"]:
            ms = [metrics(f"{prefix}-f{f:g}-s{s}") for s in b["seeds"]]
            row = {"label_fraction": f, "n_train": ms[0]["n_train"]}
            for key in ("auroc", "balanced_accuracy", "ece"):
                mean, std = _mean_std([m["test"][key] for m in ms])
                row[f"test_{key}"], row[f"test_{key}_std"] = mean, std
            rows.append(row)
        efficiency[label] = rows
    pre = read_json(runs / "simclr" / "pretrain.json", "pretrain summary")
    init = runs / "simclr" / "knn_init.json"
    if pre.get("knn_val_auroc_init") is None and init.is_file():  # runs made before it existed
        pre["knn_val_auroc_init"] = read_json(init, "kNN monitor").get("knn_val_auroc")
    info = D.dataset_info(cfg.dataset)
    return {
        "dataset": cfg.dataset,
        "budget": cfg.budget,
        "seeds": b["seeds"],
        "positive_class": {
            "label": info.default_positive,
            "name": info.label_names[info.default_positive],
        },
        "supervised": supervised,
        "label_efficiency": efficiency,
        "pretrain": pre,
        "best_runs": best,
        "wall_time_s": wall_s,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}",
        "steps": [n for _, n, _ in steps],
    }
