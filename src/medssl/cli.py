"""`medssl` command line: a thin layer over the Python API, one handler of a few lines each.

The parser is built from the option declarations in `medssl.options`; `--config FILE.yaml`
holds the same keys and goes through the same validation, and options given on the command line
override the file. Every refusal (argparse's own included) is one line on stderr and exit code 2;
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path

import yaml

from medssl import __version__
from medssl.errors import MedsslError
from medssl.io.artifacts import read_yaml
from medssl.options import COMMANDS, PATH_OPTIONS, Options, option_rows


class _Parser(argparse.ArgumentParser):
    """argparse whose refusals (unknown option, missing argument) are one MedsslError line."""

    def error(self, message: str):
        raise MedsslError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _plain(text: str) -> str:
    """Markdown of the declarations (`code`, \\|) as plain terminal text."""
    return text.replace("`", "").replace("\\|", "|")


def _add_command(sub, cls: type[Options]) -> None:
    p = sub.add_parser(cls.command, help=cls.summary, description=_plain(cls.description))
    for name, nargs in cls.positionals.items():
        p.add_argument(name, nargs=nargs, help=_plain(cls.model_fields[name].description or ""))
    for flag, shown, text in option_rows(cls):
        name = flag.split()[0].removeprefix("--").removeprefix("no-").replace("-", "_")
        help_text = _plain(text) + (f" [default: {_plain(shown)}]" if shown else "")
        if name == "config":
            p.add_argument("--config", metavar="FILE", help=help_text)
        elif name in cls.flags:
            p.add_argument(flag, dest=name, action="store_true", help=help_text)
        elif " " not in flag:  # a boolean option: --x sets it, --no-x clears it
            action = "store_false" if flag.startswith("--no-") else "store_true"
            p.add_argument(
                flag, dest=name, action=action, default=argparse.SUPPRESS, help=help_text
            )
        else:
            p.add_argument(
                flag.split()[0],
                dest=name,
                metavar=flag.split()[1],
                default=argparse.SUPPRESS,
                help=help_text,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="medssl",
        description="Label-efficient, calibrated classification of small medical images.",
    )
    parser.add_argument("--version", action="version", version=f"medssl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cls in COMMANDS.values():
        _add_command(sub, cls)
    return parser


def parse(argv: list[str]) -> tuple[argparse.Namespace, Options]:
    """The command's namespace (flags) and its validated options: the --config file's values,
    overridden by the command line's, checked with one set of types."""
    ns = build_parser().parse_args(argv)
    cls = COMMANDS[ns.command]
    given = {k: v for k, v in vars(ns).items() if k in cls.model_fields}
    from_file: dict = {}
    config = getattr(ns, "config", None)
    if config:
        raw = read_yaml(config)
        from_file = {k.replace("-", "_"): v for k, v in raw.items()}
        if len(from_file) < len(raw):
            twice = sorted(k for k in raw if k.replace("-", "_") in raw and "-" in k)
            raise MedsslError(f"{config}: {twice} and their underscore forms name the same options")
        named = from_file.pop("command", cls.command)
        if named != cls.command:
            raise MedsslError(f"{config} is a `{named}` config; run `medssl {named} --config ...`")

    def where(key: str) -> str:
        if key in from_file and key not in given:
            return f"{config}: {key}"
        return key if key in cls.positionals else "--" + key.replace("_", "-")

    return ns, cls.parse(from_file | given, where)


# ---- handlers: one per command, a few lines over medssl.commands ----
# Each imports its command when it runs: `medssl --help` and option errors stay free of torch.


def _train(o, ns) -> None:
    from medssl.commands.train import train  # lazy: --help stays fast
    from medssl.report.tables import format_metrics  # lazy: --help stays fast

    print(format_metrics(train(o, resume=ns.resume)))
    print(f"run folder: {o.out}")


def _pretrain(o, ns) -> None:
    from medssl.commands.pretrain import format_summary, pretrain  # lazy: --help stays fast

    summary = pretrain(o, resume=ns.resume)
    if summary:  # empty on the other processes of a torchrun launch
        print(format_summary(summary))


def _probe(o, ns) -> None:
    from medssl.commands.probe import probe  # lazy: --help stays fast

    print(probe(o, resume=ns.resume)["table_md"])


