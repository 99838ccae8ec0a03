"""Start-up of a 1-epoch `medssl pretrain` / `medssl train`: where the time outside the epoch goes.

Each command runs as a whole process, `--repeats` times (interleaved), under
`python -X importtime` and an instrumented entry point (this script with `--child`) that calls
`medssl.cli.main` unchanged after wrapping the package's own functions with timers: option
parsing (`cli.parse`), the run folder (`rundir.claim`, `open_run`), data loading
(`load_splits` and its `read_arrays`, `_validate`, `to_split`), the model (`methods.build`,
`train.build_model`, `make_optimizer`), the epoch (`engine.run` and each training step),
monitors and evaluation (`monitor.knn_monitor`, `runtime.predict_logits`,
`metrics.binary_metrics`), tracking (`tracking.Tracker` and its methods) and saving
(safetensors, `last.pt`, history and JSON files, the `plots` figures). Nothing under src/ is
edited: the wrappers are installed by an import hook as each `medssl` module loads, and they are
matched by module name and function name, so the script works with the package's old
(`medssl.pretrain`) and new (`medssl.commands.pretrain`) layouts.

Every interval is split into its own time and the imports that ran inside it (top-level
`-X importtime` lines between the timers' markers), so a lazy import (TensorBoard in
`Tracker.__init__`, matplotlib in `plots`) is charged to "imports" and named where it happens.
"interpreter" is the launch up to this script's first line (Python + site); "exit" is the
command's return up to the process's end (interpreter teardown). Side by side, in the same run:
the same command as a plain `python -m medssl.cli` process (once, uninstrumented), the floors
with their teardown (`python -c pass`, `import torch`, `import torch, torchvision` with and
without `os._exit`, and lightly's stack: `+ lightly.loss, lightly.transforms`), the time to
compile medssl's own modules (paid by every process when no `__pycache__` can be read, e.g.
under PYTHONDONTWRITEBYTECODE=1 without cached `.pyc`), and whether `medssl --help`,
`medssl tune --help` and `medssl pretrain --help` import torch.

    python benchmarks/startup.py [--data-root DIR] [--repeats 3] [--commands pretrain,train]
        [--src DIR] [--no-compile] [--note TEXT]
    python benchmarks/startup.py --from-json benchmarks/results/startup-cpu.json  # re-render

`--src DIR` runs the package found in DIR (e.g. a `git archive` snapshot's src/) instead of the
installed one. By default medssl's modules are byte-compiled first (`compileall`), as an
installed package is. Writes benchmarks/results/startup-cpu.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

MARK = "@@startup"
DATA_ROOT = os.environ.get("MEDSSL_DATA_ROOT", "/work/shared/data/medmnist")
COMMANDS = {
    "pretrain": ["pretrain", "--method", "simclr", "--epochs", "1", "--dataset", "pneumoniamnist"],
    "train": ["train", "--epochs", "1", "--dataset", "breastmnist"],
}
WATCHED = (
    "torch",
    "torchvision",
    "tensorboard",
    "matplotlib",
    "PIL",
    "sklearn",
    "scipy",
    "optuna",
    "pydantic",
    "lightly",
    "safetensors",
    "yaml",
    "numpy",
    "tqdm",
    "mlflow",
)

DATA = "data|load|medmnist|splits"  # medssl.data, or its modules after the refactor

# Functions timed in the child: (last parts of the defining module's name, qualified name).
# Old and new layouts: medssl.pretrain / medssl.commands.pretrain, medssl.data /
# medssl.data.{load,medmnist,splits}, medssl.rundir / medssl.io.rundir, ...
TARGETS = [
    ("cli", "parse"),
    ("rundir", "claim"),
    ("rundir", "open_run"),
    ("rundir", "drop_resume_state"),
    ("tracking", "check_tracking"),
    ("tracking", "Tracker.__init__"),
    ("tracking", "Tracker.scalars"),
    ("tracking", "Tracker.images"),
    ("tracking", "Tracker.figure"),
    ("tracking", "Tracker.artifact"),
    ("tracking", "Tracker.close"),
    (DATA, "load_splits"),
    (DATA, "_validate"),
    (DATA, "to_split"),
    (DATA, "stratified_subset"),
    ("artifacts", "read_arrays"),
    ("artifacts", "write_json"),
    ("artifacts", "write_jsonl"),
    ("artifacts", "write_csv"),
    ("pretrain", "pretrain"),
    ("pretrain", "pretraining_images"),
    ("pretrain", "_loop"),
    ("pretrain", "save_encoder_and_heads"),
    ("pretrain|train", "make_optimizer"),
    ("pretrain|train", "_finish"),
    ("train", "train"),
    ("train", "build_model"),
    ("train", "_fit"),
    ("methods", "build"),
    ("models", "save_model"),
    ("models", "read_model"),
    ("monitor", "knn_monitor"),
    ("runtime", "predict_logits"),
    ("runtime", "extract_features"),
    ("metrics", "binary_metrics"),
    ("engine", "run"),
    ("engine", "save_checkpoint"),
    ("plots", "plot_pretrain_curves"),
    ("plots", "plot_learning_curves"),
    ("plots", "plot_reliability_diagram"),
    ("plots", "plot_roc_curves"),
]
CONTEXT_MANAGERS = {"open_run"}

# Where each timed function's own time goes; untimed code counts to the caller's category.
CATEGORY = {
    "parse": "option parsing",
    "claim": "run folder (claim, open, close)",
    "open_run": "run folder (claim, open, close)",
    "open_run (exit)": "run folder (claim, open, close)",
    "load_splits": "data (npz read, validation, to device)",
    "pretraining_images": "data (npz read, validation, to device)",
    "stratified_subset": "data (npz read, validation, to device)",
    "build": "model build (+ optimizer)",
    "build_model": "model build (+ optimizer)",
    "make_optimizer": "model build (+ optimizer)",
    "run": "epoch",
    "step": "epoch",
    "knn_monitor": "monitors / evaluation",
    "predict_logits": "monitors / evaluation",
    "extract_features": "monitors / evaluation",
    "binary_metrics": "monitors / evaluation",
    "check_tracking": "tracking (TensorBoard)",
    "Tracker.__init__": "tracking (TensorBoard)",
    "Tracker.scalars": "tracking (TensorBoard)",
    "Tracker.images": "tracking (TensorBoard)",
    "Tracker.figure": "tracking (TensorBoard)",
    "Tracker.artifact": "tracking (TensorBoard)",
    "Tracker.close": "tracking (TensorBoard)",
    "save_encoder_and_heads": "saving (safetensors, last.pt, json, figures)",
    "save_model": "saving (safetensors, last.pt, json, figures)",
    "read_model": "saving (safetensors, last.pt, json, figures)",
    "save_checkpoint": "saving (safetensors, last.pt, json, figures)",
    "write_json": "saving (safetensors, last.pt, json, figures)",
    "write_jsonl": "saving (safetensors, last.pt, json, figures)",
    "write_csv": "saving (safetensors, last.pt, json, figures)",
    "drop_resume_state": "saving (safetensors, last.pt, json, figures)",
    "_finish": "saving (safetensors, last.pt, json, figures)",
    "plot_pretrain_curves": "saving (safetensors, last.pt, json, figures)",
    "plot_learning_curves": "saving (safetensors, last.pt, json, figures)",
    "plot_reliability_diagram": "saving (safetensors, last.pt, json, figures)",
    "plot_roc_curves": "saving (safetensors, last.pt, json, figures)",
    "interpreter": "interpreter start-up",
    "exit": "exit (interpreter teardown)",
}
ORDER = [
    "interpreter start-up",
    "imports",
    "option parsing",
    "run folder (claim, open, close)",
    "data (npz read, validation, to device)",
    "model build (+ optimizer)",
    "epoch: training steps, steady state",
    "epoch: first-step warm-up",
    "epoch: loop other",
    "monitors / evaluation",
    "tracking (TensorBoard)",
    "saving (safetensors, last.pt, json, figures)",
    "other (glue: handler, command body)",
    "exit (interpreter teardown)",
]


# ---------------------------------------------------------------- the child: one timed process


def _mark(kind: str, label: str) -> None:
    # os.write: unbuffered, so the markers interleave with -X importtime's lines in order.
    os.write(2, f"{MARK} {kind} {time.perf_counter():.6f} {label}\n".encode())


def _timed(fn, label: str, cm: bool = False):
    import functools

    if cm:  # a context-manager factory: time its enter and its exit

        class Timed:
            def __init__(self, inner):
                self.inner = inner

            def __enter__(self):
                _mark("B", label)
                try:
                    return self.inner.__enter__()
                finally:
                    _mark("E", label)

            def __exit__(self, *exc):
                _mark("B", label + " (exit)")
                try:
                    return self.inner.__exit__(*exc)
                finally:
                    _mark("E", label + " (exit)")

        @functools.wraps(fn)
        def factory(*args, **kwargs):
            return Timed(fn(*args, **kwargs))

        factory._startup = True
        return factory

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if label == "run" and args and callable(getattr(args[0], "step", None)):
            loop = args[0]  # engine.run(loop, ...): time each training step too
            if not getattr(loop.step, "_startup", False):
                loop.step = _timed(loop.step, "step")
        _mark("B", label)
        try:
            return fn(*args, **kwargs)
        finally:
            _mark("E", label)

    wrapper._startup = True
    return wrapper


def _matches(obj, modules: str, qualname: str) -> bool:
    mod = getattr(obj, "__module__", None) or ""
    return (
        mod.startswith("medssl")
        and mod.rsplit(".", 1)[-1] in modules.split("|")
        and getattr(obj, "__qualname__", None) == qualname
    )


_WRAPPED: dict[int, object] = {}


def _patch_all() -> None:
    """Replace every target function, in every loaded medssl module's namespace that holds it
    (so `from x import f` bindings are covered), by its timed wrapper; methods on the class."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("medssl") or module is None:
            continue
        space = vars(module)
        for attr, obj in list(space.items()):
            if getattr(obj, "_startup", False):
                continue
            if isinstance(obj, type) and obj.__module__ == name:
                for modules, qual in TARGETS:
                    cls, _, meth = qual.partition(".")
                    if meth and cls == obj.__name__ and _matches(obj, modules, obj.__qualname__):
                        fn = obj.__dict__.get(meth)
                        if fn is not None and not getattr(fn, "_startup", False):
                            setattr(obj, meth, _timed(fn, qual))
                continue
            if not callable(obj):
                continue
            for modules, qual in TARGETS:
                if "." not in qual and _matches(obj, modules, qual):
                    if id(obj) not in _WRAPPED:
                        _WRAPPED[id(obj)] = _timed(obj, qual, qual in CONTEXT_MANAGERS)
                    space[attr] = _WRAPPED[id(obj)]
                    break


