"""The study's plan: the budgets and the typed steps (family, method, label fraction, seed) a
study runs, each with its command's validated options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medssl import data as D
from medssl.data.sources import list_source
from medssl.io.rundir import MARKERS
from medssl.options import PretrainConfig, ProbeConfig, StudyConfig, TrainConfig

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
    common |= {"intensity": cfg.intensity, "window": cfg.window, "aspect": cfg.aspect}
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


def finished(step: Step, out: Path) -> bool:
    return (out / "runs" / step.name / MARKERS[step.kind]).is_file()


def step_configs(out: Path, steps: list[Step]) -> list:
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
