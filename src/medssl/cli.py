"""`medssl` command line: a thin layer over the Python API; one subcommand per API function.

Options map one-to-one to the fields of each command's config dataclass; `--config FILE.yaml`
holds the same keys, and options given on the command line override the file.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from dataclasses import fields

from medssl import __version__
from medssl.errors import MedsslError

# config key -> (type, help). Defaults come from each command's dataclass, shown in --help.
OPTIONS: dict[str, tuple[type, str]] = {
    "dataset": (str, "breastmnist | pneumoniamnist"),
    "data_root": (
        str,
        "folder with the medmnist npz files (default: $MEDSSL_DATA_ROOT, else ~/.medmnist)",
    ),
    "out": (str, "run directory to create"),
    "mode": (str, "all: fine-tune everything; head: frozen encoder and BN statistics"),
    "init": (
        str,
        "scratch | imagenet (torchvision weights from the torch cache or a download) | "
        "PATH: a torchvision ResNet-18 .pth or a medssl .safetensors encoder/classifier",
    ),
    "encoder": (
        str,
        "random | imagenet | PATH (medssl .safetensors encoder or classifier, or a "
        "torchvision .pth)",
    ),
    "loss": (str, "bce | weighted-bce (w_c = N / (2 N_c), proportional to 1/N_c)"),
    "lr": (float, "peak learning rate"),
    "encoder_lr_scale": (float, "encoder LR = lr * this (e.g. 0.1 from an SSL encoder)"),
    "weight_decay": (float, "lambda on conv/linear weights"),
    "decay": (str, "decoupled (AdamW) | l2 (Adam, lambda/2 ||w||^2 added to the loss)"),
    "lr_schedule": (str, "cosine | exp | constant (per epoch, after warm-up)"),
    "gamma": (float, "exp schedule factor: lr_t = lr * gamma^t"),
    "warmup_epochs": (int, "linear warm-up epochs"),
    "epochs": (
        int,
        "training epochs (train: None = the dataset's default, BreastMNIST 30, PneumoniaMNIST 10)",
    ),
    "batch_size": (int, "batch size (images per step)"),
    "seed": (int, "seed of init, shuffling, augmentation and label subsampling"),
    "label_fraction": (float, "stratified seeded fraction of the training labels, in (0, 1]"),
    "label_fractions": (str, "comma-separated label fractions"),
    "seeds": (str, "comma-separated seeds of the label subsets"),
    "c_grid": (str, "comma-separated inverse L2 strengths C tried, chosen on val AUROC"),
    "max_iter": (int, "max iterations of each logistic regression"),
    "positive_class": (
        str,
        "label (0/1) or name counted as positive (default: malignant for "
        "BreastMNIST, pneumonia for PneumoniaMNIST)",
    ),
    "stem": (
        str,
        "imagenet | compact | cifar (train: None = the dataset's default, BreastMNIST "
        "cifar, PneumoniaMNIST imagenet; see docs/results.md)",
    ),
    "size": (int, "official image size of the npz file: 28 | 64 | 128 | 224"),
    "resize": (int, "resize images on the device to this many pixels"),
    "augment": (str, "augmentation preset: none | light | simclr-xray | simclr-ultrasound"),
    "precision": (str, "auto (bf16 where the hardware has it) | fp32 | bf16"),
    "device": (str, "auto | cpu | cuda | cuda:N"),
    "eval_batch_size": (int, "batch size for evaluation and feature extraction"),
    "n_bins": (int, "equal-width bins of the ECE"),
    "temperature": (float, "NT-Xent temperature tau > 0"),
    "proj_dims": (str, "projection MLP sizes d,hidden...,k (d = 512)"),
    "knn_k": (int, "neighbours of the kNN monitor"),
    "knn_every": (int, "epochs between kNN monitor evaluations (0: never)"),
    "knn_labels": (
        int,
        "labelled training images in the few-label kNN monitor's bank (stratified, mean of 3 "
        "subsets; 0: off)",
    ),
    "mlflow": (
        str,
        "also log to MLflow: a tracking URI, or a folder for a local file store "
        "(pip install 'medssl[mlflow]')",
    ),
    "budget": (str, "quick | standard | full | smoke (see docs/commands/study.md)"),
}

TRAIN_KEYS = [
    "dataset",
    "data_root",
    "out",
    "mode",
    "init",
    "loss",
    "lr",
    "encoder_lr_scale",
    "weight_decay",
    "decay",
    "lr_schedule",
    "gamma",
    "warmup_epochs",
    "epochs",
    "batch_size",
    "seed",
    "label_fraction",
    "positive_class",
    "stem",
    "size",
    "resize",
    "augment",
    "precision",
    "device",
    "eval_batch_size",
    "n_bins",
    "mlflow",
]
PRETRAIN_KEYS = [
    "dataset",
    "data_root",
    "out",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "temperature",
    "lr_schedule",
    "gamma",
    "warmup_epochs",
    "stem",
    "proj_dims",
    "augment",
    "seed",
    "size",
    "resize",
    "precision",
    "device",
    "knn_k",
    "knn_every",
    "knn_labels",
    "eval_batch_size",
    "mlflow",
]
PROBE_KEYS = [
    "encoder",
    "dataset",
    "data_root",
    "out",
    "label_fractions",
    "seeds",
    "c_grid",
    "max_iter",
    "stem",
    "positive_class",
    "size",
    "resize",
    "precision",
    "device",
    "eval_batch_size",
    "n_bins",
]
STUDY_KEYS = ["dataset", "data_root", "out", "budget", "device", "mlflow"]


def _add_options(
    parser: argparse.ArgumentParser, keys: list[str], defaults: dict, tracking: bool = False
) -> None:
    for key in keys:
        typ, text = OPTIONS[key]
        parser.add_argument(
            "--" + key.replace("_", "-"),
            dest=key,
            type=typ,
            default=argparse.SUPPRESS,
            help=f"{text} [default: {defaults[key]}]",
        )
    parser.add_argument("--config", help="YAML file of options (command-line options override)")
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no progress bar",
    )
    if tracking:
        parser.add_argument(
            "--no-tensorboard",
            dest="tensorboard",
            action="store_false",
            default=argparse.SUPPRESS,
            help="write no TensorBoard events (default: RUN_DIR/tensorboard)",
        )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the fully resolved options as YAML and exit (runs nothing)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--download",
        action="store_true",
        default=argparse.SUPPRESS,
        help="download the dataset with medmnist if missing (needs network)",
    )
    parser.add_argument(
        "--verify-md5",
        dest="verify_md5",
        action="store_true",
        default=argparse.SUPPRESS,
        help="check the npz file against the official MD5",
    )


def build_parser() -> argparse.ArgumentParser:
    from medssl.pretrain import PretrainConfig
    from medssl.probe import ProbeConfig
    from medssl.study import StudyConfig
    from medssl.train import TrainConfig

    parser = argparse.ArgumentParser(
        prog="medssl", description="Label-efficient, calibrated classification of MedMNIST images."
    )
    parser.add_argument("--version", action="version", version=f"medssl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "train",
        help="fine-tune a ResNet-18 classifier (head-only or all layers)",
        description="Fine-tune a ResNet-18 on a binary MedMNIST dataset; choose the model on "
        "validation AUROC; write config, history, checkpoint, metrics, predictions "
        "and plots to --out.",
    )
    _add_options(
        p,
        TRAIN_KEYS,
        TrainConfig().to_dict() | {"epochs": "per dataset", "stem": "per dataset"},
        tracking=True,
    )
    _add_data_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")

    p = sub.add_parser(
        "pretrain",
        help="SimCLR self-supervised pretraining (NT-Xent) on unlabeled images",
        description="SimCLR pretraining of the ResNet-18 encoder on the training images (labels "
        "unused) with a projection MLP and NT-Xent; a kNN monitor on validation "
        "shows progress. Writes encoder.safetensors for `medssl train --init` and "
        "`medssl probe --encoder`. Multi-GPU/-node: launch with torchrun.",
    )
    _add_options(
        p, PRETRAIN_KEYS, PretrainConfig().to_dict() | {"augment": "by modality"}, tracking=True
    )
    _add_data_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")

    p = sub.add_parser(
        "probe",
        help="linear probes on frozen features at several label fractions",
        description="Extract frozen features once, then fit L2 logistic regressions on "
        "stratified label subsets (C chosen on validation AUROC) and report test "
        "AUROC, balanced accuracy and ECE, mean ± std over seeds.",
    )
    _add_options(p, PROBE_KEYS, ProbeConfig().to_dict(), tracking=True)

    p = sub.add_parser(
        "augment-preview",
        help="save a grid of augmented views of real images",
        description="Draw views of training images with an augmentation preset and save them "
        "as a PNG grid, to see what the family does.",
    )
    p.add_argument("--dataset", default="breastmnist", help="[default: breastmnist]")
    p.add_argument("--data-root", default=None, help="as for train")
    p.add_argument("--augment", default=None, help="preset [default: the modality's SimCLR one]")
    p.add_argument("--images", type=int, default=6, help="images (rows) [default: 6]")
    p.add_argument("--views", type=int, default=7, help="views per image [default: 7]")
    p.add_argument("--seed", type=int, default=0, help="[default: 0]")
    p.add_argument(
        "--out", default="augment_preview.png", help="PNG path [default: augment_preview.png]"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    st = sub.add_parser(
        "study",
        help="the whole comparison on one dataset, resumable, with an HTML report",
        description="Supervised head-only / fine-tune-all / weighted BCE, SimCLR pretraining, "
        "SSL and random-encoder probes and SSL / scratch fine-tuning at the label "
        "fractions, evaluation of the best models; writes report.html (self-"
        "contained), report.md and summary.json. Rerun the same command to resume. "
        "Budgets: quick (minutes on a 2-core CPU, 1 seed, fractions 0.1 and 1), "
        "standard (3 seeds, 5 fractions, default recipes), full.",
    )
    _add_options(st, STUDY_KEYS, StudyConfig().to_dict())

    d = sub.add_parser(
        "data",
        help="list datasets, verify local files, download, export sample PNGs",
        description="List the supported datasets with label meanings and the default positive "
        "class; with their files present, check the official MD5 and show the class "
        "balance per split. --download fetches missing files through medmnist "
        "(needs network); --export-samples DIR writes a few PNGs per class.",
    )
    d.add_argument("--dataset", default=None, help="one dataset [default: all]")
    d.add_argument("--data-root", default=None, help="as for train")
    d.add_argument("--size", type=int, default=28, help="[default: 28]")
    d.add_argument("--download", action="store_true", help="download missing files")
    d.add_argument("--export-samples", default=None, help="folder for sample PNGs")
    d.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    e = sub.add_parser(
        "evaluate",
        help="calibration, CIs and operating points of a finished classifier run",
        description="Temperature scaling fitted on validation (ECE equal-width and equal-mass, "
        "NLL, Brier before/after), AUROC and average precision with seeded bootstrap "
        "95% CIs, and operating points chosen on validation, reported on test. "
        "Writes evaluation.json, evaluation.md, reliability_temperature.png, pr.png.",
    )
    e.add_argument("run_dir", help="a finished `medssl train` run directory")
    e.add_argument("--n-bootstrap", type=int, default=1000, help="resamples [default: 1000]")
    e.add_argument("--seed", type=int, default=0, help="bootstrap seed [default: 0]")
    e.add_argument("--target-sensitivity", type=float, default=0.9, help="[default: 0.9]")
    e.add_argument("--target-fpr", type=float, default=0.1, help="[default: 0.1]")
    e.add_argument(
        "--no-images",
        dest="images",
        action="store_false",
        help="skip the error gallery and robustness suite (predictions.csv only)",
    )
    e.add_argument(
        "--gallery-k",
        type=int,
        default=6,
        help="false positives and false negatives shown [default: 6]",
    )
    e.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    pr = sub.add_parser(
        "predict",
        help="score new images with a trained classifier run",
        description="Apply a finished `medssl train` run's best model to new images: image "
        "files (PNG, JPEG, BMP, TIFF), folders of them, .npy arrays or .npz files "
        "(FILE.npz:KEY picks an array, e.g. pneumoniamnist.npz:test_images). Images are read "
        "in the classifier's channels and resized (bicubic) to the run's size. Writes a CSV "
        "with the logit and probability of the positive class per image; after `medssl "
        "evaluate`, also the temperature-scaled probability and the decision at each operating "
        "point chosen on validation.",
    )
    pr.add_argument("run_dir", help="a finished `medssl train` run directory")
    pr.add_argument("inputs", nargs="+", help="image files, folders, .npy or .npz[:KEY] files")
    pr.add_argument(
        "--out", default="predictions-new.csv", help="CSV to write [default: %(default)s]"
    )
    pr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [default: auto]")
    pr.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    c = sub.add_parser(
        "compare",
        help="table of finished runs (mean ± std over seeds of one recipe)",
        description="Print a Markdown table of the metrics of finished run directories.",
    )
    c.add_argument("runs", nargs="+", help="run directories (holding metrics.json)")
    c.add_argument("--split", default="test", help="val | test [default: test]")
    c.add_argument("--per-run", action="store_true", help="one row per run, no aggregation")
    c.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    sc = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or tcsh)",
        description="Print a completion script for medssl's commands and options, made by "
        "shtab from this parser. bash: `medssl completion bash > "
        "~/.local/share/bash-completion/completions/medssl`; zsh: `medssl completion zsh > "
        '"${fpath[1]}/_medssl"`.',
    )
    sc.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell")
    for name in ("augment-preview", "data", "evaluate", "predict", "compare"):
        sub.choices[name].add_argument(
            "--config", help="YAML file of these options (command-line options override)"
        )
    for sp in sub.choices.values():
        for opt in ("config", "data_root", "out", "init", "encoder"):
            _mark_path(sp, opt)
    return parser


def _mark_path(parser: argparse.ArgumentParser, dest: str) -> None:
    """Let shell completion offer file names for a path option."""
    import shtab

    for action in parser._actions:
        if action.dest == dest:
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise AssertionError("parser without subcommands")


# The options a --config file may hold: the command's config dataclass fields when it has one.
def _config_keys(command: str, sub: argparse.ArgumentParser) -> set[str]:
    from medssl.pretrain import PretrainConfig
    from medssl.probe import ProbeConfig
    from medssl.study import StudyConfig
    from medssl.train import TrainConfig

    classes = {
        "train": TrainConfig,
        "pretrain": PretrainConfig,
        "probe": ProbeConfig,
        "study": StudyConfig,
    }
    if command in classes:
        return {f.name for f in fields(classes[command])}
    return {a.dest for a in sub._actions} - {"help", "config", "debug"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; a --config file supplies defaults the command line overrides."""
    from medssl.rundir import read_yaml

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        sub = _subparser(parser, args.command)
        file_opts = {k.replace("-", "_"): v for k, v in read_yaml(args.config).items()}
        command = file_opts.pop("command", args.command)
        if command != args.command:
            raise MedsslError(
                f"{args.config} is a `{command}` config; run `medssl {command} --config ...`"
            )
        unknown = set(file_opts) - _config_keys(args.command, sub)
        if unknown:
            raise MedsslError(f"{args.config}: unknown {args.command} options {sorted(unknown)}")
        sub.set_defaults(**file_opts)
        args = parser.parse_args(argv)
    return args