def _install_hook() -> None:
    import importlib.abc
    import importlib.machinery

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if not fullname.startswith("medssl"):
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return spec
            inner = spec.loader.exec_module

            def exec_module(module, inner=inner):
                inner(module)
                _patch_all()

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Hook())


def child(argv: list[str]) -> int:
    _mark("B", "main")
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path[0] = os.getcwd()  # as `python -m medssl.cli` would have it
    _install_hook()
    _mark("B", "import medssl.cli")
    import medssl
    import medssl.cli as cli

    _mark("E", "import medssl.cli")
    cli.HANDLERS = {k: _timed(v, "handler") for k, v in cli.HANDLERS.items()}
    os.write(2, f"{MARK} I 0 medssl {Path(medssl.__file__).parent}\n".encode())
    code = cli.main(argv)
    torch = sys.modules.get("torch")
    if torch is not None:
        os.write(2, f"{MARK} I 0 torch {torch.__version__} {torch.get_num_threads()}\n".encode())
    _mark("E", "main")
    return code


# ---------------------------------------------------------------- the parent: parse and report

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)\s*$")


class Node:
    def __init__(self, label: str, start: float, parent: Node | None = None):
        self.label, self.start, self.end, self.parent = label, start, start, parent
        self.children: list[Node] = []
        self.imports = 0.0  # seconds of top-level imports that ran directly in this node
        self.imported: list[str] = []

    @property
    def incl(self) -> float:
        return self.end - self.start

    @property
    def own(self) -> float:  # own time without children and without imports
        return self.incl - sum(c.incl for c in self.children) - self.imports

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()


