"""Method x label-fraction table: every SSL method, several pretraining seeds, linear probes.

For each method and pretraining seed: `medssl pretrain --method M --seed S` (finished runs are
skipped, interrupted ones resumed), then `medssl probe` of its encoder at the label fractions
(label-subset seeds 0,1,2; C chosen on validation AUROC). A cell is the mean over pretraining
seeds of each encoder's mean over label subsets, ± the std over pretraining seeds. The method
"chosen on validation" at a fraction is the one with the highest mean probe validation AUROC
there; its test AUROC is reported beside the best test AUROC (which is not a fair choice).

    python benchmarks/methods_table.py --dataset breastmnist --epochs 100 --seeds 0,1,2 \
        [--methods all] [--fractions 0.01,0.1,1] [--out runs/methods-table] [--data-root DIR]

Writes benchmarks/results/methods-table-<dataset>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from suite import machine  # noqa: E402

from medssl.catalog import METHOD_TITLES  # noqa: E402
from medssl.io.artifacts import read_csv  # noqa: E402

MEDSSL = [sys.executable, "-m", "medssl.cli"]


def _run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(MEDSSL + args, check=True)
    return time.perf_counter() - start


def pretrain_and_probe(a: argparse.Namespace, method: str, seed: int) -> dict:
    """One encoder: pretrain (skip if finished, resume if interrupted), then probe it."""
    tag = f"-{a.tag}" if a.tag else ""
    pre = Path(a.out) / a.dataset / f"{method}{tag}-s{seed}"
    probe = Path(a.out) / a.dataset / f"probe-{method}{tag}-s{seed}"
    common = ["--dataset", a.dataset, "--data-root", a.data_root, "--no-progress"]
    seconds = None
    if not (pre / "pretrain.json").is_file():
        resume = ["--resume"] if (pre / "run.json").is_file() else []
        args = ["pretrain", "--method", method, "--seed", str(seed), "--epochs", str(a.epochs)]
        pool = (["--unlabeled", a.unlabeled] if a.unlabeled else []) + a.extra.split()
        seconds = _run(args + ["--out", str(pre), "--knn-every", "0"] + common + pool + resume)
    if not (probe / "summary.json").is_file():
        resume = ["--resume"] if (probe / "run.json").is_file() else []
        args = ["probe", "--encoder", str(pre / "encoder.safetensors"), "--out", str(probe)]
        _run(
            args
            + ["--label-fractions", a.fractions, "--seeds", "0,1,2", "--no-embedding"]
            + common
            + resume
        )
    rows = read_csv(
        probe / "results.csv", {"label_fraction": float, "val_auroc": float, "test_auroc": float}
    )
    cells = {}
    for f in sorted({r["label_fraction"] for r in rows}):
        rs = [r for r in rows if r["label_fraction"] == f]
        cells[f] = {k: statistics.mean(r[k] for r in rs) for k in ("val_auroc", "test_auroc")}
    saved = json.loads((pre / "pretrain.json").read_text())
    return {"cells": cells, "pretrain_s": seconds or saved.get("train_time_s")}


def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def table(results: dict, fractions: list[float]) -> tuple[str, dict]:
    """Markdown table of test AUROC per method and fraction, and the validation choice."""
    head = "| method | " + " | ".join(f"{f:g} test AUROC" for f in fractions) + " |"
    lines = [head, "|---" * (len(fractions) + 1) + "|"]
    chosen = {}
    for m, per_seed in results.items():
        cells = []
        for f in fractions:
            cells.append(_ms([r["cells"][f]["test_auroc"] for r in per_seed.values()]))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for f in fractions:
        val = {
            m: statistics.mean(r["cells"][f]["val_auroc"] for r in ps.values())
            for m, ps in results.items()
        }
        test = {
            m: statistics.mean(r["cells"][f]["test_auroc"] for r in ps.values())
            for m, ps in results.items()
        }
        best = max(val, key=val.get)
        chosen[f] = {
            "method": best,
            "val_auroc": val[best],
            "test_auroc": test[best],
            "best_test_method": max(test, key=test.get),
            "best_test": max(test.values()),
        }
    return "\n".join(lines) + "\n", chosen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="breastmnist")
    p.add_argument(
        "--data-root", default=os.environ.get("MEDSSL_DATA_ROOT", "../shared/data/medmnist")
    )
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default="all")
    p.add_argument("--fractions", default="0.01,0.1,1")
    p.add_argument("--out", default="runs/methods-table")
    p.add_argument("--unlabeled", default=None, help="pretrain on these sources (see pretrain)")
    p.add_argument("--tag", default="", help="names the runs and result files of this pool")
    p.add_argument("--extra", default="", help="more pretrain options, e.g. '--warmup-epochs 1'")
    a = p.parse_args()
    methods = list(METHOD_TITLES) if a.methods == "all" else a.methods.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    fractions = [float(f) for f in a.fractions.split(",")]
    start = time.perf_counter()
    results = {m: {s: pretrain_and_probe(a, m, s) for s in seeds} for m in methods}
    md, chosen = table(results, fractions)
    cpu = machine(torch.device("cpu"))
    lines = [
        f"# SSL methods x label fractions, {a.dataset} ({date.today()}, {cpu})",
        "",
        f"`python benchmarks/methods_table.py --dataset {a.dataset} --epochs {a.epochs} "
        f"--seeds {a.seeds} --methods {a.methods} --fractions {a.fractions}"
        + (f" --unlabeled {a.unlabeled} --tag {a.tag}" if a.unlabeled else "")
        + (f" --extra '{a.extra}'" if a.extra else "")
        + "`",
        "",
        f"Linear probe test AUROC, mean ± std over pretraining seeds {a.seeds} (each: mean over "
        f"label subsets 0,1,2); {a.epochs} pretraining epochs, each method's default recipe.",
        "",
        md,
        "Chosen on validation (highest mean probe val AUROC):",
        "",
    ]
    for f, c in chosen.items():
        lines.append(
            f"- {f:g} of the labels: {c['method']} (val {c['val_auroc']:.3f}) -> test "
            f"{c['test_auroc']:.3f}; best test {c['best_test_method']} "
            f"{c['best_test']:.3f}"
        )
    pre_s = {
        m: statistics.mean(r["pretrain_s"] or 0 for r in ps.values()) for m, ps in results.items()
    }
    lines += [
        "",
        "Pretraining seconds per run: " + ", ".join(f"{m} {s:.0f}" for m, s in pre_s.items()),
        f"Total wall time of this invocation: {time.perf_counter() - start:.0f} s",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    res = Path(__file__).parent / "results"
    name = f"methods-table-{a.dataset}{'-' + a.tag if a.tag else ''}"
    (res / f"{name}.md").write_text(text)
    payload = {
        "args": vars(a),
        "results": {m: {str(s): r for s, r in ps.items()} for m, ps in results.items()},
        "chosen": {str(f): c for f, c in chosen.items()},
    }
    (res / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
