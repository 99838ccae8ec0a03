"""Behaviour-identity harness: same seed -> bit-identical files, whatever the module layout.

It proves that a change to medssl's code (a refactor that moves modules around) leaves the
behaviour of the CLI untouched: every weight, prediction and metric a fixed set of small seeded
runs writes is bit-identical to the baseline's, and run folders written by the baseline still
load, evaluate, predict and resume under the new code. It drives only the CLI
(`python -m medssl.cli ...` in a subprocess, with PYTHONPATH=SRC), so it works for any internal
layout, and checks before each `make`/`resume` that every imported medssl module comes from SRC.

    PY=.venv/bin/python
    $PY benchmarks/identity.py make SRC OUT [--data-root DIR] [--with-study]
    $PY benchmarks/identity.py compare A B [--diff-only] [--json REPORT.json]
    $PY benchmarks/identity.py resume BASE SRC OUT [--data-root DIR] [--no-load-checks]

make: a fixed list of small seeded CPU runs (RUNS below; BreastMNIST, plus one short
PneumoniaMNIST run) into OUT: `train` (default recipe, 3 epochs), `evaluate` and `predict` of
it, a head-only `train`, a PneumoniaMNIST `train` (imagenet stem, fp32), `pretrain` SimCLR and
BYOL (an EMA method), `probe` of the SimCLR encoder, a fine-tune from it, and two runs killed
with SIGKILL right after their first epoch's checkpoint (`train`, `pretrain --method byol`),
left interrupted for `resume`. OUT/commands.json records each command line, exit status and wall
time; OUT/logs/ holds each command's output. 8-9 minutes on a shared 2-core CPU (about 5 when
idle); --with-study adds `study --budget smoke` (about 6 more).

compare: every file of A against the same file of B: .safetensors and .pt tensor by tensor
(torch.equal; max |a - b| when not equal) plus their metadata, CSVs cell by cell, JSON / JSONL /
YAML leaf by leaf (numbers exactly, types included), TensorBoard events per (tag, step), text
and images byte for byte. Volatile values (times, durations, timestamps, pids, versions, run
states: VOLATILE_KEYS, VOLATILE_TAGS, TEXT_MASKS, INFO_FILES, IGNORED_FILES) are ignored and
listed; the OUT folders' absolute paths are written as <OUT> on both sides. Prints one row per
file (values: tensors, cells, leaves or events compared; the largest difference) and exits 0
only when every compared value is identical and no file is present on one side only.

resume: copies BASE's interrupted runs into OUT, continues them with PYTHONPATH=SRC (the same
command + --resume), checks that they continued from the checkpoint (the killed run's history
row of epoch 0, measured time included, is kept) and compares each with BASE's uninterrupted
run of the same options (ADDED_BY: what differs between two run folders by design). Then
(unless --no-load-checks) it checks that BASE's finished folders load under SRC: the same
`train` on a copy of a finished run is a no-op, `evaluate` and `predict` of the copy, and
`probe` and a fine-tune of BASE's SimCLR encoder reproduce BASE's files. About 4 minutes. OUT
can itself be `compare`d with the OUT of another `resume` (e.g. baseline code against new code).

Typical use (the baseline is a worktree of the commit before the change):

    $PY benchmarks/identity.py make /tmp/baseline/src /tmp/identity/base
    $PY benchmarks/identity.py make src /tmp/identity/new
    $PY benchmarks/identity.py compare /tmp/identity/base /tmp/identity/new
    $PY benchmarks/identity.py resume /tmp/identity/base src /tmp/identity/resume-new

Comparisons are meaningful on one machine (same CPU, thread count, torch build): CPU kernels
are deterministic for a given machine, not across machines.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA_ROOT = os.environ.get("MEDSSL_DATA_ROOT", "/work/shared/data/medmnist")
CLI = ("-m", "medssl.cli")


def _argv(line: str) -> tuple[str, ...]:
    """A command line after `medssl` as argv; {OUT} is the OUT folder, {DATA} the data root, and
    every command but evaluate and predict gets the common CPU options."""
    argv = tuple(shlex.split(line))
    if argv[0] in ("evaluate", "predict"):
        return argv
    return (*argv, "--data-root", "{DATA}", "--device", "cpu", "--no-progress")


@dataclass(frozen=True)
class Run:
    """One CLI command of `make`: `argv` after `python -m medssl.cli`, with {OUT} and {DATA}
    filled in. `interrupt`: SIGKILL it once its first epoch's checkpoint is on disk;
    `reference`: the uninterrupted run of the same options (its `resume` is compared to it)."""

    name: str
    argv: tuple[str, ...]
    interrupt: bool = False
    reference: str | None = None
    optional: bool = False


TRAIN = "train --dataset breastmnist --epochs 3 --seed 0"
BYOL = "pretrain --method byol --dataset breastmnist --epochs 2"
ENCODER = "{OUT}/pretrain-simclr/encoder.safetensors"
PREDICT = "{OUT}/inputs/test8.npy {OUT}/inputs/png --device cpu"

RUNS: tuple[Run, ...] = (
    # (a) supervised, default BreastMNIST recipe (compact stem, weighted BCE, light augmentation,
    # precision auto = bf16 on CPU), then evaluate (bootstrap, operating points, robustness) and
    # predict (npy + PNG folder, with evaluate's temperature and thresholds).
    Run("train", _argv(f"{TRAIN} --out {{OUT}}/train")),
    Run("train.evaluate", _argv("evaluate {OUT}/train")),
    Run("train.predict", _argv(f"predict {{OUT}}/train {PREDICT} --out {{OUT}}/predict/train.csv")),
    # head-only on cached features (logistic regression on a frozen random encoder); predict
    # without evaluate (the plain columns).
    Run(
        "train-head",
        _argv(
            "train --dataset breastmnist --epochs 5 --seed 0 --mode head --augment none --lr 0.01"
            " --out {OUT}/train-head"
        ),
    ),
    Run(
        "train-head.predict",
        _argv(f"predict {{OUT}}/train-head {PREDICT} --out {{OUT}}/predict/train-head.csv"),
    ),
    # PneumoniaMNIST: imagenet stem, its fp32 recipe; 5% of the labels, 1 epoch (~30 s).
    Run(
        "train-pneumonia",
        _argv(
            "train --dataset pneumoniamnist --stem imagenet --epochs 1 --label-fraction 0.05"
            " --seed 1 --out {OUT}/train-pneumonia"
        ),
    ),
    # (b), (c) self-supervised pretraining: SimCLR, and BYOL (EMA teacher, predictor head).
    Run(
        "pretrain-simclr",
        _argv(
            "pretrain --method simclr --dataset breastmnist --epochs 2 --out {OUT}/pretrain-simclr"
        ),
    ),
    Run("pretrain-byol", _argv(f"{BYOL} --out {{OUT}}/pretrain-byol")),
    # (d) linear probe of the SimCLR encoder at two fractions x two seeds (t-SNE map included),
    # and a low-label fine-tune from it.
    Run(
        "probe-simclr",
        _argv(
            f"probe --encoder {ENCODER} --dataset breastmnist --label-fractions 0.1,1 --seeds 0,1"
            " --out {OUT}/probe-simclr"
        ),
    ),
    Run(
        "finetune-simclr",
        _argv(
            f"train --init {ENCODER} --encoder-lr-scale 0.1 --label-fraction 0.2 --dataset"
            " breastmnist --epochs 2 --seed 2 --out {OUT}/finetune-simclr"
        ),
    ),
    # (e) killed after epoch 0 and left interrupted for `resume`; the options of the reference.
    Run("train-interrupted", _argv(f"{TRAIN} --out {{OUT}}/train-interrupted"), True, "train"),
    Run(
        "pretrain-byol-interrupted",
        _argv(f"{BYOL} --out {{OUT}}/pretrain-byol-interrupted"),
        True,
        "pretrain-byol",
    ),
    # (f) the whole study pipeline at its smoke budget: ~6 min on 2 cores, so only on request.
    Run(
        "study-smoke",
        _argv("study --budget smoke --dataset breastmnist --out {OUT}/study-smoke"),
        optional=True,
    ),
)

# ---- what `compare` ignores (found by reading the files these runs write) ----

# Keys ignored wherever they occur in JSON/JSONL/YAML files and safetensors metadata matching
# the pattern (fnmatch on the file's name): measured times, wall-clock stamps, pids, the medssl
# version and the run's recorded state (running/interrupted/finished and why).
VOLATILE_KEYS: dict[str, tuple[str, ...]] = {
    "*": ("epoch_time_s", "train_time_s", "feature_time_s", "probe_time_s", "wall_time_s"),
    "run.json": ("created", "updated", "time", "pid", "medssl", "state", "reason"),
    # commands.json (written by this script): timings, and where the code and python came from
    # (the module list is the layout, which may change); templates, argv and exit codes count.
    "commands.json": (
        "wall_s",
        "total_wall_s",
        "killed_after_s",
        "started",
        "python",
        "src",
        "medssl_modules",
        "medssl_import_failures",
        "host",
        "command",
    ),
}
# Resume checks compare two different run folders (a resumed run and the uninterrupted
# reference): each folder's own path is written as <RUN>; the files that later commands added to
# the reference (run.json records them: {"evaluate": {"files": [...]}}) and that record are
# ignored; TensorBoard events count once per (tag, step), the last one (a resumed run logs its
# config again at step 0).
ADDED_BY = ("evaluate",)
# TensorBoard scalars that are measured times.
VOLATILE_TAGS = ("time/epoch_s",)
# Text files: (file pattern, regex, replacement) applied before comparing.
TEXT_MASKS: tuple[tuple[str, str, str], ...] = (
    ("report.*", r"Wall time [0-9.]+ ?(?:s|min|h)\b", "Wall time <t>"),
)
# Files compared but never counted as a difference: the study's reports, rendered from
# summary.json (compared leaf by leaf) with measured times in their table cells and prose.
INFO_FILES = ("report.md", "report.html")
# Files never compared: the run lock (holds a pid), command logs (times and paths), editor junk.
IGNORED_FILES = (".lock", "logs/*", "*/.lock", ".DS_Store", "*/.DS_Store")


# ---------------------------------------------------------------------------------------------
# running the CLI


def _fill(argv: tuple[str, ...] | list[str], out: Path, data: str) -> list[str]:
    return [a.replace("{OUT}", str(out)).replace("{DATA}", data) for a in argv]


@dataclass(frozen=True)
class Code:
    """The medssl code a command runs: PYTHONPATH=src, this interpreter, this many CPU threads
    (OMP_NUM_THREADS / MKL_NUM_THREADS: CPU results are bit-identical for one thread count)."""

    src: Path
    python: str
    threads: int

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.src)
        env["PYTHONUNBUFFERED"] = "1"
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
        return env

    def command_line(self, argv: list[str]) -> str:
        env = [f"PYTHONPATH={self.src}", f"OMP_NUM_THREADS={self.threads}"]
        return shlex.join(
            ["env", *env, f"MKL_NUM_THREADS={self.threads}", self.python, *CLI, *argv]
        )


# Run in a child with the code's environment: import every medssl module (whatever the layout)
# and report where each came from, and what torch sees.
_PROBE = """
import importlib, json, pkgutil, sys
import medssl, medssl.cli, torch
failed = {}
for m in pkgutil.walk_packages(medssl.__path__, "medssl."):
    if m.name.endswith("__main__"):  # runs the CLI when imported
        continue
    try:
        importlib.import_module(m.name)
    except Exception as exc:  # an optional dependency (mlflow) that is not installed
        failed[m.name] = repr(exc)