def parse_child(stderr: str, t_launch: float, t_end: float) -> dict:
    """The child's markers and -X importtime lines -> a tree of timed nodes and import stats."""
    root = Node("process", t_launch)
    root.end = t_end
    interp = Node("interpreter", t_launch, root)
    root.children.append(interp)
    stack = [interp]
    info: dict[str, str] = {}
    packages: dict[str, dict] = {}
    last_end = t_launch
    for line in stderr.splitlines():
        if line.startswith(MARK):
            _, kind, t, label = line.split(" ", 3)
            t = float(t)
            if kind == "I":
                key, _, value = label.partition(" ")
                info[key] = value
            elif kind == "B":
                if stack[-1] is interp:
                    interp.end = t
                    stack.pop()
                    stack.append(root)
                node = Node(label, t, stack[-1])
                stack[-1].children.append(node)
                stack.append(node)
            elif kind == "E":
                node = stack.pop()
                assert node.label == label, (node.label, label)
                node.end = last_end = t
            continue
        m = IMPORT_LINE.match(line)
        if not m:
            continue
        self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]) // 2, m[4]
        where = stack[-1]
        top = name.split(".")[0]
        pkg = packages.setdefault(top, {"self_s": 0.0, "cum_s": 0.0, "where": None, "modules": 0})
        pkg["self_s"] += self_us / 1e6
        pkg["modules"] += 1
        if name == top:
            pkg["cum_s"] = max(pkg["cum_s"], cum_us / 1e6)
        if pkg["where"] is None:
            pkg["where"] = _path(where)
        if indent == 0:
            where.imports += cum_us / 1e6
            where.imported.append(name)
    exit_node = Node("exit", last_end, root)
    exit_node.end = t_end
    root.children.append(exit_node)
    return {"root": root, "info": info, "packages": packages}


