"""Supervised training on the real MedMNIST files, optimiser/schedule maths, resume, CLI."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from medssl import engine as E
from medssl import runtime as R
from medssl.commands import train as T
from medssl.errors import MedsslError
from medssl.models import Classifier, read_model


def quiet(*args, **kwargs):
    pass


def _cfg(tmp_path, name="run", **kw):
    # The fast ImageNet stem keeps the suite short; the CLI test runs the default (compact) stem.
    base = dict(
        dataset="breastmnist", out=str(tmp_path / name), epochs=3, progress=False, stem="imagenet"
    )
    base.update(kw)
    return T.TrainConfig(**base)


@pytest.mark.slow
def test_breastmnist_learns_and_writes_run_dir(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root=str(data_root), epochs=8)
    m = T.train(cfg, log=quiet)
    assert m["positive_class"] == {"label": 0, "name": "malignant"}
    assert m["test"]["auroc"] > 0.75, m["test"]  # chance is 0.5
    assert m["test"]["n"] == 156 and m["test"]["n_positive"] == 42  # 42 malignant
    out = tmp_path / "run"
    for f in (
        "config.yaml",
        "history.jsonl",
        "best.safetensors",
        "metrics.json",
        "predictions.csv",
        "learning_curves.png",
        "reliability.png",
        "roc.png",
        "train_indices.csv",
    ):
        assert (out / f).stat().st_size > 0, f
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["val"]) >= {
        "accuracy",
        "balanced_accuracy",
        "auroc",
        "ece",
        "n",
        "n_positive",
        "confusion",
    }
    c = saved["test"]["confusion"]
    assert c["tp"] + c["fn"] == 42 and c["tn"] + c["fp"] == 114
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 78 + 156
    # target is 1 exactly for the malignant label 0; probability = sigmoid(logit)
    assert all(int(r["target"]) == (int(r["label"]) == 0) for r in rows)
    r = rows[0]
    assert float(r["probability"]) == pytest.approx(
        1 / (1 + 2.718281828459045 ** -float(r["logit"])), rel=1e-9
    )
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert len(history) == 8
    best = max(history, key=lambda h: h["val_auroc"])
    assert saved["best_epoch"] == best["epoch"]  # model chosen on validation AUROC
    assert saved["val"]["auroc"] == pytest.approx(best["val_auroc"], abs=1e-6)


@pytest.mark.slow
def test_pneumoniamnist_learns(tmp_path, data_root):
    cfg = _cfg(tmp_path, dataset="pneumoniamnist", data_root=str(data_root), epochs=2)
    m = T.train(cfg, log=quiet)
    assert m["positive_class"]["name"] == "pneumonia"
    assert m["test"]["n"] == 624 and m["test"]["n_positive"] == 390
    assert m["test"]["auroc"] > 0.85, m["test"]


def test_same_seed_same_numbers_and_resume_is_exact(tmp_path, data_root, monkeypatch):
    kw = dict(data_root=str(data_root), epochs=3, label_fraction=0.3, seed=7)
    a = T.train(_cfg(tmp_path, "a", **kw), log=quiet)
    b = T.train(_cfg(tmp_path, "b", **kw), log=quiet)
    assert a["test"] == b["test"]
    pa = (tmp_path / "a" / "predictions.csv").read_text()
    assert pa == (tmp_path / "b" / "predictions.csv").read_text()

    # Interrupt run c when epoch 2 starts, then resume it: same predictions as run a.
    real = E.lr_factor

    def crash_at_2(epoch, cfg):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(epoch, cfg)

    monkeypatch.setattr(E, "lr_factor", crash_at_2)
    with pytest.raises(KeyboardInterrupt):
        T.train(_cfg(tmp_path, "c", **kw), log=quiet)
    assert not (tmp_path / "c" / "metrics.json").exists()
    assert not (tmp_path / "c" / ".lock").exists()
    assert (tmp_path / "c" / "last.pt").is_file()  # the interrupted run keeps its resume state
    monkeypatch.setattr(E, "lr_factor", real)
    with pytest.raises(MedsslError, match="options differ"):
        T.train(_cfg(tmp_path, "c", **{**kw, "lr": 0.5}), resume=True, log=quiet)
    c = T.train(_cfg(tmp_path, "c", **kw), resume=True, log=quiet)
    assert c["test"] == a["test"]
    assert (tmp_path / "c" / "predictions.csv").read_text() == pa
    assert not (tmp_path / "c" / "last.pt").exists()  # finished: resume state removed
    assert T.train(_cfg(tmp_path, "c", **kw), resume=True, log=quiet)["test"] == a["test"]
    said = []  # the same command again on its finished run: a no-op that says so
    assert T.train(_cfg(tmp_path, "c", **kw), log=said.append)["test"] == a["test"]
    assert "nothing to do" in said[0]
    with pytest.raises(MedsslError, match="finished train run with other options \\(lr\\)"):
        T.train(_cfg(tmp_path, "c", **{**kw, "lr": 0.5}), log=quiet)


def test_head_only_trains_only_the_head(tmp_path, data_root):
    cfg = _cfg(tmp_path, data_root=str(data_root), mode="head", augment="none", epochs=3, seed=1)
    T.train(cfg, log=quiet)
    torch.manual_seed(1)
    init = Classifier("imagenet").encoder.state_dict()
    state, meta = read_model(tmp_path / "run" / "best.safetensors")
    for k, v in init.items():  # encoder weights AND BatchNorm statistics unchanged
        torch.testing.assert_close(state[f"encoder.{k}"], v, atol=0, rtol=0)
    assert not torch.equal(state["head.weight"], torch.zeros_like(state["head.weight"]))


def test_weighted_bce_run(tmp_path, data_root):
    logs = []
    cfg = _cfg(
        tmp_path, data_root=str(data_root), loss="weighted-bce", epochs=1, label_fraction=0.5
    )
    T.train(cfg, log=logs.append)
    line = next(x for x in logs if x.startswith("weighted BCE"))
    # label fraction 0.5 of 399 benign/normal + 147 malignant -> N0 = 200, N1 = 74 (rounded)
    assert "N0=200 N1=74" in line


def _one_step(decay, wd, lr=0.1):
    torch.manual_seed(0)
    model = Classifier("imagenet")
    cfg = T.TrainConfig(decay=decay, weight_decay=wd, lr=lr, progress=False)
    opt = T.make_optimizer(model, cfg)
    w0 = model.head.weight.detach().clone()
    h = torch.randn(16, 512)
    y = (torch.rand(16) > 0.5).float()
    loss = T.bce(model.forward_head(h), y)
    opt.zero_grad()
    loss.backward()
    g = model.head.weight.grad.detach().clone()
    opt.step()
    return w0, g, model.head.weight.detach()


def test_decoupled_and_coupled_weight_decay_match_spec():
    """§4: AdamW w1 = (1 - eta lambda) w0 - eta g_hat; L2 feeds g + lambda w0 to Adam."""
    lr, wd, eps = 0.1, 0.5, 1e-8
    w0, g, w1 = _one_step("decoupled", wd, lr)
    # First Adam step with bias correction: g_hat = g / (|g| + eps) elementwise.
    torch.testing.assert_close(w1, (1 - lr * wd) * w0 - lr * g / (g.abs() + eps))
    w0, g, w1 = _one_step("l2", wd, lr)
    gl2 = g + wd * w0
    torch.testing.assert_close(w1, w0 - lr * gl2 / (gl2.abs() + eps))


def test_no_decay_on_biases_and_bn():
    opt = T.make_optimizer(Classifier("imagenet"), T.TrainConfig(weight_decay=0.1))
    for group in opt.param_groups:
        for p in group["params"]:
            assert (group["weight_decay"] > 0) == (p.ndim >= 2)


def test_lr_schedules():
    exp = T.TrainConfig(lr_schedule="exp", gamma=0.8, epochs=10)
    assert [E.lr_factor(t, exp) for t in range(3)] == pytest.approx([1, 0.8, 0.64])  # §8
    cos = T.TrainConfig(lr_schedule="cosine", epochs=10)
    assert E.lr_factor(0, cos) == 1 and E.lr_factor(5, cos) == pytest.approx(0.5)
    warm = T.TrainConfig(lr_schedule="constant", warmup_epochs=3, epochs=10)
    assert [E.lr_factor(t, warm) for t in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1, 1])


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"label_fraction": 0.0}, "label-fraction"),
        ({"epochs": -1}, "epochs"),
        ({"lr": 0}, "lr"),
        ({"mode": "partial"}, "mode"),
        ({"dataset": "x"}, "unknown dataset"),
        ({"init": "/nonexistent.safetensors"}, "no such file"),
        ({"augment": "heavy"}, "preset"),
    ],
)
def test_bad_options(kw, msg):
    with pytest.raises(MedsslError, match=msg):
        T.TrainConfig(**kw)


def _cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "medssl.cli", *args], capture_output=True, text=True, **kw
    )


def test_cli_errors_are_one_line_and_nonzero(tmp_path, data_root):
    r = _cli("train", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "file not found" in r.stderr
    assert not (tmp_path / "r").exists()  # nothing half-written
    r = _cli("train", "--label-fraction", "2", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "label-fraction" in r.stderr
    (tmp_path / "afile").write_text("x")  # --out that is a file: one line, not a traceback
    r = _cli("train", "--data-root", str(data_root), "--out", str(tmp_path / "afile"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "is a file" in r.stderr
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("medssl ")


def test_cli_config_file_and_override(tmp_path, data_root):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"dataset: breastmnist\ndata_root: {data_root}\nepochs: 1\n"
        f"label_fraction: 0.2\nout: {tmp_path / 'r'}\nseed: 3\n"
    )
    r = _cli("train", "--config", str(cfg), "--seed", "4", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "positive class: label 0 (malignant)" in r.stdout
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "seed: 4" in saved and "epochs: 1" in saved


def test_nonfinite_loss_stops_with_step(tmp_path, data_root, monkeypatch):
    monkeypatch.setattr(T, "bce", lambda z, y: (z * float("nan")).mean())
    cfg = _cfg(tmp_path, data_root=str(data_root), epochs=2, label_fraction=0.1, loss="bce")
    with pytest.raises(MedsslError, match="epoch 0, step 0; no checkpoint was saved"):
        T.train(cfg, log=quiet)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_every_subcommand_has_a_handler_and_help():
    from medssl.cli import HANDLERS, build_parser
    from medssl.options import COMMANDS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS) == set(HANDLERS)
    for name in sub.choices:
        r = _cli(name, "--help")
        assert r.returncode == 0 and "usage: medssl " + name in r.stdout


def test_resolve_device_checks_names_and_turns_on_cudnn_autotuning(monkeypatch):
    assert R.resolve_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "banana", "meta"):
        with pytest.raises(MedsslError, match="--device must be auto, cpu, cuda or cuda:N"):
            R.resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MedsslError, match="no CUDA device"):
        R.resolve_device("cuda")
    assert R.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with pytest.raises(MedsslError, match="only 1 CUDA device"):
        R.resolve_device("cuda:3")
    assert R.resolve_device("cuda:0") == torch.device("cuda", 0)
    assert torch.backends.cudnn.benchmark is True


def test_the_dataset_recipe_fills_only_what_is_unset():
    from medssl import data as D

    for name, info in D.DATASETS.items():
        cfg = T.TrainConfig(dataset=name)
        assert {k: getattr(cfg, k) for k in info.recipe} == info.recipe
        mine = T.TrainConfig(dataset=name, epochs=2, lr=0.05, stem=None)
        assert (mine.epochs, mine.lr, mine.stem) == (2, 0.05, info.recipe.get("stem", mine.stem))
        again = T.TrainConfig(**mine.to_dict())  # a saved config.yaml resolves to itself
        assert again.to_dict() == mine.to_dict()