files = {n: getattr(m, "__file__", None) for n, m in sorted(sys.modules.items())
         if n == "medssl" or n.startswith("medssl.")}
print(json.dumps({"files": files, "failed": failed, "torch": torch.__version__,
                  "threads": torch.get_num_threads()}))
"""


def check_source(code: Code) -> dict[str, Any]:
    """Import every medssl module with the code's environment; refuse unless each one comes from
    code.src. Returns {"modules": {module: file under src}, "torch", "threads", "failed"}."""
    proc = subprocess.run(
        [code.python, "-c", _PROBE], env=code.env(), capture_output=True, text=True, cwd="/"
    )
    if proc.returncode != 0:
        sys.exit(f"cannot import medssl from {code.src}:\n{proc.stderr}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    src = code.src.resolve()
    files = {n: f for n, f in found["files"].items() if f}
    foreign = {n: f for n, f in files.items() if not Path(f).resolve().is_relative_to(src)}
    if foreign or "medssl" not in files:
        sys.exit(f"PYTHONPATH={src} does not import medssl from {src}: {foreign or files}")
    modules = {n: Path(f).resolve().relative_to(src).as_posix() for n, f in files.items()}
    return {
        "modules": modules,
        "torch": found["torch"],
        "threads": found["threads"],
        "failed": found["failed"],
    }


def _history_rows(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line.strip())
    except OSError:
        return 0


def run_cli(
    code: Code, argv: list[str], log: Path, cwd: Path, interrupt_dir: Path | None = None
) -> dict[str, Any]:
    """Run `python -m medssl.cli argv` with the code's environment, output into `log`. With
    `interrupt_dir`, SIGKILL the process as soon as that run folder holds the first epoch's
    history row and its checkpoint (last.pt, written atomically right after the history)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(
            [code.python, *CLI, *argv],
            env=code.env(),
            cwd=cwd,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
        killed = None
        if interrupt_dir is not None:
            while proc.poll() is None:
                if (interrupt_dir / "last.pt").is_file() and _history_rows(
                    interrupt_dir / "history.jsonl"
                ) >= 1:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = time.perf_counter() - t0
                    break
                time.sleep(0.02)
        rc = proc.wait()
    result: dict[str, Any] = {"rc": rc, "wall_s": round(time.perf_counter() - t0, 2)}
    if interrupt_dir is not None:
        rows = _history_rows(interrupt_dir / "history.jsonl")
        result["interrupted"] = {
            "killed_after_s": None if killed is None else round(killed, 2),
            "history_rows": rows,
            "files": sorted(p.name for p in interrupt_dir.iterdir()),
        }
        if killed is None or rows != 1:
            result["error"] = (
                f"not killed right after epoch 0 (killed={killed is not None}, history rows "
                f"{rows}); see {log}; rerun"
            )
    elif rc != 0:
        result["error"] = f"exit status {rc}; see {log}"
    return result


def _header(code: Code, data: str, out: Path) -> dict[str, Any]:
    found = check_source(code)
    return {
        "src": str(code.src),
        "out": str(out),
        "python": code.python,
        "data_root": data,
        "threads": code.threads,
        "torch": found["torch"],
        "torch_threads": found["threads"],
        "medssl_modules": found["modules"],
        "medssl_import_failures": found["failed"],
        "host": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": [],
    }


def _new_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)