def _path(node: Node) -> str:
    parts = []
    while node is not None and node.label != "process":
        parts.append(node.label)
        node = node.parent
    return " > ".join(reversed(parts)) or "process"


def _category(node: Node) -> str:
    while node is not None:
        if node.label in CATEGORY:
            return CATEGORY[node.label]
        node = node.parent
    return "other (glue: handler, command body)"


def breakdown(parsed: dict, total: float) -> dict:
    """Seconds per category (imports in their own row), the tree, the step timings."""
    root: Node = parsed["root"]
    cats = dict.fromkeys(ORDER, 0.0)
    pulled: dict[str, float] = {}
    for node in root.walk():
        if node is root:
            continue
        cat = _category(node)
        cats[cat] = cats.get(cat, 0.0) + node.own
        cats["imports"] += node.imports
        if node.imports:
            pulled[cat] = pulled.get(cat, 0.0) + node.imports
    # the epoch: steps measured start to start, less the timed calls inside them (tracker images)
    runs = [n for n in root.walk() if n.label == "run"]
    steps: list[float] = []
    first_step = last_step_end = None
    for run in runs:
        kids = run.children
        for i, c in enumerate(kids):
            if c.label != "step":
                continue
            nxt = kids[i + 1].start if i + 1 < len(kids) else run.end
            inner = sum(d.incl for d in c.children)
            steps.append(nxt - c.start - inner - c.imports)
            first_step = c.start if first_step is None else first_step
            last_step_end = nxt
    epoch_total = cats.pop("epoch", 0.0)
    warm = steps[0] - statistics.median(steps[1:]) if len(steps) > 1 else 0.0
    cats["epoch: first-step warm-up"] = warm
    cats["epoch: training steps, steady state"] = sum(steps) - warm
    cats["epoch: loop other"] = epoch_total - sum(steps)
    tree: dict[str, dict] = {}
    for node in root.walk():
        if node is root:
            continue
        row = tree.setdefault(
            _path(node), {"calls": 0, "incl_s": 0.0, "own_s": 0.0, "imports_s": 0.0, "imported": []}
        )
        row["calls"] += 1
        row["incl_s"] += node.incl
        row["own_s"] += node.own
        row["imports_s"] += node.imports
        row["imported"] += node.imported
    t0 = root.start
    return {
        "total_s": total,
        "categories": {k: cats.get(k, 0.0) for k in ORDER},
        "imports_pulled_in_by": pulled,
        "tree": tree,
        "steps": len(steps),
        "step_s": steps,
        "to_first_step_s": (first_step - t0) if first_step else None,
        "after_last_step_s": (root.end - last_step_end) if last_step_end else None,
    }


