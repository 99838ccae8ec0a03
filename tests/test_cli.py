"""Config files for every command, config round trips, example configs, shell completion."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medssl.models import Encoder, metadata, save_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "configs").glob("*.yaml"))


def _cli(*args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "medssl.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=None if env is None else os.environ | env,
        **kw,
    )


def test_example_configs_resolve(tmp_path, data_root):
    """Every shipped example is a valid config of the command it names."""
    enc = tmp_path / "encoder.safetensors"
    save_model(Encoder("imagenet"), enc, metadata("encoder", Encoder("imagenet")))
    assert len(EXAMPLES) >= 8
    for path in EXAMPLES:
        file_opts = yaml.safe_load(path.read_text())
        command = file_opts.pop("command")
        extra = []  # encoder paths point at runs a user makes first: give a real file here
        if "init" in file_opts and file_opts["init"].endswith(".safetensors"):
            extra = ["--init", enc]
        if "encoder" in file_opts:
            extra = ["--encoder", enc]
        r = _cli(
            command,
            "--config",
            path,
            "--print-config",
            *extra,
            env={"MEDSSL_DATA_ROOT": str(data_root)},
        )
        assert r.returncode == 0, (path.name, r.stderr)
        resolved = yaml.safe_load(r.stdout)
        assert resolved["command"] == command
        for key, value in file_opts.items():
            if key not in ("init", "encoder"):
                assert resolved[key] == value, (path.name, key)


def test_config_of_another_command_and_unknown_keys_are_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("command: pretrain\nepochs: 3\n")
    r = _cli("train", "--config", cfg, "--print-config")
    assert r.returncode == 2 and "is a `pretrain` config" in r.stderr
    assert r.stderr.count("\n") == 1
    cfg.write_text("epochs: 3\nlearning_rate: 0.1\n")
    r = _cli("train", "--config", cfg, "--print-config")
    assert r.returncode == 2 and "unknown train options ['learning_rate']" in r.stderr
    r = _cli("evaluate", "x", "--config", tmp_path / "missing.yaml")
    assert r.returncode == 2 and "missing.yaml: YAML file not found" in r.stderr


def test_saved_run_config_reproduces_the_run(tmp_path, data_root):
    """`medssl train --config RUN/config.yaml --out NEW` repeats the run bit for bit."""
    a = tmp_path / "a"
    r = _cli(
        "train",
        "--data-root",
        data_root,
        "--out",
        a,
        "--epochs",
        "2",
        "--stem",
        "imagenet",
        "--label-fraction",
        "0.2",
        "--seed",
        "5",
        "--no-progress",
        "--no-tensorboard",
    )
    assert r.returncode == 0, r.stderr
    assert not (a / "tensorboard").exists()
    b = tmp_path / "b"
    r = _cli("train", "--config", a / "config.yaml", "--out", b, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert (a / "predictions.csv").read_text() == (b / "predictions.csv").read_text()
    sa, sb = (yaml.safe_load((d / "config.yaml").read_text()) for d in (a, b))
    assert sa.pop("out") != sb.pop("out")
    assert sa.pop("tensorboard") is False and sb.pop("tensorboard") is False
    assert sa == sb


def test_config_for_the_other_commands(tmp_path, data_root):
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"dataset: pneumoniamnist\ndata_root: {data_root}\n")
    r = _cli("data", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert "pneumoniamnist" in r.stdout and "breastmnist" not in r.stdout
    cfg.write_text(f"data_root: {data_root}\nimages: 2\nviews: 3\nout: {tmp_path / 'g.png'}\n")
    r = _cli("augment-preview", "--config", cfg, "--views", "4")
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size[0] > 0
    cfg.write_text("budget: standard\ndataset: pneumoniamnist\n")
    r = _cli("study", "--config", cfg, "--print-config", "--budget", "full")
    resolved = yaml.safe_load(r.stdout)
    assert resolved["budget"] == "full" and resolved["dataset"] == "pneumoniamnist"
    cfg.write_text("n_bootstrap: 0\n")
    r = _cli("evaluate", tmp_path, "--config", cfg)
    assert (
        r.returncode == 2
        and "data.yaml: n_bootstrap: input should be greater than or equal to 1" in r.stderr
    )


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shell_completion(shell, tmp_path):
    r = _cli("completion", shell)
    assert r.returncode == 0, r.stderr
    for word in ("pretrain", "study", "--label-fraction", "--budget"):
        assert word in r.stdout
    if shell == "bash":
        script = tmp_path / "medssl.bash"
        script.write_text(r.stdout)
        check = subprocess.run(
            ["bash", "-c", f"source {script} && complete -p medssl"],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0 and "medssl" in check.stdout, check.stderr


def test_data_command_refuses_bad_size_and_differing_md5(tmp_path, data_root):
    r = _cli("data", "--size", "32")
    assert r.returncode == 2 and "--size: must be one of" in r.stderr
    assert r.stderr.count("\n") == 1
    import numpy as np

    with np.load(data_root / "breastmnist.npz") as f:  # same arrays, re-saved: other bytes
        np.savez(tmp_path / "breastmnist.npz", **{k: f[k] for k in f.files})
    r = _cli("data", "--dataset", "breastmnist", "--data-root", tmp_path)
    assert r.returncode == 2 and "MD5 differs" in r.stderr and "DIFFERS" in r.stdout


def test_docs_option_tables_match_the_declarations():
    """docs/commands/COMMAND.md shows exactly the table made from medssl.options (regenerate
    with `python scripts/option_tables.py`)."""
    from medssl.options import COMMANDS, TABLE_BEGIN, TABLE_END, markdown_table

    for command, cls in COMMANDS.items():
        page = (REPO / "docs" / "commands" / f"{command}.md").read_text(encoding="utf-8")
        start, end = page.index(TABLE_BEGIN), page.index(TABLE_END) + len(TABLE_END)
        assert page[start:end] == markdown_table(cls), f"{command}.md: run scripts/option_tables.py"


def test_parser_is_made_from_the_declarations_and_help_needs_no_torch():
    from medssl.cli import build_parser
    from medssl.options import COMMANDS, option_rows

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for command, cls in COMMANDS.items():
        flags = {s for a in sub.choices[command]._actions for s in a.option_strings}
        assert {row[0].split()[0] for row in option_rows(cls)} <= flags, command
        dests = {a.dest for a in sub.choices[command]._actions}
        assert set(cls.model_fields) - {"augment_overrides"} <= dests, command
    code = "import sys; import medssl.cli as c; c.build_parser(); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_yaml_and_command_line_values_are_checked_alike(tmp_path):
    """The same value is accepted or refused the same way from a config file and a flag."""
    from medssl.errors import MedsslError
    from medssl.options import TrainConfig

    for key, good, bad in (("epochs", "3", "1.7"), ("lr", "1e-3", "nan"), ("seed", "2", "-1")):
        flag = TrainConfig.parse({key: good})
        yaml_value = TrainConfig.parse(yaml.safe_load(f"{key}: {good}"))
        assert getattr(flag, key) == getattr(yaml_value, key)
        for value in (bad, yaml.safe_load(f"v: {bad}")["v"]):
            with pytest.raises(MedsslError, match=key):
                TrainConfig.parse({key: value})
    with pytest.raises(MedsslError, match="epochs"):  # YAML `true` is not the number 1
        TrainConfig.parse({"epochs": True})