def _execute(
    record: dict,
    name: str,
    argv: list[str],
    out: Path,
    code: Code,
    interrupt_dir: Path | None = None,
    template: list[str] | None = None,
) -> dict:
    print(f"  {name:28s} ", end="", flush=True)
    res = run_cli(code, argv, out / "logs" / f"{name}.log", out, interrupt_dir)
    entry = {
        "name": name,
        "template": template,
        "argv": argv,
        "command": code.command_line(argv),
        **res,
    }
    record["runs"].append(entry)
    (out / "commands.json").write_text(json.dumps(record, indent=2) + "\n")
    state = (
        "killed after epoch 0"
        if interrupt_dir is not None and "error" not in res
        else ("ok" if "error" not in res else res["error"])
    )
    print(f"{res['wall_s']:7.1f} s  {state}", flush=True)
    if "error" in res:
        sys.exit(f"{name}: {res['error']}\n{entry['command']}")
    return entry


def _write_inputs(out: Path, data: str) -> None:
    """Test images to score with `predict`: 8 as a uint8 .npy array, 4 more as PNG files."""
    import numpy as np
    from PIL import Image

    images = np.load(Path(data) / "breastmnist.npz")["test_images"]
    (out / "inputs" / "png").mkdir(parents=True)
    np.save(out / "inputs" / "test8.npy", images[:8])
    for i in range(8, 12):
        Image.fromarray(images[i]).save(out / "inputs" / "png" / f"test_{i:03d}.png")
    (out / "predict").mkdir()