def _env(src: str | None) -> dict:
    env = dict(os.environ, LIGHTLY_DID_VERSION_CHECK="True")
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def _argv(name: str, data_root: str, out: Path) -> list[str]:
    return [*COMMANDS[name], "--data-root", data_root, "--device", "cpu", "--no-progress"] + [
        "--out",
        str(out),
    ]


def _epoch_time(out: Path) -> float | None:
    hist = out / "history.jsonl"
    if not hist.is_file():
        return None
    return sum(json.loads(line)["epoch_time_s"] for line in hist.read_text().splitlines() if line)


def run_instrumented(name: str, args, tmp: Path, i: int) -> dict:
    out = tmp / f"{name}-{i}"
    err_file = tmp / f"{name}-{i}.stderr"
    cmd = [sys.executable, "-X", "importtime", str(Path(__file__).resolve()), "--child", "--"]
    cmd += _argv(name, args.data_root, out)
    with open(err_file, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=_env(args.src), cwd=tmp
        )
        t1 = time.perf_counter()
    text = err_file.read_text()
    if proc.returncode != 0:
        tail = "\n".join(x for x in text.splitlines() if not x.startswith("import time"))[-2000:]
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{tail}")
    parsed = parse_child(text, t0, t1)
    result = breakdown(parsed, t1 - t0)
    result["epoch_time_s"] = _epoch_time(out)
    result["packages"] = {  # the JSON keeps the packages that count
        k: v for k, v in parsed["packages"].items() if v["self_s"] >= 0.005 or k in WATCHED
    }
    result["info"] = parsed["info"]
    result["medssl_modules"] = sorted(
        {m[4] for m in map(IMPORT_LINE.match, text.splitlines()) if m and m[4].startswith("medssl")}
    )
    return result


def run_plain(argv: list[str], env: dict, cwd: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr.decode()[-2000:]}")
    return wall


def help_imports(args, tmp: Path) -> list[dict]:
    rows = []
    for words in (["--help"], ["tune", "--help"], ["pretrain", "--help"]):
        cmd = [sys.executable, "-X", "importtime", "-m", "medssl.cli", *words]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(args.src), cwd=tmp)
        wall = time.perf_counter() - t0
        names = [m[4] for m in map(IMPORT_LINE.match, proc.stderr.splitlines()) if m]
        top = sum(
            int(m[2]) for m in map(IMPORT_LINE.match, proc.stderr.splitlines()) if m and not m[3]
        )
        heavy = sorted({n.split(".")[0] for n in names} & set(WATCHED))
        rows.append(
            {
                "command": "medssl " + " ".join(words),
                "wall_s": wall,
                "imports_s": top / 1e6,
                "imports_torch": "yes" if "torch" in names else "no",
                "heavy packages imported": ", ".join(heavy) or "-",
            }
        )
    return rows


def compile_time(package_dir: Path, modules: list[str]) -> tuple[float, int]:
    """Seconds to byte-compile medssl's imported modules (what a process pays without .pyc)."""
    total, n = 0.0, 0
    for mod in modules:
        rel = Path(*mod.split(".")[1:]) if "." in mod else Path()
        for path in (package_dir / rel / "__init__.py", (package_dir / rel).with_suffix(".py")):
            if path.is_file():
                src = path.read_text()
                t0 = time.perf_counter()
                compile(src, str(path), "exec", dont_inherit=True)
                total += time.perf_counter() - t0
                n += 1
                break
    return total, n


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def _md_table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            if isinstance(v, float):
                v = f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
            cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]