def _options(args: argparse.Namespace) -> dict:
    """The command's options (from --config and the command line, already merged)."""
    opts = vars(args).copy()
    for key in ("command", "debug", "resume", "config", "print_config"):
        opts.pop(key, None)
    return opts


def _print_config(args: argparse.Namespace, cfg) -> bool:
    """With --print-config, print the resolved options as YAML (a valid --config file)."""
    if getattr(args, "print_config", False):
        import yaml

        print(yaml.safe_dump({"command": args.command} | cfg.to_dict(), sort_keys=False), end="")
        return True
    return False


def _train(args: argparse.Namespace) -> int:
    from medssl.train import TrainConfig, train

    cfg = TrainConfig.from_dict(_options(args))
    if _print_config(args, cfg):
        return 0
    metrics = train(cfg, resume=args.resume)
    print(format_metrics(metrics))
    print(f"run directory: {cfg.out}")
    return 0


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _pretrain(args: argparse.Namespace) -> int:
    from medssl.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig.from_dict(_options(args))
    if _print_config(args, cfg):
        return 0
    s = pretrain(cfg, resume=args.resume)
    if s:
        print(
            f"SimCLR {s['dataset']}: loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}; "
            f"kNN val AUROC {_fmt(s.get('knn_val_auroc_init'))} (init) -> "
            f"{_fmt(s['knn_val_auroc_first'])} (first check) -> {_fmt(s['knn_val_auroc_last'])}"
            + (
                f"; with {s['knn_few_labels']} labels "
                f"{_fmt(s.get('knn_few_val_auroc_init'))} -> {_fmt(s['knn_few_val_auroc_last'])}"
                if s.get("knn_few_labels")
                else ""
            )
            + f"; {s['train_time_s']:.0f} s\nencoder: {s['encoder']}"
        )
    return 0


