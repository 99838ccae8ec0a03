"""Guarantees: kill -9 then --resume gives the uninterrupted result, run locks, safe YAML,
and property-based invariances of the metrics."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medssl import metrics as M
from medssl.errors import MedsslError
from medssl.io.rundir import read_yaml, run_lock

TRAIN = [
    "--dataset",
    "breastmnist",
    "--stem",
    "imagenet",
    "--epochs",
    "4",
    "--label-fraction",
    "0.5",
    "--seed",
    "5",
    "--no-progress",
]


def _medssl(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "medssl.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.slow
def test_kill9_mid_run_then_resume_matches_uninterrupted(tmp_path, data_root):
    ref = _medssl("train", *TRAIN, "--data-root", str(data_root), "--out", str(tmp_path / "ref"))
    assert ref.wait(timeout=600) == 0, ref.stderr.read()

    out = tmp_path / "killed"
    proc = _medssl("train", *TRAIN, "--data-root", str(data_root), "--out", str(out))
    deadline = time.time() + 600
    while time.time() < deadline:  # kill -9 once epoch 1 is checkpointed, inside epoch 2
        hist = out / "history.jsonl"
        if hist.is_file() and len(hist.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    # Whatever the kill interrupted, every file under its final name is complete.
    torch.load(out / "last.pt", weights_only=True)
    [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    res = _medssl("train", *TRAIN, "--data-root", str(data_root), "--out", str(out), "--resume")
    assert res.wait(timeout=600) == 0, res.stderr.read()
    assert "resumed" in res.stdout.read() + res.stderr.read()
    assert not list(out.glob(".*.medssl-tmp"))  # a killed writer's temp files are cleared on resume
    assert (out / "predictions.csv").read_text() == (
        tmp_path / "ref" / "predictions.csv"
    ).read_text()
    a = json.loads((out / "metrics.json").read_text())
    b = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["val"] == b["val"]


def test_run_lock_refuses_live_owner_and_clears_stale(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / ".lock").write_text(str(sleeper.pid))
        with pytest.raises(MedsslError, match="in use by process"):
            with run_lock(tmp_path):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    # The owner is gone: its stale lock is taken over, and released afterwards.
    with run_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("epochs: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(MedsslError, match="cannot read YAML"):
        read_yaml(evil)
    assert not (tmp_path / "pwned").exists()


# ---- property-based invariances of the metrics ----

labels = st.lists(st.integers(0, 1), min_size=2, max_size=60)


@settings(max_examples=60, deadline=None)
@given(labels, st.integers(0, 2**31 - 1))
def test_auroc_invariant_under_monotone_transforms(y, seed):
    y = np.array(y)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    scores = np.random.default_rng(seed).normal(size=len(y)).round(1)  # ties on purpose
    a = M.auroc(y, scores)
    assert M.auroc(y, 3 * scores + 1) == pytest.approx(a)
    assert M.auroc(y, np.exp(scores)) == pytest.approx(a)
    assert M.auroc(y, 1 / (1 + np.exp(-scores))) == pytest.approx(a)
    assert M.auroc(y, -scores) == pytest.approx(1 - a)  # order reversed
    assert M.auroc(1 - y, scores) == pytest.approx(1 - a)  # classes swapped


@settings(max_examples=60, deadline=None)
@given(labels, st.integers(0, 2**31 - 1), st.integers(1, 30))
def test_ece_in_unit_interval_and_ba_symmetric(y, seed, n_bins):
    y = np.array(y)
    p = np.random.default_rng(seed).uniform(size=len(y))
    ece = M.expected_calibration_error(y, p, n_bins)
    assert 0.0 <= ece <= 1.0
    # Swapping the classes (and the predicted class) leaves balanced accuracy unchanged.
    pred = (p >= 0.5).astype(float)
    swapped = M.balanced_accuracy(1 - y, 1 - pred)
    assert swapped == pytest.approx(M.balanced_accuracy(y, pred))


def test_two_concurrent_runs_do_not_interfere(tmp_path, data_root):
    """Two processes training at once into different run dirs give the numbers each gives
    alone; a third process pointed at a busy run dir is refused by the lock."""
    args = [
        "train",
        "--dataset",
        "breastmnist",
        "--stem",
        "imagenet",
        "--epochs",
        "1",
        "--label-fraction",
        "0.2",
        "--no-progress",
        "--data-root",
        str(data_root),
    ]
    a = _medssl(*args, "--seed", "1", "--out", str(tmp_path / "a"))
    b = _medssl(*args, "--seed", "2", "--out", str(tmp_path / "b"))
    deadline = time.time() + 120
    while not (tmp_path / "a" / ".lock").exists() and time.time() < deadline:
        time.sleep(0.02)
    c = _medssl(*args, "--seed", "3", "--out", str(tmp_path / "a"))
    # c refuses either way: by the lock while a runs, or because a finished with other options.
    assert c.wait(timeout=300) == 2
    assert re.search("in use by process|finished train run with other options", c.stderr.read())
    assert a.wait(timeout=300) == 0 and b.wait(timeout=300) == 0
    alone = _medssl(*args, "--seed", "2", "--out", str(tmp_path / "b-alone"))
    assert alone.wait(timeout=300) == 0
    assert (tmp_path / "b" / "predictions.csv").read_text() == (
        tmp_path / "b-alone" / "predictions.csv"
    ).read_text()