def category_rows(runs: list[dict]) -> list[dict]:
    total = statistics.median(r["total_s"] for r in runs)
    rows = []
    for cat in ORDER:
        vals = [r["categories"][cat] for r in runs]
        med = statistics.median(vals)
        pulled = statistics.median(r["imports_pulled_in_by"].get(cat, 0.0) for r in runs)
        rows.append(
            {
                "part": cat,
                "s (median)": med,
                "share": f"{100 * med / total:.1f}%",
                "min-max s": f"{min(vals):.2f}-{max(vals):.2f}",
                "imports pulled in here, s": pulled if pulled else "",
            }
        )
    rows.append({"part": "**whole process**", "s (median)": total, "share": "100%"})
    return rows


def _where(label: str, command: str) -> str:
    """`file.py:function` of a timed call (from TARGETS: the file's name in either layout)."""
    special = {
        "import medssl.cli": "cli.py (module import)",
        "handler": f"cli.py:_{command}",
        "interpreter": "python + site",
        "exit": "interpreter teardown",
    }
    if label in special:
        return special[label]
    for modules, qual in TARGETS:
        if qual == label or qual == label.removesuffix(" (exit)"):
            alts = modules.split("|")
            return f"{command if command in alts else alts[0]}.py:{label}"
    return label


def tree_rows(run: dict, min_s: float = 0.005) -> list[dict]:
    pk = run["packages"]
    rows = []
    for path, r in run["tree"].items():
        if r["incl_s"] < min_s and r["imports_s"] < min_s:
            continue
        depth = path.count(" > ")
        label, calls = path.rsplit(" > ", 1)[-1], r["calls"]
        via = [m for m in dict.fromkeys(r["imported"]) if m.startswith("medssl")]
        first = sorted((k for k in pk if pk[k]["where"] == path), key=lambda k: -pk[k]["self_s"])
        imports = ", ".join(
            f"{k} {pk[k]['self_s']:.2f}" for k in first[:5] if pk[k]["self_s"] > 0.01
        )
        rows.append(
            {
                "call": "&nbsp;" * 2 * depth + f"`{label}`" + (f" x{calls}" if calls > 1 else ""),
                "incl s": r["incl_s"],
                "own s": r["own_s"],
                "imports s": r["imports_s"] if r["imports_s"] >= 0.001 else "",
                "first imported here (own s)": imports
                + (f" (via {', '.join(via[:3])})" if via and imports else ""),
            }
        )
    return rows


# engine.run calls these after it has taken the epoch's time (`epoch_time_s`)
AFTER_EPOCH_TIME = {"save_checkpoint", "write_jsonl", "Tracker.scalars"}


def top_cost_rows(run: dict, command: str, n: int = 12) -> list[dict]:
    """The largest costs outside the steady training steps, own time + imports, median run."""
    outside = run["total_s"] - run["categories"]["epoch: training steps, steady state"]
    items = [
        (
            "first-step warm-up (step 0 beyond the median step)",
            "engine.py:run",
            True,
            run["categories"]["epoch: first-step warm-up"],
        ),
    ]
    for path, r in run["tree"].items():
        label = path.rsplit(" > ", 1)[-1]
        if label in ("main", "run", "step"):
            continue
        inside = " > run > " in path and label not in AFTER_EPOCH_TIME
        items.append((f"`{path}`", _where(label, command), inside, r["own_s"] + r["imports_s"]))
    items.sort(key=lambda x: -x[3])
    return [
        {
            "where (call path)": path,
            "file:function": f"`{where}`",
            "in epoch_time_s": "yes" if inside else "no",
            "s": s,
            "share of outside-steps time": f"{100 * s / outside:.0f}%",
        }
        for path, where, inside, s in items[:n]
    ]


