"""The adversarial suite: bad input over every command, against real runs on the official data.

Each case runs `medssl` (in process, `cli.main`) in a scratch working folder next to a world of
real run folders (a finished train run, an evaluated one, a pretrain and a probe run, an
interrupted train run, an interrupted study, a run of the previous version, damaged copies of
them, a folder of foreign files) and asserts: exit code 2, exactly one line on stderr starting
`medssl: error:` with the expected reason, no traceback, and every file of the world (the
scratch folder included) byte-identical before and after: nothing written, nothing changed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from medssl import cli
from medssl.errors import MedsslError

QUIET = lambda *a, **k: None  # noqa: E731


def _png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (a decompression bomb's few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _bad_target(csv_text: str) -> bytes:
    """predictions.csv with the first row's target replaced by a word."""
    lines = csv_text.splitlines()
    cells = lines[1].split(",")
    cells[lines[0].split(",").index("target")] = "yes"
    return "\n".join([lines[0], ",".join(cells), *lines[2:]]).encode() + b"\n"


def _link_copy(src: Path, dst: Path) -> Path:
    """A copy of a run folder whose files are hard links (cheap); damage files by replacing them."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def _replace(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)  # never write through a hard link into the original
    path.write_bytes(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory, data_root):
    """Real runs and damaged copies; returns the placeholders the cases use."""
    from medssl.commands import train as T
    from medssl.commands.evaluate import evaluate_run
    from medssl.commands.pretrain import pretrain
    from medssl.commands.probe import probe
    from medssl.commands.study import run_study
    from medssl.models import Classifier, Encoder, ProjectionHead, metadata, save_model
    from medssl.options import PretrainConfig, ProbeConfig, StudyConfig, TrainConfig

    root = tmp_path_factory.mktemp("world")
    runs, bad = root / "runs", root / "bad"
    bad.mkdir()
    common = dict(data_root=str(data_root), progress=False)
    base = dict(common, dataset="breastmnist", stem="imagenet", epochs=1)
    T.train(TrainConfig(**base, out=str(runs / "train")), log=QUIET)
    evaluate_run(_link_copy(runs / "train", runs / "evaluated"), n_boot=20, images=False)
    pretrain(PretrainConfig(**common, out=str(runs / "pretrain"), epochs=1, knn_every=0), log=QUIET)
    probe(
        ProbeConfig(
            **common, out=str(runs / "probe"), label_fractions="1", seeds="0", embedding=False
        ),
        log=QUIET,
    )
    from medssl import engine as E

    real_lr = E.lr_factor

    def stop_at_1(epoch, cfg):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_lr(epoch, cfg)

    with pytest.MonkeyPatch.context() as mp:  # interrupted after epoch 0's checkpoint
        mp.setattr(E, "lr_factor", stop_at_1)
        with pytest.raises(KeyboardInterrupt):
            T.train(TrainConfig(**{**base, "epochs": 3}, out=str(runs / "interrupted")), log=QUIET)
        mp.setattr(T, "train", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_study(StudyConfig(**common, budget="smoke", out=str(runs / "study")), log=QUIET)
    legacy = _link_copy(runs / "train", runs / "legacy")  # a run made before run.json existed
    (legacy / "run.json").unlink()

    # Damaged copies of the finished run (for evaluate / predict / compare).
    t = runs / "train"
    enc, cifar = Encoder("imagenet"), Classifier("cifar")
    tampered = {
        "t-keys": ("best.safetensors", None),
        "t-shapes": ("best.safetensors", None),
        "t-dataset": ("best.safetensors", None),
        "t-corrupt-model": ("best.safetensors", b"\x00" * 64),
        "t-trunc-model": ("best.safetensors", (t / "best.safetensors").read_bytes()[:5000]),
        "t-pred-trunc": ("predictions.csv", (t / "predictions.csv").read_bytes()[:3000]),
        "t-pred-value": ("predictions.csv", _bad_target((t / "predictions.csv").read_text())),
        "t-pred-column": ("predictions.csv", b"split,index,label\nval,0,1\n"),
        "t-pred-logit": (
            "predictions.csv",
            (t / "predictions.csv").read_bytes().replace(b"\n", b"\nval,9999,1,1,nan,0.5\n", 1),
        ),
        "t-metrics": ("metrics.json", b'{"dataset": "breastmnist"'),
        "t-metrics-type": (
            "metrics.json",
            (t / "metrics.json").read_bytes().replace(b'"epochs": 1', b'"epochs": "one"'),
        ),
        "t-config": ("config.yaml", b"command: train\nepochs: [\n"),
        "t-config-key": ("config.yaml", (t / "config.yaml").read_bytes() + b"colour: blue\n"),
        "t-config-utf8": ("config.yaml", b"command: train\ndataset: \xff\xfe\n"),
        "t-runjson": ("run.json", b"{not json"),
        "t-runjson-cmd": ("run.json", b'{"command": "rm -rf"}'),
        "t-eval": ("evaluation.json", b"[1, 2, 3]"),
        "t-eval-temp": ("evaluation.json", b'{"temperature": -1, "operating_points": {}}'),
        "t-runjson-list": ("run.json", b'{"command": ["train"]}'),
        "t-metrics-empty": ("metrics.json", b'{"val": {}, "test": {}}'),
        "t-metrics-name": (
            "metrics.json",
            (t / "metrics.json").read_bytes().replace(b'"name": "malignant"', b'"name": 5'),
        ),
        "t-eval-folder": ("evaluation.md", None),
    }
    for name, (file, data) in tampered.items():
        src = runs / "evaluated" if file == "evaluation.json" else t
        run = _link_copy(src, runs / name)
        (run / file).unlink(missing_ok=True)
        if name == "t-keys":
            save_model(
                enc,
                run / file,
                metadata("classifier", enc, dataset="breastmnist", positive_label=0),
            )
        elif name == "t-shapes":
            save_model(
                cifar,
                run / file,
                metadata("classifier", cifar.encoder, dataset="breastmnist", positive_label=0),
            )
            (run / file).rename(run / "x")  # cifar weights, but metadata claiming the imagenet stem
            from safetensors.torch import load_file, save_file

            meta = metadata("classifier", enc, dataset="breastmnist", positive_label=0)
            save_file(load_file(str(run / "x")), str(run / file), metadata=meta)
            (run / "x").unlink()
        elif name == "t-eval-folder":
            (run / file).mkdir()  # an output name that is a folder
        elif name == "t-dataset":
            m = Classifier("imagenet")
            save_model(
                m,
                run / file,
                metadata("classifier", m.encoder, dataset="pneumoniamnist", positive_label=1),
            )
        else:
            _replace(run / file, data)

    # Damaged copies of the interrupted run (for --resume).
    i = runs / "interrupted"
    head = ProjectionHead()
    resumes = {
        "i-corrupt": ("last.pt", b"PK\x03\x04 not really"),
        "i-trunc": ("last.pt", (i / "last.pt").read_bytes()[:20000]),
        "i-history": ("history.jsonl", b'{"epoch": 0\n'),
        "i-history-short": ("history.jsonl", b""),
        "i-history-empty-row": ("history.jsonl", b"{}\n"),
        "i-history-nan": (
            "history.jsonl",
            (i / "history.jsonl")
            .read_bytes()
            .replace(b'"val_auroc": ', b'"val_auroc": NaN, "x": '),
        ),
        "i-tensorboard-file": ("tensorboard", b"not a folder"),
        "i-no-best": ("best.safetensors", None),
    }
    for name, (file, data) in resumes.items():
        run = _link_copy(i, runs / name)
        if (run / file).is_dir():
            shutil.rmtree(run / file)
        if data is None:
            (run / file).unlink()
        else:
            _replace(run / file, data)
    state = torch.load(i / "last.pt", weights_only=True)
    state["best_auroc"] = "high"
    run = _link_copy(i, runs / "i-best-text")
    (run / "last.pt").unlink()
    torch.save(state, run / "last.pt")
    # finished runs whose finish marker is damaged (the no-op must not crash)
    for name, src, file, data in (
        ("p-marker", "pretrain", "pretrain.json", b'{"x": 1}'),
        ("pr-marker", "probe", "summary.json", b'{"table": []}'),
    ):
        _replace(_link_copy(runs / src, runs / name) / file, data)
    s = _link_copy(runs / "study", runs / "s-walltime")
    _replace(s / "study.json", b'{"wall_time_s": "abc"}')
    s = _link_copy(runs / "study", runs / "s-step")
    (s / "runs" / "sup-all-wbce-s0").mkdir(parents=True, exist_ok=True)
    (s / "runs" / "sup-all-wbce-s0" / "run.json").write_text('{"command": "pretrain"}')
    (root / "only-user-tmp").mkdir()
    (root / "only-user-tmp" / ".notes.tmp").write_text("mine")
    (root / "loop").symlink_to(root / "loop")
    torch.save({"a": 1}, bad / "foreign.pt")
    torch.save({"conv1.weight": 5}, bad / "conv1int.pth")
    torch.save({"conv1.weight": torch.zeros(64)}, bad / "conv1flat.pth")
    from PIL import Image

    Image.new("L", (10, 10)).save(bad / "holiday.png")
    torch.save(
        {
            "model": head.state_dict(),
            "optimizer": {},
            "epoch": 0,
            "best_auroc": 0.5,
            "best_epoch": 0,
            "generator": torch.zeros(3),
            "torch_rng": torch.zeros(3),
            "history_len": 1,
        },
        bad / "other-model.pt",
    )
    for name, src in (("i-foreign", "foreign.pt"), ("i-other-model", "other-model.pt")):
        shutil.copy(bad / src, _link_copy(i, runs / name) / "x")
        (runs / name / "last.pt").unlink()
        (runs / name / "x").rename(runs / name / "last.pt")

    class Evil:  # a pickle payload that would create a file if it ever ran
        def __reduce__(self):
            return (os.system, (f"touch {root / 'pwned'}",))

    import pickle

    (bad / "evil.pt").write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
    shutil.copy(bad / "evil.pt", _link_copy(i, runs / "i-pickle") / "x")
    (runs / "i-pickle" / "last.pt").unlink()
    (runs / "i-pickle" / "x").rename(runs / "i-pickle" / "last.pt")

    # Bad files of every kind.
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("my notes\n")
    (root / "afile.txt").write_text("x\n")
    (root / "empty").mkdir()
    (bad / "noimages").mkdir()
    (bad / "noimages" / "readme.txt").write_text("x")
    (bad / "text.png").write_text("not an image")
    (bad / "bomb.png").write_bytes(_png(30000, 30000))
    (bad / "big.png").write_bytes(_png(10000, 10000))
    (bad / "trunc.png").write_bytes(_png(28, 28)[:40])
    np.save(bad / "zero.npy", np.zeros((0, 28, 28), np.uint8))
    np.save(bad / "float.npy", np.zeros((2, 28, 28), np.float32))
    np.save(bad / "vector.npy", np.zeros(28, np.uint8))
    np.savez(
        bad / "two.npz",
        a_images=np.zeros((1, 28, 28), np.uint8),
        b_images=np.zeros((1, 28, 28), np.uint8),
    )
    (bad / "corrupt.npz").write_bytes(b"PK\x03\x04 nothing")
    (bad / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    (bad / "text.pth").write_text("not torch")
    save_model(head, bad / "head.safetensors", metadata("projection_head", enc))
    save_model(Encoder("cifar"), bad / "cifar.safetensors", metadata("encoder", Encoder("cifar")))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(bad / "plain.safetensors"))
    (bad / "npzroot").mkdir()
    (bad / "npzroot" / "breastmnist.npz").write_bytes(b"not a zip")
    np.savez(bad / "npzroot" / "pneumoniamnist.npz", train_images=np.zeros((3, 28, 28), np.uint8))
    configs = {
        "epochs-float": "epochs: 1.7\n",
        "seed-float": "seed: 1.5\n",
        "dataset-list": "dataset: [1, 2]\n",
        "crop-abc": "augment_overrides: {crop_area: abc}\n",
        "override-unknown": "augment_overrides: {colour: 1}\n",
        "override-list": "augment_overrides: [1, 2]\n",
        "out-null": "out: null\n",
        "epochs-bool": "epochs: true\n",
        "lr-nan": "lr: .nan\n",
        "lr-text": "lr: fast\n",
        "unknown-key": "learning_rate: 0.1\n",
        "other-command": "command: pretrain\nepochs: 3\n",
        "yaml-error": "epochs: [1, 2\n",
        "top-list": "- epochs\n- 3\n",
        "python-tag": "epochs: !!python/object/apply:os.system ['touch pwned']\n",
        "positive-dict": "positive_class: {a: 1}\n",
        "fractions-text": "command: probe\nlabel_fractions: 0.1,abc\n",
        "seeds-empty": "command: probe\nseeds: []\n",
        "budget-int": "command: study\nbudget: 3\n",
        "images-huge": "command: augment-preview\nimages: 100000\n",
    }
    for name, text in configs.items():
        (bad / f"{name}.yaml").write_text(text)
    (bad / "latin1.yaml").write_bytes("dataset: br\xe9astmnist\n".encode("latin-1"))
    (bad / "nul.yaml").write_text('out: "a\\0b"\n')
    for name, text in {
        "blur-inf": "augment_overrides: {blur_prob: 1.0, blur_sigma: [.inf, .inf]}\n",
        "rotation-nan": "augment_overrides: {rotation: .nan}\n",
        "dup-key": "seed: 1\nseed: 2\n",
        "dash-dup": "batch-size: 16\nbatch_size: 32\n",
        "nouser": "data_root: ~nosuchuser_medssl/data\n",
    }.items():
        (bad / f"{name}.yaml").write_text(text)
    (root / "cwd").mkdir()
    assert not (root / "pwned").exists()
    return {
        "root": root,
        **{
            k: str(runs / k)
            for k in (
                "train",
                "evaluated",
                "pretrain",
                "probe",
                "interrupted",
                "study",
                "legacy",
                *tampered,
                *resumes,
                "i-foreign",
                "i-other-model",
                "i-pickle",
                "i-best-text",
                "p-marker",
                "pr-marker",
                "s-walltime",
                "s-step",
            )
        },
        "only-user-tmp": str(root / "only-user-tmp"),
        "loop": str(root / "loop"),
        "bad": str(bad),
        "foreign": str(root / "foreign"),
        "afile": str(root / "afile.txt"),
        "empty": str(root / "empty"),
        "new": str(root / "new" / "run"),
        "data": str(data_root),
    }


# (case id, command line with {placeholders}, regex the one error line must contain)
CASES = [
    # ---- config files: the same types as the command line ----
    (
        "cfg-epochs-float",
        "train --config {bad}/epochs-float.yaml --out {new}",
        "epochs-float.yaml: epochs: input should be a valid integer",
    ),
    (
        "cfg-seed-float",
        "train --config {bad}/seed-float.yaml --out {new}",
        "seed: input should be a valid integer",
    ),
    (
        "cfg-dataset-list",
        "train --config {bad}/dataset-list.yaml --out {new}",
        "dataset: input should be a valid string",
    ),
    (
        "cfg-crop-abc",
        "train --config {bad}/crop-abc.yaml --out {new}",
        "augment_overrides.crop_area",
    ),
    (
        "cfg-override-unknown",
        "train --config {bad}/override-unknown.yaml --out {new}",
        "unknown augment_overrides",
    ),
    (
        "cfg-override-list",
        "pretrain --config {bad}/override-list.yaml --out {new}",
        "augment_overrides",
    ),
    ("cfg-out-null", "train --config {bad}/out-null.yaml", "out: input should be a valid string"),
    (
        "cfg-epochs-bool",
        "train --config {bad}/epochs-bool.yaml --out {new}",
        "epochs: input should be a valid integer",
    ),
    (
        "cfg-lr-nan",
        "train --config {bad}/lr-nan.yaml --out {new}",
        "lr: input should be a finite number",
    ),
    (
        "cfg-lr-text",
        "pretrain --config {bad}/lr-text.yaml --out {new}",
        "lr: input should be a valid number",
    ),
    (
        "cfg-unknown-key",
        "train --config {bad}/unknown-key.yaml --out {new}",
        r"unknown train options \['learning_rate'\]",
    ),
    (
        "cfg-other-command",
        "train --config {bad}/other-command.yaml --out {new}",
        "is a `pretrain` config",
    ),
    ("cfg-yaml-error", "train --config {bad}/yaml-error.yaml --out {new}", "cannot read YAML"),
    ("cfg-top-list", "probe --config {bad}/top-list.yaml --out {new}", "expected a YAML mapping"),
    ("cfg-python-tag", "train --config {bad}/python-tag.yaml --out {new}", "cannot read YAML"),
    (
        "cfg-positive-dict",
        "train --config {bad}/positive-dict.yaml --out {new}",
        "positive_class: input should be a valid string",
    ),
    (
        "cfg-fractions-text",
        "probe --config {bad}/fractions-text.yaml --out {new}",
        r"label_fractions\[1\]: input should be a valid number",
    ),
    (
        "cfg-seeds-empty",
        "probe --config {bad}/seeds-empty.yaml --out {new}",
        "seeds: value should have at least 1 item",
    ),
    (
        "cfg-budget-int",
        "study --config {bad}/budget-int.yaml --out {new}",
        "budget: input should be 'quick'",
    ),
    (
        "cfg-images-huge",
        "augment-preview --config {bad}/images-huge.yaml --out {new}.png",
        "images: input should be less than or equal to 64",
    ),
    ("cfg-latin1", "train --config {bad}/latin1.yaml --out {new}", "is not UTF-8 text"),
    ("cfg-missing", "train --config {bad}/nope.yaml --out {new}", "nope.yaml: YAML file not found"),
    ("cfg-folder", "train --config {bad} --out {new}", "is a folder"),
    ("cfg-model-file", "evaluate {train} --config {train}/best.safetensors", "best.safetensors"),
    (
        "cfg-run-config-other",
        "pretrain --config {train}/config.yaml --out {new}",
        "is a `train` config",
    ),
    # ---- options at and beyond their limits ----
    (
        "train-epochs-0",
        "train --epochs 0 --out {new}",
        "--epochs: input should be greater than or equal to 1",
    ),
    (
        "train-epochs-frac",
        "train --epochs 1.7 --out {new}",
        "--epochs: input should be a valid integer",
    ),
    (
        "train-epochs-text",
        "train --epochs ten --out {new}",
        "--epochs: input should be a valid integer",
    ),
    ("train-lr-0", "train --lr 0 --out {new}", "--lr: input should be greater than 0"),
    ("train-lr-neg", "train --lr -1 --out {new}", "--lr: input should be greater than 0"),
    ("train-lr-nan", "train --lr nan --out {new}", "--lr: input should be a finite number"),
    ("train-lr-inf", "train --lr inf --out {new}", "--lr: input should be a finite number"),
    (
        "train-batch-1",
        "train --batch-size 1 --out {new}",
        "--batch-size: input should be greater than or equal to 2",
    ),
    ("train-batch-0", "train --batch-size 0 --out {new}", "--batch-size"),
    (
        "train-fraction-0",
        "train --label-fraction 0 --out {new}",
        "--label-fraction: input should be greater than 0",
    ),
    (
        "train-fraction-big",
        "train --label-fraction 1.5 --out {new}",
        "--label-fraction: input should be less than or equal to 1",
    ),
    (
        "train-fraction-tiny",
        "train --label-fraction 0.001 --out {new}",
        "cannot hold one example of each class",
    ),
    (
        "train-seed-neg",
        "train --seed -1 --out {new}",
        "--seed: input should be greater than or equal to 0",
    ),
    ("train-size", "train --size 32 --out {new}", "--size: must be one of 28, 64, 128, 224"),
    (
        "train-resize-0",
        "train --resize 0 --out {new}",
        "--resize: input should be greater than or equal to 8",
    ),
    ("train-mode", "train --mode partial --out {new}", "--mode: input should be 'all' or 'head'"),
    ("train-loss", "train --loss focal --out {new}", "--loss"),
    ("train-decay", "train --decay none --out {new}", "--decay"),
    ("train-schedule", "train --lr-schedule step --out {new}", "--lr-schedule"),
    ("train-gamma-0", "train --gamma 0 --out {new}", "--gamma"),
    ("train-gamma-2", "train --gamma 2 --out {new}", "--gamma"),
    ("train-warmup-neg", "train --warmup-epochs -1 --out {new}", "--warmup-epochs"),
    (
        "train-stem",
        "train --stem resnet --out {new}",
        "--stem: input should be 'imagenet', 'cifar' or 'compact'",
    ),
    ("train-precision", "train --precision fp16 --out {new}", "--precision"),
    (
        "train-device-tpu",
        "train --device tpu --out {new}",
        "--device: must be auto, cpu, cuda or cuda:N",
    ),
    ("train-device-cuda9", "train --device cuda:9 --out {new}", "cuda"),
    ("train-augment", "train --augment heavy --out {new}", "unknown augmentation preset 'heavy'"),
    (
        "train-positive-name",
        "train --positive-class tumour --out {new}",
        "--positive-class 'tumour' unknown",
    ),
    ("train-positive-2", "train --positive-class 2 --out {new}", "--positive-class must be 0 or 1"),
    ("train-dataset", "train --dataset chestmnist --out {new}", "unknown dataset 'chestmnist'"),
    ("train-eval-batch-0", "train --eval-batch-size 0 --out {new}", "--eval-batch-size"),
    (
        "train-n-bins-0",
        "train --n-bins 0 --out {new}",
        "--n-bins: input should be greater than or equal to 1",
    ),
    (
        "train-unknown-flag",
        "train --learning-rate 0.1 --out {new}",
        "unrecognized arguments: --learning-rate",
    ),
    ("train-missing-value", "train --out {new} --epochs", "--epochs: expected one argument"),
    ("train-extra-arg", "train extra --out {new}", "unrecognized arguments: extra"),
    (
        "train-init-missing",
        "train --init {bad}/nope.pth --out {new}",
        "--init .*nope.pth: no such file",
    ),
    (
        "train-init-text",
        "train --init {bad}/text.pth --out {new}",
        "text.pth: not a readable weights-only torch file",
    ),
    ("train-init-pickle", "train --init {bad}/evil.pt --out {new}", "evil.pt"),
    (
        "train-init-corrupt",
        "train --init {bad}/corrupt.safetensors --out {new}",
        "corrupt.safetensors: not a readable safetensors",
    ),
    (
        "train-init-head",
        "train --init {bad}/head.safetensors --out {new}",
        "head.safetensors: model kind 'projection_head' has no encoder",
    ),
    (
        "train-init-plain",
        "train --init {bad}/plain.safetensors --out {new}",
        "safetensors file without medssl metadata",
    ),
    (
        "train-init-stem",
        "train --init {bad}/cifar.safetensors --stem imagenet --out {new}",
        "pass --stem cifar",
    ),
    ("train-data-missing", "train --data-root {empty} --out {new}", "file not found"),
    (
        "train-data-corrupt",
        "train --data-root {bad}/npzroot --out {new}",
        "breastmnist.npz: not a readable",
    ),
    (
        "train-data-keys",
        "train --dataset pneumoniamnist --data-root {bad}/npzroot --out {new}",
        "lacks the arrays",
    ),
    (
        "pretrain-temp-0",
        "pretrain --temperature 0 --out {new}",
        "--temperature: input should be greater than 0",
    ),
    ("pretrain-temp-neg", "pretrain --temperature -1 --out {new}", "--temperature"),
    (
        "pretrain-proj-short",
        "pretrain --proj-dims 256,128 --out {new}",
        "--proj-dims: must start with 512",
    ),
    ("pretrain-proj-text", "pretrain --proj-dims 512,abc --out {new}", r"--proj-dims\[1\]"),
    ("pretrain-proj-one", "pretrain --proj-dims 512 --out {new}", "--proj-dims"),
    (
        "pretrain-resize-0",
        "pretrain --resize 0 --out {new}",
        "--resize: input should be greater than or equal to 8",
    ),
    ("pretrain-batch-1", "pretrain --batch-size 1 --out {new}", "--batch-size"),
    ("pretrain-knn-k-0", "pretrain --knn-k 0 --out {new}", "--knn-k"),
    ("pretrain-knn-every", "pretrain --knn-every -1 --out {new}", "--knn-every"),
    ("pretrain-knn-labels", "pretrain --knn-labels -1 --out {new}", "--knn-labels"),
    ("pretrain-epochs-0", "pretrain --epochs 0 --out {new}", "--epochs"),
    ("pretrain-augment", "pretrain --augment x --out {new}", "unknown augmentation preset"),
    ("pretrain-device", "pretrain --device gpu --out {new}", "--device"),
    (
        "probe-fractions-empty",
        "probe --label-fractions '' --out {new}",
        "--label-fractions: value should have at least 1 item",
    ),
    (
        "probe-fractions-0",
        "probe --label-fractions 0 --out {new}",
        r"--label-fractions\[0\]: input should be greater than 0",
    ),
    (
        "probe-fractions-text",
        "probe --label-fractions 0.1,abc --out {new}",
        r"--label-fractions\[1\]",
    ),
    ("probe-fractions-big", "probe --label-fractions 2 --out {new}", "--label-fractions"),
    (
        "probe-fractions-tiny",
        "probe --label-fractions 0.0001 --out {new}",
        "cannot hold one example of each class",
    ),
    ("probe-seeds-empty", "probe --seeds '' --out {new}", "--seeds"),
    ("probe-seeds-text", "probe --seeds a --out {new}", r"--seeds\[0\]"),
    ("probe-seeds-neg", "probe --seeds -1 --out {new}", r"--seeds\[0\]"),
    (
        "probe-c-nan",
        "probe --c-grid nan --out {new}",
        r"--c-grid\[0\]: input should be a finite number",
    ),
    ("probe-c-0", "probe --c-grid 0 --out {new}", "--c-grid: must be numbers from 1e-8 to 1e8"),
    ("probe-c-neg", "probe --c-grid 1,-1 --out {new}", "--c-grid"),
    ("probe-c-empty", "probe --c-grid '' --out {new}", "--c-grid"),
    ("probe-max-iter-0", "probe --max-iter 0 --out {new}", "--max-iter"),
    ("probe-max-iter-neg", "probe --max-iter -1 --out {new}", "--max-iter"),
    ("probe-n-bins-0", "probe --n-bins 0 --out {new}", "--n-bins"),
    ("probe-encoder-missing", "probe --encoder {bad}/nope.safetensors --out {new}", "no such file"),
    (
        "probe-encoder-head",
        "probe --encoder {bad}/head.safetensors --out {new}",
        "expected encoder or classifier",
    ),
    (
        "probe-encoder-corrupt",
        "probe --encoder {bad}/corrupt.safetensors --out {new}",
        "not a readable safetensors",
    ),
    ("probe-encoder-folder", "probe --encoder {train} --out {new}", "no such file"),
    ("study-budget", "study --budget huge --out {new}", "--budget"),
    ("study-device", "study --device tpu --out {new}", "--device"),
    ("study-device-cuda9", "study --device cuda:9 --out {new}", "cuda"),
    ("study-dataset", "study --dataset x --out {new}", "unknown dataset"),
    ("study-data-missing", "study --data-root {empty} --out {new}", "file not found"),
    ("preview-images-0", "augment-preview --images 0 --out {new}.png", "--images"),
    (
        "preview-images-huge",
        "augment-preview --images 100000 --out {new}.png",
        "--images: input should be less than or equal to 64",
    ),
    ("preview-views-0", "augment-preview --views 0 --out {new}.png", "--views"),
    ("preview-views-huge", "augment-preview --views 1000 --out {new}.png", "--views"),
    (
        "preview-augment",
        "augment-preview --augment x --out {new}.png",
        "unknown augmentation preset",
    ),
    ("preview-out-empty", "augment-preview --out ''", "--out"),
    ("data-size", "data --size 32", "--size: must be one of"),
    ("data-dataset", "data --dataset x", "unknown dataset"),
    ("data-corrupt", "data --dataset breastmnist --data-root {bad}/npzroot", "breastmnist.npz"),
    ("evaluate-boot-0", "evaluate {train} --n-bootstrap 0", "--n-bootstrap"),
    ("evaluate-boot-neg", "evaluate {train} --n-bootstrap -5", "--n-bootstrap"),
    ("evaluate-sens-0", "evaluate {train} --target-sensitivity 0", "--target-sensitivity"),
    ("evaluate-sens-big", "evaluate {train} --target-sensitivity 1.5", "--target-sensitivity"),
    (
        "evaluate-fpr-1",
        "evaluate {train} --target-fpr 1",
        "--target-fpr: input should be less than 1",
    ),
    ("evaluate-fpr-neg", "evaluate {train} --target-fpr -0.1", "--target-fpr"),
    ("evaluate-gallery-neg", "evaluate {train} --gallery-k -1", "--gallery-k"),
    ("evaluate-seed-neg", "evaluate {train} --seed -1", "--seed"),
    ("evaluate-no-run", "evaluate", "the following arguments are required: run_dir"),
    ("predict-device", "predict {train} {bad}/zero.npy --device tpu --out {new}.csv", "--device"),
    ("compare-split", "compare {train} --split train", "--split: input should be 'val' or 'test'"),
    ("compare-none", "compare", "the following arguments are required: runs"),
    ("completion-fish", "completion fish", "--shell|shell: input should be 'bash'"),
    ("no-command", "", "the following arguments are required: COMMAND"),
    ("unknown-command", "nosuch", "invalid choice: 'nosuch'"),
    # ---- run folders owned by other commands, in other states, or not runs at all ----
    ("out-empty", "train --out ''", "--out: must name a folder"),
    ("out-blank", "train --out '   '", "--out: must name a folder"),
    ("out-cwd", "train --out .", "is the current folder"),
    ("out-file", "train --out {afile}", "is a file"),
    ("out-foreign", "train --out {foreign}", "holds files that are not a medssl run"),
    (
        "pretrain-into-train",
        "pretrain --out {train}",
        "is a `train` run; `medssl pretrain` writes only into its own runs",
    ),
    ("probe-into-train", "probe --out {train}", "is a `train` run"),
    ("train-into-pretrain", "train --out {pretrain}", "is a `pretrain` run"),
    ("study-into-train", "study --out {train}", "is a `train` run"),
    ("train-into-study", "train --out {study}", "is a `study` run"),
    ("train-into-probe", "train --out {probe} --resume", "is a `probe` run"),
    ("pretrain-into-legacy", "pretrain --out {legacy}", "is a `train` run"),
    (
        "train-finished-other",
        "train --config {train}/config.yaml --out {train} --lr 0.5",
        r"finished train run with other options \(lr\)",
    ),
    (
        "legacy-finished-other",
        "train --config {legacy}/config.yaml --out {legacy} --seed 4",
        r"finished train run with other options \(seed\)",
    ),
    (
        "interrupted-no-resume",
        "train --config {interrupted}/config.yaml --out {interrupted}",
        "interrupted train run; add --resume",
    ),
    (
        "interrupted-other-options",
        "train --config {interrupted}/config.yaml --out {interrupted} --resume --epochs 5",
        r"options differ .*\(epochs\)",
    ),
    (
        "study-interrupted-no-resume",
        "study --config {study}/config.yaml --out {study}",
        "interrupted study run; add --resume",
    ),
    (
        "study-other-budget",
        "study --config {study}/config.yaml --out {study} --resume --budget quick",
        "budget",
    ),
    ("runjson-corrupt", "train --out {t-runjson}", "run.json: not a readable run record"),
    ("runjson-command", "train --out {t-runjson-cmd}", "unknown command 'rm -rf'"),
    # ---- resume state that is corrupt, truncated or foreign ----
    (
        "resume-corrupt",
        "train --config {i-corrupt}/config.yaml --out {i-corrupt} --resume",
        "last.pt: not a readable resume checkpoint",
    ),
    (
        "resume-trunc",
        "train --config {i-trunc}/config.yaml --out {i-trunc} --resume",
        "last.pt: not a readable resume checkpoint",
    ),
    (
        "resume-foreign",
        "train --config {i-foreign}/config.yaml --out {i-foreign} --resume",
        r"last.pt: resume checkpoint lacks \[.*'model'",
    ),
    (
        "resume-other-model",
        "train --config {i-other-model}/config.yaml --out {i-other-model} --resume",
        "last.pt: does not fit this run",
    ),
    (
        "resume-pickle",
        "train --config {i-pickle}/config.yaml --out {i-pickle} --resume",
        "last.pt: not a readable resume checkpoint",
    ),
    (
        "resume-history",
        "train --config {i-history}/config.yaml --out {i-history} --resume",
        "history.jsonl:1: not a readable history",
    ),
    (
        "resume-history-short",
        "train --config {i-history-short}/config.yaml --out {i-history-short} --resume",
        "0 rows, the checkpoint needs 1",
    ),
    # ---- evaluate / predict / compare on the wrong folders and damaged artifacts ----
    (
        "evaluate-pretrain",
        "evaluate {pretrain}",
        "is a `pretrain` run; `medssl evaluate` takes a `train` run",
    ),
    ("evaluate-probe", "evaluate {probe}", "is a `probe` run"),
    (
        "evaluate-interrupted",
        "evaluate {interrupted}",
        "the train run is interrupted; finish it with `medssl train --resume`",
    ),
    ("evaluate-study", "evaluate {study}", "is a `study` run"),
    ("evaluate-foreign", "evaluate {foreign}", "not a medssl run folder"),
    ("evaluate-missing", "evaluate {new}", "no such folder"),
    ("evaluate-file", "evaluate {afile}", "a file"),
    ("evaluate-model-keys", "evaluate {t-keys}", "weights do not match the model"),
    ("evaluate-model-shapes", "evaluate {t-shapes}", "conv1.weight has shape"),
    (
        "evaluate-model-dataset",
        "evaluate {t-dataset}",
        "made for dataset 'pneumoniamnist', but this run has 'breastmnist'",
    ),
    (
        "evaluate-model-corrupt",
        "evaluate {t-corrupt-model}",
        "best.safetensors: not a readable safetensors",
    ),
    (
        "evaluate-model-trunc",
        "evaluate {t-trunc-model}",
        "best.safetensors: not a readable safetensors",
    ),
    ("evaluate-pred-trunc", "evaluate {t-pred-trunc}", "predictions.csv"),
    (
        "evaluate-pred-value",
        "evaluate {t-pred-value}",
        r"predictions.csv:\d+: column 'target' holds",
    ),
    (
        "evaluate-pred-column",
        "evaluate {t-pred-column}",
        r"lacks the columns \['target', 'logit'\]",
    ),
    ("evaluate-pred-nan", "evaluate {t-pred-logit}", "column 'logit' is not finite"),
    ("evaluate-metrics", "evaluate {t-metrics}", "metrics.json: not a readable metrics"),
    ("evaluate-config", "evaluate {t-config}", "config.yaml: cannot read YAML"),
    (
        "evaluate-config-key",
        "evaluate {t-config-key}",
        r"config.yaml: .*unknown train options \['colour'\]",
    ),
    ("evaluate-config-utf8", "evaluate {t-config-utf8}", "not UTF-8"),
    (
        "predict-pretrain",
        "predict {pretrain} {bad}/zero.npy --out {new}.csv",
        "is a `pretrain` run",
    ),
    (
        "predict-model-dataset",
        "predict {t-dataset} {data}/breastmnist.npz:val_images --out {new}.csv",
        "made for dataset 'pneumoniamnist'",
    ),
    (
        "predict-eval-broken",
        "predict {t-eval} {data}/breastmnist.npz:val_images --out {new}.csv",
        "evaluation.json: evaluation is not a JSON object",
    ),
    (
        "predict-eval-temp",
        "predict {t-eval-temp} {data}/breastmnist.npz:val_images --out {new}.csv",
        "not finite positive",
    ),
    (
        "predict-out-predictions",
        "predict {train} {data}/breastmnist.npz:val_images --out {train}/predictions.csv",
        "lies inside the `train` run folder",
    ),
    (
        "predict-out-metrics",
        "predict {train} {data}/breastmnist.npz:val_images --out {train}/metrics.json",
        "lies inside the `train` run folder",
    ),
    (
        "predict-out-foreign",
        "predict {train} {data}/breastmnist.npz:val_images --out {foreign}/notes.txt",
        "exists and is not a predictions CSV medssl wrote",
    ),
    (
        "predict-out-folder",
        "predict {train} {data}/breastmnist.npz:val_images --out {train}",
        "is a folder",
    ),
    (
        "predict-out-under-file",
        "predict {train} {data}/breastmnist.npz:val_images --out {afile}/p.csv",
        "is a file, not a folder",
    ),
    (
        "predict-in-missing",
        "predict {train} {bad}/nope.png --out {new}.csv",
        "no such file or folder",
    ),
    ("predict-in-empty", "predict {train} {empty} --out {new}.csv", "no image files"),
    ("predict-in-noimages", "predict {train} {bad}/noimages --out {new}.csv", "no image files"),
    (
        "predict-in-text-png",
        "predict {train} {bad}/text.png --out {new}.csv",
        "text.png: not a readable image",
    ),
    ("predict-in-bomb", "predict {train} {bad}/bomb.png --out {new}.csv", "bomb.png"),
    ("predict-in-big", "predict {train} {bad}/big.png --out {new}.csv", "big.png"),
    (
        "predict-in-trunc",
        "predict {train} {bad}/trunc.png --out {new}.csv",
        "trunc.png: not a readable image",
    ),
    (
        "predict-in-zero",
        "predict {train} {bad}/zero.npy --out {new}.csv",
        r"shape \(0, 28, 28\); expected \(N, H, W\)",
    ),
    (
        "predict-in-float",
        "predict {train} {bad}/float.npy --out {new}.csv",
        "dtype float32; expected uint8 or uint16",
    ),
    (
        "predict-in-vector",
        "predict {train} {bad}/vector.npy --out {new}.csv",
        r"expected \(N, H, W\)",
    ),
    (
        "predict-in-ambiguous",
        "predict {train} {bad}/two.npz --out {new}.csv",
        "name the images array",
    ),
    (
        "predict-in-key",
        "predict {train} {data}/breastmnist.npz:nokey --out {new}.csv",
        r"lacks the arrays \['nokey'\]",
    ),
    (
        "predict-in-npy-key",
        "predict {train} {bad}/zero.npy:x --out {new}.csv",
        "a .npy file holds one array",
    ),
    ("predict-in-corrupt-npz", "predict {train} {bad}/corrupt.npz --out {new}.csv", "corrupt.npz"),
    ("compare-pretrain", "compare {train} {pretrain}", "is a `pretrain` run"),
    ("compare-interrupted", "compare {interrupted}", "interrupted"),
    ("compare-metrics", "compare {t-metrics}", "metrics.json"),
    ("compare-metrics-type", "compare {t-metrics-type}", r"\['epochs'\] of the wrong type"),
    ("compare-foreign", "compare {foreign}", "not a medssl run folder"),
    (
        "preview-out-run-figure",
        "augment-preview --out {train}/roc.png",
        "lies inside the `train` run folder",
    ),
    (
        "preview-out-foreign",
        "augment-preview --out {foreign}/notes.txt",
        "exists and is not a PNG image medssl wrote",
    ),
    ("preview-out-folder", "augment-preview --out {foreign}", "is a folder"),
    ("data-export-foreign", "data --export-samples {foreign}", "not a new or empty folder"),
    ("data-export-file", "data --export-samples {afile}", "not a new or empty folder"),
    # ---- found by an independent audit (each was a traceback, a write, or an overwrite) ----
    ("cfg-blur-inf", "train --config {bad}/blur-inf.yaml --out {new}", "must be finite"),
    ("cfg-rotation-nan", "train --config {bad}/rotation-nan.yaml --out {new}", "must be finite"),
    ("cfg-out-nul", "train --config {bad}/nul.yaml", "NUL"),
    ("cfg-dup-key", "train --config {bad}/dup-key.yaml --out {new}", "duplicate key 'seed'"),
    ("cfg-dash-dup", "train --config {bad}/dash-dup.yaml --out {new}", "name the same options"),
    ("cfg-nouser", "train --config {bad}/nouser.yaml --out {new}", "nosuchuser_medssl"),
    ("out-nouser", "train --out ~nosuchuser_medssl/run", "nosuchuser_medssl"),
    ("out-symlink-loop", "pretrain --out {loop}", "loop"),
    ("out-only-user-tmp", "train --out {only-user-tmp}", "not a medssl run"),
    ("out-inside-run", "train --out {train}/nested", "lies inside the run folder"),
    ("probe-out-inside-run", "probe --out {pretrain}/tensorboard/p", "lies inside the run folder"),
    (
        "runjson-list",
        "train --config {t-runjson-list}/config.yaml --out {t-runjson-list}",
        "unknown command",
    ),
    ("evaluate-runjson-list", "evaluate {t-runjson-list}", "unknown command"),
    (
        "resume-empty-row",
        "train --config {i-history-empty-row}/config.yaml --out {i-history-empty-row} --resume",
        "not a history row of epoch 0",
    ),
    (
        "resume-nan-row",
        "train --config {i-history-nan}/config.yaml --out {i-history-nan} --resume",
        "not a history row of epoch 0",
    ),
    (
        "resume-best-text",
        "train --config {i-best-text}/config.yaml --out {i-best-text} --resume",
        "best_auroc / best_epoch are not numbers",
    ),
    (
        "resume-no-best",
        "train --config {i-no-best}/config.yaml --out {i-no-best} --resume",
        "best.safetensors: model file not found",
    ),
    (
        "resume-tensorboard-file",
        "train --config {i-tensorboard-file}/config.yaml --out {i-tensorboard-file} --resume",
        "tensorboard is not a folder",
    ),
    (
        "noop-train-marker",
        "train --config {t-metrics-empty}/config.yaml --out {t-metrics-empty}",
        "metrics.json",
    ),
    (
        "noop-pretrain-marker",
        "pretrain --config {p-marker}/config.yaml --out {p-marker}",
        "pretrain.json",
    ),
    (
        "noop-probe-marker",
        "probe --config {pr-marker}/config.yaml --out {pr-marker}",
        "lacks its table",
    ),
    (
        "study-walltime",
        "study --config {s-walltime}/config.yaml --out {s-walltime} --resume",
        "wall_time_s",
    ),
    (
        "study-step-foreign",
        "study --config {s-step}/config.yaml --out {s-step} --resume",
        "is a `pretrain` run",
    ),
    ("compare-name-int", "compare {t-metrics-name}", "positive_class lacks its label or name"),
    ("evaluate-output-folder", "evaluate {t-eval-folder} --no-images", "are folders or links"),
    (
        "train-init-conv1-int",
        "train --init {bad}/conv1int.pth --out {new}",
        "not a ResNet-18 state dict",
    ),
    (
        "probe-encoder-conv1-flat",
        "probe --encoder {bad}/conv1flat.pth --out {new}",
        "not a ResNet-18 state dict",
    ),
    (
        "preview-out-new-in-run",
        "augment-preview --out {train}/pr.png",
        "lies inside the `train` run folder",
    ),
    (
        "predict-out-new-in-run",
        "predict {train} {data}/breastmnist.npz:val_images --out {interrupted}/metrics.json",
        "lies inside the `train` run folder",
    ),
    (
        "preview-overwrite-png",
        "augment-preview --out {bad}/holiday.png",
        "exists and is not a PNG image medssl wrote",
    ),
    ("probe-c-denormal", "probe --c-grid 1e-320 --out {new}", "--c-grid"),
]


def _snapshot(root: Path, cache: dict) -> dict[str, str]:
    """Content hash of every file under `root` (hidden ones too) and the list of folders. A
    file's hash is reused while its inode and ctime are unchanged: ctime changes with any
    write, so this is the hash of the bytes."""
    snap = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        snap[dirpath] = "dir"
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                snap[p] = "link:" + os.readlink(p)
                continue
            st = os.lstat(p)
            key = (st.st_ino, st.st_ctime_ns, st.st_size)
            if key not in cache:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                cache[key] = h.hexdigest()
            snap[p] = cache[key]
    return snap


@pytest.fixture(scope="module")
def hash_cache():
    return {}


@pytest.mark.parametrize("case,line,reason", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(
    case, line, reason, world, hash_cache, capsys, monkeypatch, data_root
):
    monkeypatch.chdir(world["root"] / "cwd")  # default outputs would land here: it must stay empty
    monkeypatch.setenv("MEDSSL_DATA_ROOT", str(data_root))
    argv = [a.format(**world) for a in shlex.split(line)]
    before = _snapshot(world["root"], hash_cache)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (case, err, out[-500:])
    assert err.count("\n") == 1 and err.startswith("medssl: error: "), err
    assert "Traceback" not in err + out
    import re

    assert re.search(reason, err), (case, err)
    assert _snapshot(world["root"], hash_cache) == before, f"{case} changed files"
    assert not (world["root"] / "pwned").exists()


def test_the_suite_is_large_enough():
    assert len(CASES) >= 100
    commands = {shlex.split(line)[0] for _, line, _ in CASES if line}
    assert commands >= {
        "train",
        "pretrain",
        "probe",
        "study",
        "evaluate",
        "predict",
        "compare",
        "data",
        "augment-preview",
        "completion",
    }


# ---- the same promises through the installed entry point (a real process, real stderr) ----


@pytest.mark.parametrize(
    "line,reason",
    [
        ("train --epochs 1.7 --out {new}", "--epochs"),
        ("evaluate {t-dataset}", "made for dataset"),
        ("train --config {i-pickle}/config.yaml --out {i-pickle} --resume", "last.pt"),
        ("predict {train} {bad}/bomb.png --out {new}.csv", "bomb.png"),
        ("pretrain --out {train}", "is a `train` run"),
    ],
)
def test_entry_point_refusals_are_one_line(line, reason, world, hash_cache):
    argv = [a.format(**world) for a in shlex.split(line)]
    before = _snapshot(world["root"], hash_cache)
    r = subprocess.run(
        [sys.executable, "-m", "medssl.cli", *argv],
        capture_output=True,
        text=True,
        cwd=world["root"] / "cwd",
        env=os.environ | {"MEDSSL_DATA_ROOT": world["data"]},
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert reason in r.stderr and "Traceback" not in r.stderr
    assert _snapshot(world["root"], hash_cache) == before


# ---- what the contracts allow ----


def test_finished_run_rerun_is_a_noop_that_says_so(world, capsys, hash_cache):
    before = _snapshot(world["root"], hash_cache)
    for run in (world["train"], world["legacy"]):
        assert cli.main(["train", "--config", f"{run}/config.yaml", "--out", run]) == 0
        assert "already holds this finished train run; nothing to do" in capsys.readouterr().out
    assert _snapshot(world["root"], hash_cache) == before


def test_interrupted_run_resumes_only_with_resume(world, tmp_path, capsys):
    run = _link_copy(Path(world["interrupted"]), tmp_path / "i")
    assert cli.main(["train", "--config", f"{run}/config.yaml", "--out", str(run)]) == 2
    assert cli.main(["train", "--config", f"{run}/config.yaml", "--out", str(run), "--resume"]) == 0
    assert "resumed" in capsys.readouterr().out
    import json

    record = json.loads((run / "run.json").read_text())
    assert record["command"] == "train" and record["state"] == "finished"
    assert not (run / "last.pt").exists() and (run / "metrics.json").is_file()


def test_run_record_names_owner_and_state(world):
    import json

    from medssl.io.rundir import status

    for name, command, state in (
        ("train", "train", "finished"),
        ("pretrain", "pretrain", "finished"),
        ("probe", "probe", "finished"),
        ("interrupted", "train", "interrupted"),
        ("study", "study", "interrupted"),
        ("legacy", "train", "finished"),
    ):
        s = status(Path(world[name]))
        assert (s.kind, s.command, s.state) == ("run", command, state), name
    rec = json.loads((Path(world["interrupted"]) / "run.json").read_text())
    assert rec["state"] == "interrupted" and rec["reason"] == "stopped by Ctrl-C"
    assert json.loads((Path(world["evaluated"]) / "run.json").read_text())["evaluate"]["files"]


def test_predict_overwrites_only_its_own_csv(world, tmp_path, capsys):
    out = tmp_path / "p.csv"
    src = f"{world['data']}/breastmnist.npz:val_images"
    assert cli.main(["predict", world["train"], src, "--out", str(out)]) == 0
    assert cli.main(["predict", world["train"], src, "--out", str(out)]) == 0  # its own file
    out.write_text("patient,score\n")
    assert cli.main(["predict", world["train"], src, "--out", str(out)]) == 2
    assert out.read_text() == "patient,score\n"


def test_files_respect_the_umask(world, tmp_path, data_root):
    from medssl.io.artifacts import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_text(tmp_path / "b.txt", "x")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    expected = 0o666 & ~old  # what the world's runs were made under
    for name in ("best.safetensors", "metrics.json", "roc.png", "config.yaml"):
        assert (Path(world["train"]) / name).stat().st_mode & 0o777 == expected, name


@pytest.mark.parametrize("command", ["train", "pretrain", "probe", "study"])
def test_configs_saved_by_0_1_0_still_load(command):
    """config.yaml files written by medssl 0.1.0 (lists as comma strings) load unchanged."""
    from medssl.io.artifacts import read_yaml
    from medssl.options import COMMANDS

    path = Path(__file__).parent / "data" / "configs-0.1.0" / f"{command}.yaml"
    old = read_yaml(path)
    new = COMMANDS[command].from_dict(old).to_dict()
    for key, value in old.items():
        if key == "command":
            continue
        if isinstance(value, str) and "," in value:  # '0.1,1.0' -> [0.1, 1.0]
            assert new[key] == [
                type(x)(v) for x, v in zip(new[key], value.split(","), strict=True)
            ], key
        else:
            assert new[key] == value, key


def test_every_refusal_raises_before_the_first_write(world, tmp_path, data_root):
    """The Python API refuses too, with the same one-line MedsslError."""
    from medssl.commands.train import train
    from medssl.options import TrainConfig

    with pytest.raises(MedsslError, match="is a `pretrain` run"):
        train(TrainConfig(data_root=str(data_root), out=world["pretrain"]))
    with pytest.raises(MedsslError, match="--epochs: input should be greater than or equal to 1"):
        TrainConfig(epochs=0)
