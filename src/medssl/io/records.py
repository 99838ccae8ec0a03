"""What finished runs hold, read and checked: each command's finish marker, and the metrics of
train runs (`metrics.json`) that tables, studies and evaluation read."""

from __future__ import annotations

import math
from pathlib import Path

from medssl.errors import MedsslError
from medssl.io.artifacts import read_json
from medssl.io.rundir import MARKERS, require_finished

RECIPE_KEYS = ("dataset", "mode", "init", "loss", "stem", "label_fraction")
METRIC_KEYS = ("auroc", "balanced_accuracy", "accuracy", "ece")
REQUIRED = RECIPE_KEYS + (
    "positive_class",
    "seed",
    "val",
    "test",
    "epochs",
    "train_time_s",
    "best_epoch",
)
SPLIT_KEYS = METRIC_KEYS + ("n", "n_positive")
TYPES = {
    "dataset": str,
    "mode": str,
    "init": str,
    "loss": str,
    "stem": str,
    "label_fraction": int | float,
    "seed": int,
    "epochs": int,
    "train_time_s": int | float,
    "best_epoch": int,
}


def read_metrics(path: Path) -> dict:
    """A train run's metrics.json with every field the tables and summaries read, checked."""
    m = read_json(path, "metrics", require=REQUIRED)
    bad = [k for k, t in TYPES.items() if not isinstance(m[k], t) or isinstance(m[k], bool)]
    if (
        bad
        or m["epochs"] < 1
        or not (math.isfinite(m["label_fraction"]) and 0 < m["label_fraction"] <= 1)
    ):
        raise MedsslError(
            f"{path}: {bad or ['epochs / label_fraction']} of the wrong type or range"
        )
    for split in ("val", "test"):
        block = m[split]
        if not isinstance(block, dict) or any(
            not isinstance(block.get(k), int | float) or isinstance(block.get(k), bool)
            for k in SPLIT_KEYS
        ):
            raise MedsslError(f"{path}: {split} metrics are missing or not numbers")
    pos = m["positive_class"]
    if not (isinstance(pos, dict) and isinstance(pos.get("name"), str) and "label" in pos):
        raise MedsslError(f"{path}: positive_class lacks its label or name")
    return m


def load_runs(run_dirs: list[Path | str]) -> list[dict]:
    """metrics.json of each finished train run folder (anything else raises a clear error)."""
    runs = []
    for d in run_dirs:
        m = read_metrics(require_finished(Path(d), "train", "compare") / MARKERS["train"])
        m["run_dir"] = str(d)
        m["external"] = read_external(Path(d))
        runs.append(m)
    return runs


EXTERNAL_KEYS = ("source", "n", "auroc", "balanced_accuracy", "calibration_before",
                 "calibration_after")  # fmt: skip


def read_external(run: Path) -> dict[str, dict]:
    """RUN/external/NAME/metrics.json of each external set `evaluate --dataset` scored."""
    folder = run / "external"
    if not folder.is_dir():
        return {}
    return {
        p.parent.name: read_json(p, "external metrics", require=EXTERNAL_KEYS)
        for p in sorted(folder.glob("*/metrics.json"))
    }


WHAT = {  # how a refusal names each command's finish marker
    "train": "metrics",
    "pretrain": "pretrain summary",
    "probe": "probe summary",
    "study": "study summary",
    "tune": "tune summary",
}


def read_result(run: Path, command: str, require: tuple[str, ...] = ()) -> dict:
    """The finish marker of a `command` run (metrics.json, pretrain.json, summary.json,
    tune.json) with the keys `require`; a train run's metrics are checked whole."""
    if command == "train":
        return read_metrics(run / MARKERS["train"])
    return read_json(run / MARKERS[command], WHAT[command], require=require)