def import_rows(run: dict, n: int = 15) -> list[dict]:
    pk = run["packages"]
    top = sorted(pk, key=lambda k: -pk[k]["self_s"])[:n]
    extra = [k for k in WATCHED if k not in top]
    rows = []
    for k in top + extra:
        p = pk.get(k)
        rows.append(
            {
                "package": k + ("" if k in top else " (watched)"),
                "own s (its modules)": p["self_s"] if p else "not imported",
                "`import PKG` cumulative s": p["cum_s"] if p and p["cum_s"] else "",
                "modules": p["modules"] if p else "",
                "first imported in": p["where"] if p else "",
            }
        )
    return rows


def run_floor(code: str, env: dict, cwd: Path) -> tuple[float, float]:
    """Wall time of `python -c code` and its teardown (from its last line to its end)."""
    last = "import time\nprint(time.perf_counter(), flush=True)"
    if code.endswith("os._exit(0)"):
        code, last = code.removesuffix("os._exit(0)"), last + "\nimport os\nos._exit(0)"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\n{last}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=True,
    )
    t1 = time.perf_counter()
    return t1 - t0, t1 - float(proc.stdout.split()[-1])


FLOORS = (
    ("python -c pass", "pass"),
    ("import torch", "import torch"),
    ("import torch, torchvision", "import torch, torchvision"),
    ("import torch, torchvision, then os._exit(0)", "import torch, torchvision\nos._exit(0)"),
    (
        "lightly's stack: + lightly.loss, lightly.transforms",
        "import torch, torchvision, lightly.loss, lightly.transforms",
    ),
)


