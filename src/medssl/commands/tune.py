"""`medssl tune`: a cross-validated search of supervised recipes (Optuna), resumable and shared.

A trial is a recipe (`catalog.TUNE_SPACE`). Its score is stratified k-fold cross-validation
AUROC on the union of the training and validation splits, repeated `repeats` times with other
fold assignments and seeds; the test split is never read. In each fold the recipe trains on k-1
folds minus an inner validation slice (1/9 of them, stratified) that chooses the epoch, exactly
as `medssl train` does, and is scored on the held-out fold. Each fold is an ordinary `medssl
train` run on an npz in MedMNIST's layout (train = the k-1 folds, val = the inner slice, test =
the held-out fold), kept under OUT/runs/. Optuna's TPE proposes recipes; after each fold the
running mean is reported, so `noise_pruner` stops hopeless trials early. Training time is
recorded, so the result is a front of AUROC against time, not one noisy point; the recipe chosen
is the fastest one whose mean AUROC is within one standard error of the best trial's.

Resuming: the search lives in an Optuna journal (OUT/journal.log, or --storage, which several
processes or machines can share); a killed process loses only its running trial.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy
from optuna.storages.journal import JournalFileBackend
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from medssl import data as D
from medssl import plots
from medssl.catalog import TUNE_RANGES as RANGES
from medssl.catalog import TUNE_SPACE as SPACE
from medssl.commands.lifecycle import open_run, positive_label
from medssl.commands.train import train
from medssl.data.sources import loaded_groups
from medssl.errors import MedsslError
from medssl.io.artifacts import (
    atomic_path,
    expand,
    short_error,
    write_csv,
    write_json,
    write_yaml,
)
from medssl.io.records import read_result
from medssl.io.rundir import MARKERS, claim, enclosing_run
from medssl.options import TrainConfig, TuneConfig
from medssl.runtime import resolve_device, resolve_precision

INNER_VAL = 1 / 9  # of the k-1 training folds: the slice that chooses the epoch


def search_space(cfg: TuneConfig) -> dict:
    """SPACE narrowed by --space (choices kept in SPACE's order) with epochs capped by
    --max-epochs (the default choices all above it: --max-epochs itself)."""
    space = dict(SPACE) | {k: tuple(v) for k, v in (cfg.space or {}).items()}
    epochs = tuple(e for e in space["epochs"] if e <= cfg.max_epochs)  # TuneConfig: never empty
    return space | {"epochs": epochs or (cfg.max_epochs,)}  # for --space epochs


def suggest(trial, space: dict) -> dict:
    """One recipe from the search space: log-uniform for the rates, categorical for the rest."""
    recipe = {}
    for key, values in space.items():
        if key in RANGES:
            lo, hi = values[0], values[-1]
            recipe[key] = lo if lo == hi else trial.suggest_float(key, lo, hi, log=True)
        else:
            recipe[key] = trial.suggest_categorical(key, values)
    return recipe


def default_recipe(cfg: TuneConfig, space: dict) -> dict | None:
    """The recipe `medssl train` uses today for this dataset, as a point of the search space
    (None when --space or --max-epochs leaves it out): the first trial, so the front shows
    whether the search beats it."""
    train_cfg = TrainConfig(dataset=cfg.dataset, positive_class=cfg.positive_class)
    recipe = {k: getattr(train_cfg, k) for k in space}
    recipe["precision"] = resolve_precision(recipe["precision"], resolve_device(cfg.device))
    for key, values in space.items():
        inside = values[0] <= recipe[key] <= values[-1] if key in RANGES else recipe[key] in values
        if not inside:
            return None
    return {k: v for k, v in recipe.items() if not (k in RANGES and space[k][0] == space[k][-1])}


def _folds(k: int, seed: int, y: np.ndarray, groups: np.ndarray | None):
    """Stratified k folds; with patients, stratified and grouped (no patient in two folds)."""
    if groups is None:
        return StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y)
    if len(set(groups)) < k:
        raise MedsslError(f"--folds {k}: train+val hold {len(set(groups))} patients only")
    return StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(y, y, groups)


def _inner_split(rest: np.ndarray, y: np.ndarray, groups: np.ndarray | None, seed: int):
    """The inner validation slice (1/9 of the k-1 folds, stratified; grouped by patient)."""
    if groups is None:
        fit, inner = train_test_split(
            rest, test_size=INNER_VAL, stratify=y[rest], random_state=seed
        )
    else:
        inner_folds = StratifiedGroupKFold(round(1 / INNER_VAL), shuffle=True, random_state=seed)
        fit_i, inner_i = next(inner_folds.split(rest, y[rest], groups[rest]))
        fit, inner = rest[fit_i], rest[inner_i]
    return np.sort(fit), np.sort(inner)


def make_folds(cfg: TuneConfig, out: Path, positive: int) -> list[Path]:
    """The k x repeats fold datasets as npz files (written once; labels as 0/1 = positive)."""
    arrays = D.load_arrays(cfg.dataset, cfg.data_root)
    images = np.concatenate([arrays["train"][0], arrays["val"][0]])
    y = (np.concatenate([arrays["train"][1], arrays["val"][1]]) == positive).astype(np.int64)
    if np.bincount(y, minlength=2).min() < 2 * cfg.folds:
        raise MedsslError(f"--folds {cfg.folds}: a class of train+val has too few images")
    patients = loaded_groups(cfg.dataset)  # a patient column or DICOM PatientID: grouped folds
    groups = None if patients is None else np.array(patients["train"] + patients["val"])
    paths = []
    for r in range(cfg.repeats):
        for f, (rest, held) in enumerate(_folds(cfg.folds, cfg.seed + r, y, groups)):
            path = out / "folds" / f"r{r}-f{f}.npz"
            paths.append(path)
            if path.is_file():
                continue
            fit, inner = _inner_split(rest, y, groups, cfg.seed + r)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    **{
                        f"{s}_images": images[i]
                        for s, i in (("train", fit), ("val", inner), ("test", held))
                    },  # fmt: skip
                    **{
                        f"{s}_labels": y[i, None]
                        for s, i in (("train", fit), ("val", inner), ("test", held))
                    },  # fmt: skip
                )
    return paths


def objective(cfg: TuneConfig, out: Path, folds: list[Path]):
    """The Optuna objective: mean held-out AUROC over the folds of one recipe."""
    space = search_space(cfg)

    def run(trial: optuna.Trial) -> float:
        recipe = suggest(trial, space)
        aurocs, seconds = [], []
        for i, fold in enumerate(folds):
            seed = int(fold.stem.split("-")[0][1:])  # the repeat: its own seed
            options = dict(recipe, dataset=str(fold), positive_class="1", seed=seed)
            options |= {"out": str(out / "runs" / f"t{trial.number:04d}-{fold.stem}")}
            options |= {"device": cfg.device, "progress": False, "tensorboard": False}
            metrics = train(TrainConfig(**options), log=lambda *a, **k: None)
            aurocs.append(metrics["test"]["auroc"])
            seconds.append(metrics["train_time_s"])
            trial.report(statistics.mean(aurocs), i)
            trial.set_user_attr("fold_auroc", aurocs)
            trial.set_user_attr("recipe", recipe)
            trial.set_user_attr("train_time_s", statistics.mean(seconds))
            if trial.should_prune():
                raise optuna.TrialPruned()
        return statistics.mean(aurocs)

    return run


def fold_spread(folds: list[float]) -> tuple[float, float]:
    """Standard deviation over the folds' AUROCs and the standard error of their mean."""
    sd = statistics.stdev(folds) if len(folds) > 1 else 0.0
    return sd, sd / math.sqrt(max(1, len(folds)))


def noise_pruner(n_startup_trials: int = 3, z: float = 2.0):
    """Prune a trial whose running CV mean after i folds, even z fold-standard-errors
    optimistic, stays below the band `choose` picks from (best complete trial's mean minus one
    SEM). A median pruner stops trials for fold noise when recipes differ by less than it
    (PneumoniaMNIST: every recipe's CV AUROC within 0.002) and so hides the cheap ones."""

    class _Pruner(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            step = trial.last_step
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if step is None or len(done) < n_startup_trials:
                return False
            best = max(done, key=lambda t: t.value)
            sd, sem = fold_spread(best.user_attrs.get("fold_auroc", []))
            band = best.value - sem
            return trial.intermediate_values[step] + z * sd / math.sqrt(step + 1) < band

    return _Pruner()


def _storage(cfg: TuneConfig, out: Path):
    """The Optuna storage of the search: a database URL, or a journal file (OUT/journal.log by
    default). Everything that can be wrong with it is refused here, before the run folder is
    written: an unknown URL scheme or a missing driver, a journal in a missing folder, inside
    another run or a folder, a journal that is not one. Returns the storage, or None when the
    journal does not exist yet (it is made once the run folder is open)."""
    if cfg.storage and "://" in cfg.storage:
        try:
            url = sqlalchemy.engine.make_url(cfg.storage)
            url.get_dialect()
        except Exception as exc:  # sqlalchemy: not a URL, unknown scheme, missing driver
            raise MedsslError(f"--storage {cfg.storage}: {short_error(exc)}") from None
        if url.get_backend_name() == "sqlite" and url.database:
            _check_storage_file(expand(url.database), out)
        try:
            return optuna.storages.RDBStorage(cfg.storage)
        except Exception as exc:  # optuna/sqlalchemy: unreachable, refused, not its schema
            msg = f"--storage {cfg.storage}: cannot open ({short_error(exc)})"
            raise MedsslError(msg) from None
    path = expand(cfg.storage) if cfg.storage else out / "journal.log"
    if cfg.storage:
        _check_storage_file(path, out)
    if not path.is_file():
        return None
    try:  # an existing journal is replayed (read) here; nothing is appended yet
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        storage.get_all_studies()
    except Exception as exc:  # optuna's replay of a file that is not a journal
        raise MedsslError(f"--storage {path}: not an Optuna journal ({short_error(exc)})") from None
    return storage


def _check_storage_file(path: Path, out: Path) -> None:
    run = enclosing_run(path)
    if run is not None and run != out:
        raise MedsslError(f"--storage {path}: inside the run folder {run}; name a file outside")
    if path.is_dir() or not path.parent.is_dir():
        raise MedsslError(f"--storage {path}: not a file in an existing folder")


def _search(cfg: TuneConfig, positive: int) -> dict:
    """What a shared search is about: processes that join one must agree on all of it."""
    space = {k: list(v) for k, v in search_space(cfg).items()}
    keys = ("dataset", "folds", "repeats", "max_epochs", "seed", "size")
    return {k: getattr(cfg, k, None) for k in keys} | {"positive": positive, "space": space}


def _check_joined(cfg: TuneConfig, storage, search: dict) -> None:
    """Refuse to join a search in `storage` made for another dataset, space or folds."""
    if storage is None:
        return
    for study in storage.get_all_studies():
        if study.study_name == cfg.study_name:
            theirs = study.user_attrs.get("medssl_search")
            if theirs is not None and theirs != search:
                differ = sorted(k for k in search if theirs.get(k) != search[k])
                raise MedsslError(
                    f"--storage: the search {cfg.study_name!r} there is for other {differ}; "
                    "use another --study-name or the same options"
                )


def tune(cfg: TuneConfig, resume: bool = False, log=print) -> dict:
    """Run (or resume, or join) the search until `cfg.trials` trials are finished; write
    trials.csv, pareto.png, recipe.yaml and tune.json (last: marks a finished run)."""
    positive = positive_label(cfg)  # a bad --positive-class is refused before the claim
    claimed = claim(cfg, resume)
    out = claimed.path
    if claimed.action == "finished":
        done = read_result(out, "tune", ("table_md", "n_finished"))
        if done["n_finished"] >= cfg.trials:
            log(f"{out} already holds this finished tune run; nothing to do")
            return done
        claimed = dataclasses.replace(claimed, action="resume")  # more trials asked: go on
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, search = _storage(cfg, out), _search(cfg, positive)  # before the data is decoded
    _check_joined(cfg, storage, search)
    arrays = D.load_arrays(cfg.dataset, cfg.data_root)  # bad data fails here, before any write
    labels = np.concatenate([arrays["train"][1], arrays["val"][1]]) == positive
    if min(labels.sum(), (~labels).sum()) < 2 * cfg.folds:
        raise MedsslError(f"--folds {cfg.folds}: a class of train+val has too few images")
    start = time.perf_counter()
    with open_run(claimed, cfg):
        (out / MARKERS["tune"]).unlink(missing_ok=True)  # the marker returns when the search ends
        folds = make_folds(cfg, out, positive)
        if storage is None:  # a new journal file
            path = expand(cfg.storage) if cfg.storage else out / "journal.log"
            storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        study = optuna.create_study(
            study_name=cfg.study_name,
            storage=storage,
            load_if_exists=True,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=cfg.seed),
            pruner=noise_pruner(),
        )
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        if "medssl_search" not in study.user_attrs:
            study.set_user_attr("medssl_search", search)
        current = default_recipe(cfg, search_space(cfg))
        if current and not study.get_trials(deepcopy=False):  # a new search: today's default first
            study.enqueue_trial(current, user_attrs={"current_default": True})
        left = cfg.trials - len(study.get_trials(deepcopy=False, states=states))
        if left > 0:
            log(f"tune {cfg.dataset}: {left} trial(s) to go, {len(folds)} folds each")
            study.optimize(
                objective(cfg, out, folds),
                n_trials=left,
                callbacks=[optuna.study.MaxTrialsCallback(cfg.trials, states=states)],
                show_progress_bar=cfg.progress,
            )
        summary = summarise(cfg, study, out, positive, time.perf_counter() - start)
        summary["n_finished"] = len(study.get_trials(deepcopy=False, states=states))
        write_json(out / MARKERS["tune"], summary)
    return summary


def trial_rows(study) -> list[dict]:
    """One row per complete trial: recipe, CV AUROC mean/std/SEM, mean training time."""
    rows = []
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        sd, sem = fold_spread(t.user_attrs.get("fold_auroc", []))
        rows.append(
            {
                "trial": t.number,
                "cv_auroc": t.value,
                "cv_std": sd,
                "cv_sem": sem,
                "train_time_s": t.user_attrs.get("train_time_s", math.nan),
                "current_default": bool(t.user_attrs.get("current_default")),
                **t.params,
                **t.user_attrs.get("recipe", {}),
            }  # fmt: skip
        )
    return rows


def choose(rows: list[dict]) -> dict:
    """The fastest recipe whose CV AUROC is within one SEM of the best trial's."""
    best = max(rows, key=lambda r: r["cv_auroc"])
    near = [r for r in rows if r["cv_auroc"] >= best["cv_auroc"] - best["cv_sem"]]
    return min(near, key=lambda r: r["train_time_s"])


def pareto(rows: list[dict]) -> list[dict]:
    """Trials no other trial beats on both CV AUROC (higher) and training time (lower)."""
    return [
        r
        for r in rows
        if not any(
            o["cv_auroc"] >= r["cv_auroc"]
            and o["train_time_s"] <= r["train_time_s"]
            and (o["cv_auroc"], o["train_time_s"]) != (r["cv_auroc"], r["train_time_s"])
            for o in rows
        )
    ]


def summarise(cfg: TuneConfig, study, out: Path, positive: int, wall_s: float) -> dict:
    rows = trial_rows(study)
    if not rows:
        raise MedsslError(f"{out}: no trial completed (all pruned or failed); add --trials")
    write_csv(out / "trials.csv", rows)
    chosen, front = choose(rows), pareto(rows)
    plots.plot_pareto(rows, front, chosen, out / "pareto.png")
    recipe = {k: chosen[k] for k in SPACE}
    info = D.dataset_info(cfg.dataset)
    write_yaml(
        out / "recipe.yaml",
        {"dataset": cfg.dataset, "positive_class": info.label_names[positive], **recipe},
    )
    head = "| trial | CV AUROC | ± SEM | train s | " + " | ".join(SPACE) + " |"
    lines = [head, "|---" * (4 + len(SPACE)) + "|"]
    listed = front + [r for r in rows if r["current_default"] and r not in front]
    for r in sorted(listed, key=lambda r: r["train_time_s"]):
        mark = " (chosen)" if r is chosen else ""
        mark += " (today's default)" if r["current_default"] else ""
        values = " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in SPACE)
        lines.append(
            f"| {r['trial']}{mark} | {r['cv_auroc']:.4f} | {r['cv_sem']:.4f} | "
            f"{r['train_time_s']:.1f} | {values} |"
        )
    table = (
        f"Recipe search on {cfg.dataset} ({len(rows)} complete trials, {cfg.folds}-fold CV x "
        f"{cfg.repeats} on train+val): the Pareto front of CV AUROC against training time "
        "(and today's default recipe).\n\n"
        + "\n".join(lines)
        + f"\n\nrecipe: {out / 'recipe.yaml'} (use: medssl train --config {out / 'recipe.yaml'})"
    )
    return {
        "dataset": cfg.dataset,
        "chosen": chosen,
        "pareto": front,
        "n_complete": len(rows),
        "wall_time_s": wall_s,
        "table_md": table,
    }