def _probe(args: argparse.Namespace) -> int:
    from medssl.probe import ProbeConfig, probe

    cfg = ProbeConfig.from_dict(_options(args))
    if _print_config(args, cfg):
        return 0
    summary = probe(cfg)
    print(summary["table_md"])
    return 0


def _augment_preview(args: argparse.Namespace) -> int:
    import torch

    from medssl import data as D
    from medssl import plots
    from medssl.augment import MODALITY_PRESETS, augment, preset, to_float

    info = D.dataset_info(args.dataset)
    name = args.augment or MODALITY_PRESETS[info.modality]
    cfg = preset(name)
    if args.images < 1 or args.views < 1:
        raise MedsslError("--images and --views must be >= 1")
    train = D.load_splits(args.dataset, args.data_root)["train"]
    gen = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(train), generator=gen)[: args.images]
    x = to_float(train.images[idx])
    views = augment(x.repeat_interleave(args.views, 0), cfg, gen)
    views = views.view(args.images, args.views, *x.shape[-2:]).numpy()
    path = plots.plot_augmentation_grid(
        x[:, 0].numpy(), views, args.out, title=f"{args.dataset}: preset {name}"
    )
    print(f"wrote {path}")
    return 0


def _study(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medssl.study import StudyConfig, run_study

    cfg = StudyConfig.from_dict(_options(args))
    if _print_config(args, cfg):
        return 0
    run_study(cfg)
    print((Path(cfg.out) / "report.md").read_text().split("## Self-supervised")[0])
    print(f"report: {Path(cfg.out) / 'report.html'}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medssl import data as D

    names = [args.dataset] if args.dataset else sorted(D.DATASETS)
    if args.size not in D.SIZES:
        raise MedsslError(f"--size must be one of {D.SIZES}, got {args.size}")
    missing, bad_md5 = [], []
    for name in names:
        D.dataset_info(name)
        if args.download:
            D.load_arrays(name, args.data_root, size=args.size, download=True)
        s = D.dataset_summary(name, args.data_root, args.size)
        labels = ", ".join(f"{k} = {v}" for k, v in s["labels"].items())
        pos = s["default_positive"]
        print(
            f"{name} ({s['modality']}): labels {labels}; default positive: label "
            f"{pos['label']} ({pos['name']})"
        )
        if not s["present"]:
            missing.append(s["file"])
            print(f"  {s['file']}: missing")
            continue
        print(f"  {s['file']}: MD5 {'matches the official release' if s['md5_ok'] else 'DIFFERS'}")
        if not s["md5_ok"]:
            bad_md5.append(s["file"])
        for split, c in s["splits"].items():
            counts = f"label 0: {c['label_0']:>5}  label 1: {c['label_1']:>5}"
            print(f"  {split:<5} n={c['n']:>5}  {counts}")
        if args.export_samples:
            import numpy as np
            from PIL import Image

            out = Path(args.export_samples)
            out.mkdir(parents=True, exist_ok=True)
            images, labels_ = D.load_arrays(name, args.data_root, size=args.size)["train"]
            for label in (0, 1):
                for i in np.flatnonzero(labels_ == label)[:4]:
                    Image.fromarray(images[i]).save(out / f"{name}_label{label}_{i}.png")
            print(f"  sample PNGs in {out}")
    if missing:
        from medmnist import INFO

        key = "url" if args.size == 28 else f"url_{args.size}"
        urls = [INFO[n][key].split("?")[0] for n in names if any(n in m for m in missing)]
        raise MedsslError(
            f"{len(missing)} file(s) missing; run `medssl data --download` online, "
            f"or download {' '.join(urls)} into --data-root (or $MEDSSL_DATA_ROOT)"
        )
    if bad_md5:
        raise MedsslError(
            f"{' '.join(map(str, bad_md5))}: MD5 differs from the official release; "
            f"download the file again"
        )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medssl.evaluate import evaluate_run

    if args.n_bootstrap < 1 or not 0 < args.target_sensitivity <= 1 or not 0 <= args.target_fpr < 1:
        raise MedsslError(
            "--n-bootstrap >= 1, --target-sensitivity in (0, 1], --target-fpr in [0, 1) please"
        )
    evaluate_run(
        args.run_dir,
        args.n_bootstrap,
        args.seed,
        args.target_sensitivity,
        args.target_fpr,
        images=args.images,
        gallery_k=args.gallery_k,
    )
    print((Path(args.run_dir) / "evaluation.md").read_text())
    return 0


def _predict(args: argparse.Namespace) -> int:
    import json
    from collections import Counter
    from pathlib import Path

    from medssl.predict import predict_run

    rows = predict_run(args.run_dir, args.inputs, args.out, args.device)
    rules = [k for k in rows[0] if k.startswith("decision_")]
    metrics = json.loads((Path(args.run_dir) / "metrics.json").read_text())
    pos = metrics["positive_class"]
    print(
        f"{len(rows)} images scored by {args.run_dir} (positive class: label {pos['label']}, "
        f"{pos['name']}); wrote {args.out}"
    )
    for rule in rules:
        counts = Counter(r[rule] for r in rows)
        called = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        print(f"  {rule.removeprefix('decision_'):<22} {called}")
    if "probability_calibrated" not in rows[0]:
        print(
            "  (run `medssl evaluate` on the run for calibrated probabilities and operating points)"
        )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from medssl.report import compare_table, load_runs

    print(compare_table(load_runs(args.runs), args.split, by_seed=not args.per_run))
    return 0


def _completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell), end="")
    return 0


def format_metrics(m: dict) -> str:
    """A small table of val/test metrics with the positive class named."""
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


COMMANDS = {
    "study": _study,
    "data": _data,
    "train": _train,
    "pretrain": _pretrain,
    "probe": _probe,
    "augment-preview": _augment_preview,
    "evaluate": _evaluate,
    "predict": _predict,
    "compare": _compare,
    "completion": _completion,
}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")
    try:
        args = parse_args(argv)
        return COMMANDS[args.command](args)
    except (MedsslError, OSError) as exc:  # OSError: --out a file, unwritable, disk full...
        if "--debug" in (sys.argv[1:] if argv is None else argv):
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.strerror:
            exc = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
        print(f"medssl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = {
            "train": "rerun with --resume to continue",
            "pretrain": "rerun with --resume to continue",
            "study": "rerun the same command to continue",
        }.get(args.command if "args" in locals() else "", "nothing was marked finished")
        print(f"medssl: interrupted; {hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