def make(code: Code, out: Path, data: str, with_study: bool = False) -> int:
    """Run RUNS with the code into `out` (new or empty). Returns the exit status."""
    out = out.resolve()
    _new_out(out)
    record = _header(code, data, out)
    print(
        f"make: medssl from {code.src} ({len(record['medssl_modules'])} modules, "
        f"{record['torch_threads']} threads) -> {out}"
    )
    _write_inputs(out, data)
    t0 = time.perf_counter()
    for run in RUNS:
        if run.optional and not with_study:
            continue
        argv = _fill(run.argv, out, data)
        target = out / run.name if run.interrupt else None
        _execute(record, run.name, argv, out, code, target, list(run.argv))
        if run.interrupt:
            record["runs"][-1]["reference"] = run.reference
    record["total_wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "commands.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"make: {len(record['runs'])} commands in {record['total_wall_s']:.0f} s; "
        f"{out / 'commands.json'}"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# comparing


@dataclass
class Row:
    """One compared file: how many values, how many differ, the largest difference."""

    path: str
    kind: str
    values: int = 0
    differing: int = 0
    max_diff: float = 0.0
    status: str = "identical"  # identical | DIFFERENT | only in A | only in B | info
    notes: list[str] = field(default_factory=list)
    ignored: set[str] = field(default_factory=set)

    def diff(self, where: str, a: Any, b: Any, delta: float | None = None) -> None:
        self.differing += 1
        self.status = "DIFFERENT"
        if delta is not None and not math.isnan(delta):
            self.max_diff = max(self.max_diff, delta)
        if len(self.notes) < 3:
            self.notes.append(f"{where}: {_short(a)} != {_short(b)}")


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


class Normaliser:
    """Writes folders as placeholders in strings (paths in configs and summaries): each side's
    OUT as <OUT> (and in resume checks each run folder as <RUN>), longest path first."""

    def __init__(self, roots: list[tuple[Path, str]]):
        names = {(str(p), tag) for r, tag in roots for p in (r, r.resolve())}
        self.rules = [
            (re.compile(re.escape(p) + r"(?![\w.-])"), tag)
            for p, tag in sorted(names, key=lambda x: len(x[0]), reverse=True)
        ]

    def __call__(self, s: str) -> str:
        for rx, tag in self.rules:
            s = rx.sub(tag, s)
        return s


def _volatile(rel: str, extra: dict[str, tuple[str, ...]]) -> set[str]:
    name = rel.rsplit("/", 1)[-1]
    keys: set[str] = set()
    for table in (VOLATILE_KEYS, extra):
        for pattern, ks in table.items():
            if fnmatch.fnmatch(name, pattern):
                keys |= set(ks)
    return keys


def _leaves(x: Any, volatile: set[str], ignored: set[str], prefix: str = "") -> Iterator[tuple]:
    if isinstance(x, dict):
        for k, v in x.items():
            if str(k) in volatile:
                ignored.add(str(k))
                continue
            yield from _leaves(v, volatile, ignored, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(x, list | tuple):
        if not x:
            yield prefix, ("empty", type(x).__name__)
        for i, v in enumerate(x):
            yield from _leaves(v, volatile, ignored, f"{prefix}[{i}]")
    else:
        yield prefix, x


def _compare_values(row: Row, where: str, a: Any, b: Any, norm: Normaliser) -> None:
    row.values += 1
    if isinstance(a, str) and isinstance(b, str):
        if norm(a) != norm(b):
            row.diff(where, a, b)
        return
    num = (int, float)
    if (
        isinstance(a, num)
        and isinstance(b, num)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        if type(a) is not type(b):
            row.diff(where + " (type)", a, b, abs(a - b))
        elif not (a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))):
            row.diff(where, a, b, abs(a - b))
        return
    if type(a) is not type(b) or a != b:
        row.diff(where, a, b)


def _compare_trees(
    row: Row, a: Any, b: Any, volatile: set[str], norm: Normaliser, prefix: str = ""
) -> None:
    la = dict(_leaves(a, volatile, row.ignored, prefix))
    lb = dict(_leaves(b, volatile, row.ignored, prefix))
    for k in sorted(la.keys() | lb.keys()):
        if k not in la or k not in lb:
            row.values += 1
            row.diff(k or "<root>", la.get(k, "<missing>"), lb.get(k, "<missing>"))
        else:
            _compare_values(row, k or "<root>", la[k], lb[k], norm)


def _compare_tensor(row: Row, where: str, a: Any, b: Any) -> None:
    import torch

    row.values += 1
    if a.dtype != b.dtype or a.shape != b.shape:
        row.diff(where, f"{a.dtype}{tuple(a.shape)}", f"{b.dtype}{tuple(b.shape)}")
        return
    if torch.equal(a, b):
        return
    unequal = a != b
    if a.dtype.is_floating_point:
        unequal &= ~(torch.isnan(a) & torch.isnan(b))
        if not bool(unequal.any()):
            return
        delta = float((a.double() - b.double()).abs().nan_to_num(math.inf).max())
    elif a.dtype == torch.bool:
        delta = float(unequal.sum())
    else:
        delta = float((a.long() - b.long()).abs().max())
    first = int(unequal.reshape(-1).nonzero()[0])
    x, y = a.reshape(-1)[first].item(), b.reshape(-1)[first].item()
    n = int(unequal.sum())
    row.diff(f"{where} ({n}/{a.numel()} elements differ; first, flat index {first})", x, y, delta)


def _safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _torch_leaves(x: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _torch_leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(x, list | tuple):
        for i, v in enumerate(x):
            yield from _torch_leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, x


def _compare_tensor_maps(row: Row, ta: dict, tb: dict, norm: Normaliser) -> None:
    import torch

    for k in sorted(ta.keys() | tb.keys()):
        if k not in ta or k not in tb:
            row.values += 1
            row.diff(
                k, "present" if k in ta else "<missing>", "present" if k in tb else "<missing>"
            )
        elif isinstance(ta[k], torch.Tensor) and isinstance(tb[k], torch.Tensor):
            _compare_tensor(row, k, ta[k], tb[k])
        else:
            _compare_values(row, k, ta[k], tb[k], norm)


def _read_events(folder: Path, norm: Normaliser, last: bool) -> dict[tuple[str, int], list]:
    """(tag, step) -> values of every TensorBoard event file in `folder` (wall times dropped;
    strings normalised)."""
    import numpy as np
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    events: dict[tuple[str, int], list] = {}
    for f in sorted(folder.glob("events.out.tfevents.*")):
        for e in EventFileLoader(str(f)).Load():
            if e.WhichOneof("what") != "summary":
                continue
            for v in e.summary.value:
                kind = v.WhichOneof("value")
                if kind == "tensor":
                    value = tensor_util.make_ndarray(v.tensor)
                    if value.dtype == object:  # text, or an image's (width, height, PNG)
                        value = tuple(_event_string(x, norm) for x in value.ravel())
                elif kind == "simple_value":
                    value = np.asarray(v.simple_value)
                else:
                    value = hashlib.sha256(getattr(v, kind).SerializeToString()).hexdigest()
                events.setdefault((v.tag, int(e.step)), []).append(value)
    return {k: v[-1:] for k, v in events.items()} if last else events


def _event_string(x: Any, norm: Normaliser) -> Any:
    if not isinstance(x, bytes):
        return x
    try:
        return norm(x.decode("utf-8"))
    except UnicodeDecodeError:
        return "sha256 " + hashlib.sha256(x).hexdigest()


def _compare_events(row: Row, a: Path, b: Path, norm: Normaliser, last: bool) -> None:
    import numpy as np
    import torch

    ea, eb = _read_events(a, norm, last), _read_events(b, norm, last)
    for key in sorted(ea.keys() | eb.keys()):
        tag, step = key
        if tag in VOLATILE_TAGS:
            row.ignored.add(tag)
            continue
        va, vb = ea.get(key, []), eb.get(key, [])
        where = f"{tag}@{step}"
        if len(va) != len(vb):
            row.values += 1
            row.diff(where + " (events)", len(va), len(vb))
            continue
        for x, y in zip(va, vb, strict=True):
            if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
                _compare_tensor(row, where, torch.from_numpy(x.copy()), torch.from_numpy(y.copy()))
            else:
                row.values += 1
                if x != y:
                    row.diff(where, x, y)


def _compare_csv(row: Row, a: Path, b: Path, norm: Normaliser) -> None:
    with a.open(newline="") as fa, b.open(newline="") as fb:
        ra, rb = list(csv.reader(fa)), list(csv.reader(fb))
    if len(ra) != len(rb):
        row.values += 1
        row.diff("rows", len(ra), len(rb))
    header = ra[0] if ra else []
    for i, (x, y) in enumerate(zip(ra, rb, strict=False)):
        if len(x) != len(y):
            row.values += 1
            row.diff(f"line {i + 1} (cells)", len(x), len(y))
        for j, (u, v) in enumerate(zip(x, y, strict=False)):
            row.values += 1
            if norm(u) == norm(v):
                continue
            col = header[j] if i and j < len(header) else str(j)
            try:
                delta = abs(float(u) - float(v))
            except ValueError:
                delta = None
            row.diff(f"line {i + 1} {col}", u, v, delta)


def _text(path: Path, rel: str, norm: Normaliser) -> str:
    s = norm(path.read_text(errors="replace"))
    name = rel.rsplit("/", 1)[-1]
    for pattern, rx, repl in TEXT_MASKS:
        if fnmatch.fnmatch(name, pattern):
            s = re.sub(rx, repl, s)
    return s


def _load_json_lines(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_file(rel: str, a: Path, b: Path, norm: Normaliser, run_copy: bool = False) -> Row:
    """Compare one file (or a TensorBoard folder) present on both sides; `run_copy`: the two
    sides are different run folders (resume checks: ADDED_BY)."""
    import torch
    import yaml

    volatile = _volatile(rel, {"run.json": ADDED_BY} if run_copy else {})
    last_events = run_copy
    suffix = a.suffix.lower() if a.is_file() else ""
    if a.is_dir():
        row = Row(rel + "/events.*", "tensorboard")
        try:
            _compare_events(row, a, b, norm, last_events)
        except ImportError:
            row.status, row.notes = "info", ["tensorboard not importable: not compared"]
        return row
    if suffix == ".safetensors":
        row = Row(rel, "safetensors")
        (ta, ma), (tb, mb) = _safetensors(a), _safetensors(b)
        _compare_tensor_maps(row, ta, tb, norm)
        _compare_trees(row, ma, mb, volatile, norm, "metadata")
    elif suffix == ".pt":
        row = Row(rel, "torch")
        la = dict(_torch_leaves(torch.load(a, map_location="cpu", weights_only=True)))
        lb = dict(_torch_leaves(torch.load(b, map_location="cpu", weights_only=True)))
        for k in [k for k in la.keys() | lb.keys() if k.split(".")[0] in volatile]:
            row.ignored.add(k.split(".")[0])
            la.pop(k, None), lb.pop(k, None)
        _compare_tensor_maps(row, la, lb, norm)
    elif suffix == ".json":
        row = Row(rel, "json")
        _compare_trees(row, json.loads(a.read_text()), json.loads(b.read_text()), volatile, norm)
    elif suffix == ".jsonl":
        row = Row(rel, "jsonl")
        _compare_trees(row, _load_json_lines(a), _load_json_lines(b), volatile, norm)
    elif suffix in (".yaml", ".yml"):
        row = Row(rel, "yaml")
        _compare_trees(
            row, yaml.safe_load(a.read_text()), yaml.safe_load(b.read_text()), volatile, norm
        )
    elif suffix == ".csv":
        row = Row(rel, "csv")
        _compare_csv(row, a, b, norm)
    elif suffix in (".md", ".txt", ".html", ".log"):
        row = Row(rel, "text", values=1)
        ta, tb = _text(a, rel, norm), _text(b, rel, norm)
        if ta != tb:
            line = next(
                (
                    i
                    for i, (x, y) in enumerate(zip(ta.splitlines(), tb.splitlines(), strict=False))
                    if x != y
                ),
                None,
            )
            row.diff(f"line {None if line is None else line + 1}", _line(ta, line), _line(tb, line))
    else:
        row = Row(rel, suffix.lstrip(".") or "bytes", values=1)
        if _sha(a) != _sha(b):
            row.diff("bytes", f"sha256 {_sha(a)[:12]}", f"sha256 {_sha(b)[:12]}")
    if row.differing and any(fnmatch.fnmatch(a.name, p) for p in INFO_FILES):
        row.status = "info"
        row.notes.insert(0, "differs; not counted (INFO_FILES: times in the text)")
    return row


def _line(text: str, i: int | None) -> str:
    lines = text.splitlines()
    return lines[i] if i is not None and i < len(lines) else f"<{len(lines)} lines>"


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _entries(root: Path) -> dict[str, Path]:
    """Relative path -> file, with each TensorBoard folder as one entry."""
    out: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(rel, pat) for pat in IGNORED_FILES):
            continue
        if p.is_file() and p.name.startswith("events.out.tfevents."):
            out[p.parent.relative_to(root).as_posix()] = p.parent
        elif p.is_file():
            out[rel] = p
    return out


def _added_files(run_dir: Path) -> set[str]:
    """Files that later commands (ADDED_BY) added to the run folder, as run.json records them."""
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return set()
    return {f for k in ADDED_BY for f in (record.get(k) or {}).get("files", [])}


def compare_dirs(
    a: Path, b: Path, roots: list[tuple[Path, str]] | None = None, run_copy: bool = False
) -> list[Row]:
    """Compare two folders file by file (see the module doc). `roots`: (folder, placeholder)
    written in strings instead of the folder (default: a and b as <OUT>); `run_copy`: a and b
    are two run folders (resume checks), each written as <RUN>, ADDED_BY files of A ignored."""
    if run_copy:
        roots = [(a, "<RUN>"), (b, "<RUN>"), *(roots or [])]
    norm = Normaliser(roots or [(a, "<OUT>"), (b, "<OUT>")])
    ea, eb = _entries(a), _entries(b)
    added = _added_files(a) - set(eb) if run_copy else set()
    rows = []
    for rel in sorted(ea.keys() | eb.keys()):
        if rel in added:
            continue
        if rel not in eb:
            rows.append(Row(rel, "file", status="only in A"))
        elif rel not in ea:
            rows.append(Row(rel, "file", status="only in B"))
        else:
            rows.append(compare_file(rel, ea[rel], eb[rel], norm, run_copy))
    if added:
        rows.append(
            Row(
                f"({len(added)} files added by {'/'.join(ADDED_BY)})",
                "ignored",
                status="info",
                notes=sorted(added),
            )
        )
    return rows


def print_rows(rows: list[Row], title: str, diff_only: bool = False) -> bool:
    """Print the table; True when everything compared is identical."""
    print(f"\n== {title}")
    print(f"{'status':10s} {'kind':12s} {'values':>8s} {'differ':>7s} {'max |diff|':>11s}  path")
    for r in rows:
        if diff_only and (r.status == "identical" or (r.status == "info" and not r.notes)):
            continue
        md = f"{r.max_diff:.3g}" if r.differing else "-"
        print(f"{r.status:10s} {r.kind:12s} {r.values:8d} {r.differing:7d} {md:>11s}  {r.path}")
        for n in r.notes:
            print(f"{'':42s}    {n}")
    ignored: dict[str, set[str]] = {}
    for r in rows:
        for k in r.ignored:
            ignored.setdefault(k, set()).add(r.path.rsplit("/", 1)[-1])
    if ignored:
        print(
            "ignored (volatile): "
            + "; ".join(
                f"{k} ({', '.join(sorted(v)[:4])}{', ...' if len(v) > 4 else ''})"
                for k, v in sorted(ignored.items())
            )
        )
    bad = [r for r in rows if r.status not in ("identical", "info")]
    n_values = sum(r.values for r in rows)
    verdict = "IDENTICAL" if not bad else f"{len(bad)} of {len(rows)} entries differ"
    print(f"{len(rows)} entries, {n_values} values compared: {verdict}")
    return not bad


def compare(a: Path, b: Path, diff_only: bool = False, report: Path | None = None) -> int:
    """`compare A B`: exit status 0 only when identical."""
    for p in (a, b):
        if not p.is_dir():
            sys.exit(f"{p}: not a folder")
    rows = compare_dirs(a.resolve(), b.resolve())
    ok = print_rows(rows, f"compare {a} (A) vs {b} (B)", diff_only)
    if report is not None:
        report.write_text(json.dumps([_row_dict(r) for r in rows], indent=2) + "\n")
    return 0 if ok else 1


def _row_dict(r: Row) -> dict:
    d = asdict(r)
    d["ignored"] = sorted(r.ignored)
    return d


# ---------------------------------------------------------------------------------------------
# resuming and loading baseline folders under SRC


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }


def resume(
    base: Path,
    code: Code,
    out: Path,
    data: str | None = None,
    load_checks: bool = True,
    diff_only: bool = False,
) -> int:
    """`resume BASE SRC OUT` (module doc). Exit status 0 only when every check is identical."""
    base, out = base.resolve(), out.resolve()
    made = json.loads((base / "commands.json").read_text())
    data = data or made["data_root"]
    by_name = {r["name"]: r for r in made["runs"]}
    _new_out(out)
    record = _header(code, data, out) | {"base": str(base)}
    print(
        f"resume: medssl from {code.src} ({len(record['medssl_modules'])} modules, "
        f"{record['torch_threads']} threads); baseline runs from {base} -> {out}"
    )
    if record["torch_threads"] != made.get("torch_threads"):
        print(f"warning: BASE ran with {made.get('torch_threads')} threads: results may differ")

    def again(name: str, extra: tuple[str, ...] = (), label: str | None = None) -> None:
        template = by_name[name]["template"]
        argv = [*_fill(template, out, data), *extra]
        _execute(record, label or name, argv, out, code, template=template)

    pairs: list[tuple[str, Path, Path, bool]] = []
    checks: list[tuple[str, bool]] = []
    for run in made["runs"]:
        if not run.get("interrupted"):
            continue
        name, ref = run["name"], run["reference"]
        shutil.copytree(base / name, out / name, symlinks=True)
        again(name, ("--resume",), f"{name}.resume")
        # A run that ignored last.pt and started over would also match the reference: the
        # killed run's history row of epoch 0 (with its measured epoch time) must be kept.
        kept = _load_json_lines(base / name / "history.jsonl")
        now = _load_json_lines(out / name / "history.jsonl")[: len(kept)]
        checks.append(
            (f"{name}: continued from its checkpoint (epoch 0 not run again)", now == kept)
        )
        title = f"{name} resumed under SRC vs {ref} uninterrupted (BASE)"
        pairs.append((title, base / ref, out / name, True))
    if load_checks:
        for folder in ("inputs", "train", "train-head", "pretrain-simclr"):
            shutil.copytree(base / folder, out / folder, symlinks=True)
        (out / "predict").mkdir()
        before = _snapshot(out / "train")
        again("train", label="train.again")
        after = _snapshot(out / "train")
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        checks.append(
            (
                "the same `train` on a copy of BASE's finished run: a no-op"
                + (f" (CHANGED: {', '.join(changed)})" if changed else ", no file changed"),
                not changed,
            )
        )
        for name in ("train.evaluate", "train.predict", "train-head.predict"):
            again(name)
        title = "evaluate under SRC of a copy of BASE's train run vs BASE"
        pairs.append((title, base / "train", out / "train", False))
        title = "predict under SRC with copies of BASE's train runs vs BASE"
        pairs.append((title, base / "predict", out / "predict", False))
        for name in ("probe-simclr", "finetune-simclr"):
            again(name)
            title = f"{name} of a copy of BASE's SimCLR encoder under SRC vs BASE"
            pairs.append((title, base / name, out / name, False))
    (out / "commands.json").write_text(json.dumps(record, indent=2) + "\n")
    results = []
    for title, a, b, run_copy in pairs:
        rows = compare_dirs(a, b, [(base, "<OUT>"), (out, "<OUT>")], run_copy)
        same = print_rows(rows, f"{title}\n   A = {a}\n   B = {b}", diff_only)
        results.append((title, same))
    print("\n== resume summary")
    for title, same in results + checks:
        print(f"{'identical' if same else 'DIFFERENT':10s} {title}")
    return 0 if all(same for _, same in results + checks) else 1


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module doc)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    def code_options(q: argparse.ArgumentParser, threads_default: int | None) -> None:
        q.add_argument("--python", default=sys.executable, help="interpreter (default: this one)")
        q.add_argument(
            "--threads",
            type=int,
            default=threads_default,
            help="CPU threads of every run (OMP/MKL_NUM_THREADS; default: "
            + ("2" if threads_default else "BASE's")
            + ")",
        )

    m = sub.add_parser("make", help="run the fixed seeded runs with PYTHONPATH=SRC into OUT")
    m.add_argument("src", type=Path, help="the folder holding the medssl package (PYTHONPATH)")
    m.add_argument("out", type=Path, help="a new or empty folder")
    m.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="the MedMNIST npz files")
    m.add_argument("--with-study", action="store_true", help="add `study --budget smoke` (~6 min)")
    code_options(m, 2)
    c = sub.add_parser("compare", help="compare two OUT folders file by file")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--diff-only", action="store_true", help="print only the rows that differ")
    c.add_argument("--json", type=Path, help="also write the rows as JSON")
    r = sub.add_parser("resume", help="resume BASE's interrupted runs with PYTHONPATH=SRC in OUT")
    r.add_argument("base", type=Path, help="an OUT folder of `make`")
    r.add_argument("src", type=Path, help="the folder holding the medssl package (PYTHONPATH)")
    r.add_argument("out", type=Path, help="a new or empty folder")
    r.add_argument("--data-root", default=None, help="default: the one BASE was made with")
    r.add_argument(
        "--no-load-checks",
        action="store_true",
        help="only the resumes (no evaluate/predict/probe/fine-tune of copies of BASE's runs)",
    )
    r.add_argument("--diff-only", action="store_true", help="print only the rows that differ")
    code_options(r, None)
    args = p.parse_args(argv)
    if args.cmd == "compare":
        return compare(args.a, args.b, args.diff_only, args.json)
    if args.cmd == "make":
        code = Code(args.src.resolve(), args.python, args.threads)
        return make(code, args.out, args.data_root, args.with_study)
    threads = args.threads
    if threads is None:
        threads = json.loads((args.base / "commands.json").read_text()).get("threads", 2)
    code = Code(args.src.resolve(), args.python, threads)
    return resume(
        args.base, code, args.out, args.data_root, not args.no_load_checks, args.diff_only
    )


if __name__ == "__main__":
    sys.exit(main())
