"""Linear probes on cached features: logistic-regression equivalence, grid outputs, CLI."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from medssl.commands import probe as PR
from medssl.errors import MedsslError
from medssl.models import Classifier, metadata, save_model


def test_fit_probe_is_l2_logistic_regression():
    """The chosen model is sklearn's L2 logistic regression on standardised features
    (docs/math.md §7)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10))
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    vx = rng.normal(size=(80, 10))
    vy = (vx[:, 0] > 0).astype(int)
    clf, mean, std, c, val_auc = PR.fit_probe(x, y, vx, vy, [0.01, 1.0])
    ref = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / std, y)
    np.testing.assert_allclose(clf.coef_, ref.coef_, rtol=1e-6)
    assert val_auc > 0.9
    # A degenerate C grid of one value is that value.
    assert PR.fit_probe(x, y, vx, vy, [0.5])[3] == 0.5


def test_probe_grid_on_real_data(tmp_path, data_root):
    torch.manual_seed(0)
    clf = Classifier("imagenet")
    path = tmp_path / "clf.safetensors"
    save_model(clf, path, metadata("classifier", clf.encoder))
    cfg = PR.ProbeConfig(
        encoder=str(path),
        dataset="breastmnist",
        data_root=str(data_root),
        out=str(tmp_path / "p"),
        label_fractions="0.1,1.0",
        seeds="0,1",
        c_grid="0.01,1",
        progress=False,
    )
    s = PR.probe(cfg, log=lambda *a: None)
    rows = list(csv.DictReader((tmp_path / "p" / "results.csv").open()))
    assert len(rows) == 4
    subsets = json.loads((tmp_path / "p" / "subsets.json").read_text())
    assert len(subsets["0.1/0"]) == 55 and subsets["0.1/0"] != subsets["0.1/1"]  # 40 + 15
    assert [e["label_fraction"] for e in s["table"]] == [0.1, 1.0]
    assert s["table"][1]["test_auroc_std"] == 0.0  # all labels: seeds give the same subset
    assert (tmp_path / "p" / "label_efficiency.png").stat().st_size > 0
    assert "| 0.1 | 55 |" in (tmp_path / "p" / "table.md").read_text()
    # t-SNE map of all 156 test images, with their targets; the resolved config is saved
    emb = list(csv.DictReader((tmp_path / "p" / "embedding.csv").open()))
    assert len(emb) == 156 and sum(int(r["target"]) for r in emb) == 42
    assert (tmp_path / "p" / "embedding.png").stat().st_size > 0
    saved = (tmp_path / "p" / "config.yaml").read_text()
    assert "command: probe" in saved and yaml.safe_load(saved)["label_fractions"] == [0.1, 1.0]


def test_embed_2d_subsamples_and_is_seeded():
    x = np.random.default_rng(0).normal(size=(60, 8))
    xy, rows = PR.embed_2d(x, max_points=40)
    assert xy.shape == (40, 2) and len(set(rows.tolist())) == 40 and rows.max() < 60
    xy2, rows2 = PR.embed_2d(x, max_points=40)
    assert np.array_equal(rows, rows2) and np.allclose(xy, xy2)


def test_probe_refuses_projection_heads_and_bad_lists(tmp_path):
    from medssl.models import ProjectionHead, metadata

    head = ProjectionHead()
    path = tmp_path / "head.safetensors"
    save_model(head, path, {**metadata("projection_head", Classifier().encoder)})
    with pytest.raises(MedsslError, match="expected encoder or classifier"):
        PR.load_encoder(str(path))
    with pytest.raises(MedsslError, match="label-fractions"):
        PR.ProbeConfig(label_fractions="0.1,abc")
    with pytest.raises(MedsslError, match="label-fractions"):
        PR.ProbeConfig(label_fractions="0,0.5")


def test_augment_preview_cli(tmp_path, data_root):
    out = tmp_path / "grid.png"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "medssl.cli",
            "augment-preview",
            "--dataset",
            "pneumoniamnist",
            "--data-root",
            str(data_root),
            "--images",
            "2",
            "--views",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
