"""The life of a run folder, shared by the commands that make one (train, pretrain, probe,
study, tune): the positive class checked, the folder claimed before anything is written (a
finished run of the same options is a no-op that returns its result), then opened (lock,
run.json, config.yaml, data.json for a user's source) with its tracker, and the finish marker,
written last by the command, decides its state.

The rules themselves (who may write where, what "finished" means) live in `medssl.io.rundir`;
this module adds what only a command knows: the data source it loaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from medssl import data as D
from medssl.data.sources import is_path, loaded_record
from medssl.io import rundir
from medssl.tracking import Tracker


def positive_label(opts) -> int:
    """The label `--positive-class` names (a user's source is listed for its classes; a bad
    value is one line), checked before the run folder is claimed."""
    return D.resolve_positive(D.dataset_info(opts.dataset), opts.positive_class)


def preprocessing(opts) -> D.Preprocessing:
    """The preprocessing a command's options describe (size, intensity, window, aspect)."""
    window = getattr(opts, "window", None)
    return D.Preprocessing(
        size=getattr(opts, "size", 28),
        intensity=getattr(opts, "intensity", "bits"),
        window=tuple(window) if window else None,
        aspect=getattr(opts, "aspect", "pad"),
    )


def data_record(opts) -> dict | None:
    """data.json of a run: the preprocessing it applied (replayed by evaluate and predict) and,
    for a user's source, what this process loaded (classes, split, grouping, counts, content
    digest). None for commands without a dataset."""
    dataset = getattr(opts, "dataset", None)
    if not dataset:
        return None
    if is_path(dataset):
        return loaded_record(dataset, getattr(opts, "size", 28))
    prep = preprocessing(opts).with_bits(8)  # MedMNIST's files: 8-bit at the run's size
    return {"source": dataset, "kind": "medmnist", "preprocessing": prep.record()}


@contextlib.contextmanager
def open_run(claimed: rundir.Claim, opts) -> Iterator[Path]:
    """`rundir.open_run` with the data record of the options' dataset."""
    with rundir.open_run(claimed, opts, data_record(opts)) as path:
        yield path


def start(
    opts, resume: bool, log, result: Callable[[Path], dict]
) -> tuple[rundir.Claim, dict | None]:
    """Claim `opts.out` for this command (`rundir.claim`'s rules). A finished run with the
    same options is left as it is: its result, read by `result(folder)`, comes back with the
    claim (else None)."""
    claimed = rundir.claim(opts, resume)
    if claimed.action != "finished":
        return claimed, None
    log(f"{claimed.path} already holds this finished {opts.command} run; nothing to do")
    return claimed, result(claimed.path)


@contextlib.contextmanager
def tracked(claimed: rundir.Claim, opts, start_step: int = 0) -> Iterator[Tracker]:
    """The run folder opened (`open_run`) and its tracker (TensorBoard events unless
    --no-tensorboard, MLflow with --mlflow), closed in that order's reverse."""
    with open_run(claimed, opts):
        tracker = Tracker(
            claimed.path,
            opts.to_dict(),
            getattr(opts, "tensorboard", False),
            getattr(opts, "mlflow", None),
            start_step,
            f"medssl-{opts.dataset}",
        )
        with contextlib.closing(tracker):
            yield tracker
