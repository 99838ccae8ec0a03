"""Tables of finished runs: one row per run, or mean ± std over seeds of the same recipe."""

from __future__ import annotations

import statistics
from pathlib import Path

from medssl.errors import MedsslError
from medssl.io.records import METRIC_KEYS, RECIPE_KEYS


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def compare_table(runs: list[dict], split: str = "test", by_seed: bool = True) -> str:
    """Markdown table of `split` metrics; with `by_seed`, seeds of one recipe are aggregated
    (mean ± sample std) and the wall time is the mean training time per run."""
    if split not in ("val", "test"):
        raise MedsslError(f"split must be val or test, got {split!r}")
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = tuple(r.get(k) for k in RECIPE_KEYS) if by_seed else (r["run_dir"],)
        groups.setdefault(key, []).append(r)
    head = ["dataset", "positive", "mode", "init", "loss", "stem", "labels", "seeds"]
    head += ["val AUROC"] if split == "test" else []
    head += [f"{split} {k}" for k in ("AUROC", "BalAcc", "Acc", "ECE")]
    head += ["epochs", "s/epoch", "train s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for members in groups.values():
        r0 = members[0]
        cells = [
            r0["dataset"],
            r0["positive_class"]["name"],
            r0["mode"],
            Path(r0["init"]).name,
            r0["loss"],
            r0["stem"],
            f"{r0['label_fraction']:g}",
            ",".join(str(m["seed"]) for m in members),
        ]
        if split == "test":  # the model-selection score, next to what it selected
            cells.append(_mean_std([m["val"]["auroc"] for m in members]))
        cells += [_mean_std([m[split][k] for m in members]) for k in METRIC_KEYS]
        cells.append(str(r0["epochs"]))
        cells.append(f"{statistics.mean(m['train_time_s'] / m['epochs'] for m in members):.1f}")
        cells.append(f"{statistics.mean(m['train_time_s'] for m in members):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + external_table(runs)


def external_table(runs: list[dict]) -> str:
    """The external validations of `runs` (RUN/external/*), one row per run and set, next to
    the run's own test AUROC; empty when there are none."""
    rows = [(r, name, e) for r in runs for name, e in (r.get("external") or {}).items()]
    if not rows:
        return ""
    lines = [
        "",
        "",
        "External validation (`evaluate RUN --dataset`; the run's preprocessing, temperature "
        "and val-chosen thresholds):",
        "",
        "| run | external set | n | AUROC (95% CI) | own test AUROC | BalAcc | ECE → after T |",
        "|---|---|---|---|---|---|---|",
    ]
    for r, name, e in rows:
        lo, hi = e.get("ci95", {}).get("auroc", (float("nan"), float("nan")))
        ece = f"{e['calibration_before']['ece']:.3f} → {e['calibration_after']['ece']:.3f}"
        lines.append(
            f"| {r['run_dir']} | {name} | {e['n']} | {e['auroc']:.3f} ({lo:.3f}–{hi:.3f}) | "
            f"{r['test']['auroc']:.3f} | {e['balanced_accuracy']:.3f} | {ece} |"
        )
    return "\n".join(lines)


def format_metrics(m: dict) -> str:
    """A small table of a train run's val/test metrics with the positive class named."""
    pos = m["positive_class"]
    lines = [
        f"{m['dataset']}  positive class: label {pos['label']} ({pos['name']})  "
        f"best epoch {m['best_epoch']} (by val AUROC)",
        f"{'split':<6}{'n':>6}{'n_pos':>7}{'AUROC':>8}{'BalAcc':>8}{'Acc':>8}{'ECE':>8}",
    ]
    for s in ("val", "test"):
        r = m[s]
        lines.append(
            f"{s:<6}{r['n']:>6}{r['n_positive']:>7}{r['auroc']:>8.4f}"
            f"{r['balanced_accuracy']:>8.4f}{r['accuracy']:>8.4f}{r['ece']:>8.4f}"
        )
    return "\n".join(lines)
