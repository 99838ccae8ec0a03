"""`medssl` command line: a thin layer over the Python API; one subcommand per API function."""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from medssl import __version__
from medssl.errors import MedsslError

# (flag, config key, type, help). Defaults come from the config dataclass and are shown in help.
TRAIN_OPTIONS = [
    ("--dataset", "dataset", str, "breastmnist | pneumoniamnist"),
    (
        "--data-root",
        "data_root",
        str,
        "folder with the medmnist npz files (default: $MEDSSL_DATA_ROOT, else ~/.medmnist)",
    ),
    ("--out", "out", str, "run directory to create"),
    ("--mode", "mode", str, "all: fine-tune everything; head: frozen encoder and BN statistics"),
    (
        "--init",
        "init",
        str,
        "scratch | imagenet (torchvision weights from the torch cache or a download) | PATH: a "
        "torchvision ResNet-18 .pth or a medssl .safetensors encoder/classifier",
    ),
    ("--loss", "loss", str, "bce | weighted-bce (w_c = N / (2 N_c), proportional to 1/N_c)"),
    ("--lr", "lr", float, "peak learning rate"),
    ("--encoder-lr-scale", "encoder_lr_scale", float, "encoder LR = lr * this"),
    ("--weight-decay", "weight_decay", float, "lambda on conv/linear weights"),
    ("--decay", "decay", str, "decoupled (AdamW) | l2 (Adam, lambda/2 ||w||^2 added to the loss)"),
    ("--lr-schedule", "lr_schedule", str, "cosine | exp | constant (per epoch)"),
    ("--gamma", "gamma", float, "exp schedule factor: lr_t = lr * gamma^t"),
    ("--warmup-epochs", "warmup_epochs", int, "linear warm-up epochs"),
    ("--epochs", "epochs", int, "training epochs"),
    ("--batch-size", "batch_size", int, "training batch size"),
    ("--seed", "seed", int, "seed of init, shuffling, augmentation and label subsampling"),
    (
        "--label-fraction",
        "label_fraction",
        float,
        "stratified seeded fraction of the training labels to use, in (0, 1]",
    ),
    (
        "--positive-class",
        "positive_class",
        str,
        "label (0/1) or name counted as positive (default: malignant for BreastMNIST, pneumonia "
        "for PneumoniaMNIST)",
    ),
    ("--stem", "stem", str, "imagenet | cifar | compact (see docs/results.md)"),
    ("--size", "size", int, "official image size of the npz file: 28 | 64 | 128 | 224"),
    ("--resize", "resize", int, "resize images on the device to this many pixels"),
    ("--augment", "augment", str, "augmentation preset: none | light"),
    ("--precision", "precision", str, "fp32 | bf16 (autocast)"),
    ("--device", "device", str, "auto | cpu | cuda | cuda:N"),
    ("--eval-batch-size", "eval_batch_size", int, "batch size for evaluation"),
    ("--n-bins", "n_bins", int, "equal-width bins of the ECE"),
]


def _add_options(parser: argparse.ArgumentParser, options, defaults: dict) -> None:
    for flag, key, typ, text in options:
        shown = defaults.get(key)
        parser.add_argument(
            flag, dest=key, type=typ, default=argparse.SUPPRESS, help=f"{text} [default: {shown}]"
        )


def build_parser() -> argparse.ArgumentParser:
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
    _add_options(p, TRAIN_OPTIONS, TrainConfig().to_dict())
    p.add_argument("--config", help="YAML file of options (command-line options override it)")
    p.add_argument(
        "--download",
        action="store_true",
        default=argparse.SUPPRESS,
        help="download the dataset with medmnist if missing (needs network)",
    )
    p.add_argument(
        "--verify-md5",
        dest="verify_md5",
        action="store_true",
        default=argparse.SUPPRESS,
        help="check the npz file against the official MD5",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no progress bar",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    c = sub.add_parser(
        "compare",
        help="table of finished runs (mean ± std over seeds of one recipe)",
        description="Print a Markdown table of the metrics of finished run directories.",
    )
    c.add_argument("runs", nargs="+", help="run directories (holding metrics.json)")
    c.add_argument("--split", default="test", help="val | test [default: test]")
    c.add_argument("--per-run", action="store_true", help="one row per run, no aggregation")
    c.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return parser


def _train(args: argparse.Namespace) -> int:
    from medssl.rundir import read_yaml
    from medssl.train import TrainConfig, train

    opts = vars(args).copy()
    for key in ("command", "debug", "resume", "config"):
        opts.pop(key, None)
    merged = read_yaml(args.config) if args.config else {}
    merged.update(opts)
    cfg = TrainConfig.from_dict(merged)
    metrics = train(cfg, resume=args.resume)
    print(format_metrics(metrics))
    print(f"run directory: {cfg.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from medssl.report import compare_table, load_runs

    print(compare_table(load_runs(args.runs), args.split, by_seed=not args.per_run))
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


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "compare": _compare}[args.command](args)
    except MedsslError as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"medssl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medssl: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