def measure(args) -> dict:
    names = [n for n in args.commands.split(",") if n]
    load_before = os.getloadavg()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="medssl-startup-") as tmp_name:
        tmp = Path(tmp_name)
        env = _env(args.src)
        where = subprocess.run(
            [py, "-c", "import medssl, pathlib; print(pathlib.Path(medssl.__file__).parent)"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            check=True,
        ).stdout.strip()
        if args.compile:
            subprocess.run([py, "-m", "compileall", "-q", where], env=env, check=True)
        # warm the page cache of the big libraries (not timed)
        warm = "import torch, torchvision, matplotlib.figure, torch.utils.tensorboard"
        subprocess.run([py, "-c", warm], env=env, cwd=tmp, check=True)
        floors = []
        for label, code in FLOORS:
            times = [run_floor(code, env, tmp) for _ in range(args.floor_repeats)]
            floors.append(
                {
                    "process": label,
                    "wall s (median)": statistics.median(t[0] for t in times),
                    "of which teardown s": statistics.median(t[1] for t in times),
                }
            )
            print(_md_table(floors[-1:]), flush=True)
        helps = help_imports(args, tmp)
        print(_md_table(helps), flush=True)
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for i in range(args.repeats):
            for n in names:
                r = run_instrumented(n, args, tmp, i)
                runs[n].append(r)
                print(
                    f"{n} #{i}: {r['total_s']:.1f} s, epoch {r['epoch_time_s']:.1f} s, "
                    f"first step at {r['to_first_step_s']:.1f} s",
                    flush=True,
                )
        plain = {}
        for n in names:
            out = tmp / f"{n}-plain"
            wall = run_plain([py, "-m", "medssl.cli", *_argv(n, args.data_root, out)], env, tmp)
            plain[n] = {"wall_s": wall, "epoch_time_s": _epoch_time(out)}
            print(f"{n} plain: {wall:.1f} s", flush=True)
        compiled = {n: compile_time(Path(where), runs[n][0]["medssl_modules"]) for n in names}
    for rs in runs.values():
        for r in rs:
            r.pop("medssl_modules", None)
    info = runs[names[0]][0]["info"] if names else {}
    meta = {
        "date": str(date.today()),
        "machine": machine(),
        "torch": info.get("torch", "?"),
        "medssl": where,
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "repeats": args.repeats,
        "floor_repeats": args.floor_repeats,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
        "note": args.note,
    }
    summary = []
    for n in names:
        rs = runs[n]
        total = statistics.median(r["total_s"] for r in rs)
        epoch = statistics.median(r["epoch_time_s"] for r in rs)
        steps = statistics.median(
            r["categories"]["epoch: training steps, steady state"] for r in rs
        )
        summary.append(
            {
                "command": n,
                "whole process s": total,
                "epoch_time_s (history)": epoch,
                "outside epoch_time_s": total - epoch,
                "training steps s (steady)": steps,
                "outside the steady steps": total - steps,
                "launch to first step s": statistics.median(r["to_first_step_s"] for r in rs),
                "after last step s": statistics.median(r["after_last_step_s"] for r in rs),
                "plain process s (1 run)": plain[n]["wall_s"],
                "plain outside epoch s": plain[n]["wall_s"] - (plain[n]["epoch_time_s"] or 0.0),
                "medssl compile s (no .pyc)": compiled[n][0],
            }
        )
    return {"meta": meta, "summary": summary, "floors": floors, "help": helps, "runs": runs}


def render(data: dict) -> str:
    meta, summary, floors, runs = data["meta"], data["summary"], data["floors"], data["runs"]
    lightly = floors[-1]["wall s (median)"]
    shown = []
    for row in summary:
        shown.append(
            {
                **row,
                "command": f"`medssl {' '.join(COMMANDS[row['command']])}`",
                "outside steps / lightly's import floor": row["outside the steady steps"] / lightly,
            }
        )
    load = meta["load_average_before"][0], meta["load_average_after"][0]
    head = (
        "# Start-up: where a 1-epoch run's time outside its epoch goes\n\n"
        f"{meta['date']}, {meta['machine']}, torch {meta['torch']} (version, threads), Python "
        f"{meta['python']}; medssl from `{meta['medssl']}`"
        + (f" ({meta['note']})" if meta["note"] else "")
        + f"; load average {load[0]:.1f} before, {load[1]:.1f} after: other work shared the "
        "cores, so every second is inflated (the multi-threaded epoch more than the "
        "single-threaded start-up); compare the parts with each other and with the floors "
        f"measured in the same run. Median of {meta['repeats']} instrumented whole processes "
        "per command, interleaved; `python benchmarks/startup.py`.\n\n"
        "Rows: own time of each part without the imports that ran inside it; all import time "
        "is the `imports` row, and `imports pulled in here` says which part triggered it. "
        "`epoch_time_s` is the package's own figure (history.jsonl: the steps, then the kNN "
        "monitor or validation after the epoch and the encoder files); the steady state is "
        "the median step x steps, the warm-up what the first step took beyond it.\n\n"
    )
    parts = [head, "## Whole process\n\n", _md_table(shown), "\n\n", _md_table(floors)]
    parts += [
        f"\n\nFloors, median of {meta['floor_repeats']}: a bare interpreter, torch, torch + "
        "torchvision (with and without the interpreter's teardown), lightly's stack. Teardown: "
        "from the process's last line to its end.\n\n## `--help` imports\n\n",
        _md_table(data["help"]),
        "\n",
    ]
    for n, rs in runs.items():
        med = _median_run(rs)
        parts += [
            f"\n## `medssl {' '.join(COMMANDS[n])}`\n\n",
            _md_table(category_rows(rs)),
            f"\n\nLargest costs outside the steady training steps (median run, "
            f"{med['total_s'] - med['categories']['epoch: training steps, steady state']:.1f} s"
            "; own time + imports):\n\n",
            _md_table(top_cost_rows(med, n)),
            f"\n\nCalls of the median run ({med['total_s']:.1f} s; incl = with what it calls, "
            f"own = without timed callees and imports; {med['steps']} steps):\n\n",
            _md_table(tree_rows(med)),
            "\n\nTop 15 packages by import time (own time of their modules, median run; "
            "cumulative: the package's own `import` line with what it imports first):\n\n",
            _md_table(import_rows(med)),
            "\n",
        ]
    return "".join(parts)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=DATA_ROOT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--commands", default=",".join(COMMANDS))
    ap.add_argument("--src", default=None, help="run the medssl package found in this folder")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--floor-repeats", type=int, default=3)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--from-json", default=None, help="only re-render an earlier run's .json")
    args = ap.parse_args()
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
    else:
        data = measure(args)
    text = render(data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup-cpu.md").write_text(text)
    if not args.from_json:
        (out / "startup-cpu.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
