"""Running a study: every step of the plan in order (a finished one skipped, a killed one
resumed), the best models evaluated, the summary and the reports written."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tqdm.auto import tqdm

from medssl import data as D
from medssl.commands import pretrain, probe, train
from medssl.commands.evaluate import evaluate_run
from medssl.commands.external import evaluate_external, external_name
from medssl.commands.lifecycle import open_run, positive_label, preprocessing, start
from medssl.commands.study.plan import Step, finished, plan, step_configs
from medssl.commands.study.summary import best_runs, summarise
from medssl.data import pools
from medssl.errors import MedsslError
from medssl.io.artifacts import read_json, write_json
from medssl.io.records import read_result
from medssl.io.rundir import MARKERS, claim
from medssl.options import StudyConfig
from medssl.report.study import write_reports
from medssl.runtime import resolve_device


def run_study(cfg: StudyConfig, resume: bool = False, log=print) -> dict:
    """Run (or resume) every step, evaluate the best models, and write the reports."""
    positive_label(cfg)  # a bad --positive-class is refused before anything is claimed
    claimed, done = start(cfg, resume, log, lambda run: read_result(run, "study", ("supervised",)))
    if done is not None:
        return done
    out = claimed.path
    resolve_device(cfg.device)
    prep = preprocessing(cfg)
    arrays = D.load_arrays(cfg.dataset, cfg.data_root, prep=prep)  # bad data fails here, first
    if cfg.pretrain_on:  # so does a pool holding held-out images
        pool, _ = pools.load_pool(cfg.pretrain_on, cfg.data_root, prep, log)
        pools.check_pool(pool, arrays, cfg.dataset)
    steps = plan(cfg)
    configs = step_configs(out, steps)
    record = out / "study.json"
    earlier = 0.0  # wall time adds up over invocations (a resumed study keeps its earlier time)
    if claimed.action == "resume" and record.is_file():
        earlier = read_json(record, "study record").get("wall_time_s", 0.0)
        if not isinstance(earlier, int | float) or isinstance(earlier, bool) or earlier < 0:
            raise MedsslError(f"{record}: wall_time_s {earlier!r} is not a time in seconds")
    for step, run_cfg in zip(steps, configs, strict=True):  # each step's folder is checked too
        if not finished(step, out):
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
            if not finished(step, out):
                run[step.kind](run_cfg, resume=True, log=quiet)
                save_record()
        bar.close()
        _embeddings(cfg, out, steps)
        best = best_runs(out, steps)
        for family, name in best.items():
            if not (out / "runs" / name / "evaluation.json").is_file():
                log(f"evaluating {family}: {name}")
                evaluate_run(out / "runs" / name, n_boot=500)
            for source in cfg.external or []:
                if not (out / "runs" / name / "external" / external_name(source)).is_dir():
                    log(f"external validation of {family} on {source}")
                    evaluate_external(out / "runs" / name, source, n_boot=500, log=quiet)
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