def _study(o, ns) -> None:
    from medssl.commands.study import run_study  # lazy: --help stays fast
    from medssl.report.study import headline  # lazy: --help stays fast

    run_study(o, resume=ns.resume)
    print(headline(o.out))


def _augment_preview(o, ns) -> None:
    from medssl.commands import augment_preview  # lazy: --help stays fast

    print(f"wrote {augment_preview.run(o)}")


def _data(o, ns) -> None:
    from medssl.commands import data  # lazy: --help stays fast

    data.run(o)


def _evaluate(o, ns) -> None:
    if o.dataset is not None:
        from medssl.commands.external import evaluate_external  # lazy: --help stays fast

        evaluate_external(
            o.run_dir, o.dataset, o.n_bootstrap, o.seed, o.target_sensitivity, o.target_fpr
        )
        return
    from medssl.commands.evaluate import evaluate_run  # lazy: --help stays fast

    evaluate_run(
        o.run_dir,
        o.n_bootstrap,
        o.seed,
        o.target_sensitivity,
        o.target_fpr,
        images=o.images,
        gallery_k=o.gallery_k,
    )
    print((Path(o.run_dir) / "evaluation.md").read_text(encoding="utf-8"))


def _predict(o, ns) -> None:
    from medssl.commands.predict import predict_run  # lazy: --help stays fast

    predict_run(o.run_dir, o.inputs, o.out, o.device)


def _compare(o, ns) -> None:
    from medssl.commands import compare  # lazy: --help stays fast

    print(compare.run(o))


def _completion(o, ns) -> None:
    import shtab  # only for this command

    parser = build_parser()
    for sp in parser._subparsers._group_actions[0].choices.values():  # type: ignore[union-attr]
        for action in sp._actions:
            if action.dest in PATH_OPTIONS:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
    print(shtab.complete(parser, shell=o.shell), end="")


def _tune(o, ns) -> None:
    from medssl.commands.tune import tune  # lazy: --help stays fast

    print(tune(o, resume=ns.resume)["table_md"])


def _resolve(o) -> None:
    """--print-config shows what would run: the checks that need files first (the stem an
    --init file brings, the positive class of a user's source)."""
    if o.command == "train":
        from medssl.commands.train import resolve  # lazy: --help stays fast

        resolve(o)
    elif o.command in ("probe", "study", "tune"):
        from medssl.commands.lifecycle import positive_label  # lazy: --help stays fast

        positive_label(o)


HANDLERS = {
    "study": _study,
    "tune": _tune,
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


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:  # --out a file, unwritable, disk full...
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 done, 2 bad input (one line on stderr), 130 Ctrl-C, 1 a bug.

    Library warnings are held back and shown after a command that succeeds (at once with
    --debug), so that a refusal stays one line.
    """
    os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in argv:
        return _run(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        code = _run(argv)
    if code == 0:
        for w in {str(w.message): w for w in caught}.values():
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return code


def _run(argv: list[str]) -> int:
    command = None
    try:
        ns, opts = parse(argv)
        command = ns.command
        if getattr(ns, "print_config", False):
            _resolve(opts)
            print(yaml.safe_dump(opts.saved_config(), sort_keys=False), end="")
            return 0
        HANDLERS[command](opts, ns)
        return 0
    except (MedsslError, OSError) as exc:
        if "--debug" in argv:
            traceback.print_exc()
        print(f"medssl: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = (
            "rerun with --resume to continue"
            if command in ("train", "pretrain", "study", "probe")
            else "nothing was changed"
        )
        print(f"medssl: interrupted; {hint}", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, the traceback on --debug
        if "--debug" in argv:
            traceback.print_exc()
        print(
            f"medssl: internal error: {type(exc).__name__}: {_one_line(exc)[:300]} (a medssl "
            f"bug: rerun with --debug and report the traceback)",
            file=sys.stderr,
        )
        return 1


def run() -> None:
    """The `medssl` console command: `main`, then a fast exit. Tearing down torch's and
    torchvision's modules takes 1-2 s of a short run (benchmarks/startup.py) and writes
    nothing: every file is closed by then. MLflow (which flushes at exit) and torchrun
    processes exit the ordinary way."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if "mlflow" in sys.modules or "WORLD_SIZE" in os.environ:
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    run()
