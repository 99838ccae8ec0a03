"""`medssl predict`: new images through a trained run, with calibration and thresholds."""

import csv
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from medssl.calibration import sigmoid
from medssl.commands.evaluate import evaluate_run, load_classifier_run, read_predictions
from medssl.commands.predict import load_inputs, predict_run
from medssl.errors import MedsslError


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    from medssl.commands.train import TrainConfig, train

    out = tmp_path_factory.mktemp("predict") / "run"
    cfg = TrainConfig(
        data_root=str(data_root), out=str(out), stem="imagenet", epochs=1, progress=False
    )
    train(cfg, log=lambda *a: None)
    return out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_official_test_images_reproduce_the_runs_own_predictions(run, data_root, tmp_path):
    saved = read_predictions(load_classifier_run(run, "test"))["test"]["logit"]
    out = tmp_path / "p.csv"
    rows = predict_run(run, [f"{data_root}/breastmnist.npz:test_images"], out)
    z = np.array([r["logit"] for r in rows])
    np.testing.assert_allclose(z, saved, rtol=0, atol=1e-5)
    assert [r["index"] for r in rows] == list(range(len(saved)))
    on_disk = _rows(out)
    assert len(on_disk) == len(saved) and float(on_disk[3]["logit"]) == pytest.approx(z[3])
    # Before `evaluate`: probability and the p >= 0.5 decision only (positive = malignant).
    assert set(on_disk[0]) == {"source", "index", "logit", "probability", "decision_p>=0.5"}
    for r in rows:
        assert r["probability"] == pytest.approx(float(sigmoid(r["logit"])))
        assert (r["decision_p>=0.5"] == "malignant") == (r["probability"] >= 0.5)


def test_png_files_and_folders_match_the_arrays(run, data_root, tmp_path):
    images = np.load(data_root / "breastmnist.npz")["test_images"]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in (0, 5, 7):
        Image.fromarray(images[i]).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image: skipped by the folder listing")
    x, sources = load_inputs([str(folder)], 28)
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0], images[[0, 5, 7]])
    assert [s for s, _ in sources] == [str(folder / f"img{i}.png") for i in (0, 5, 7)]
    # RGB and a larger size are converted to the classifier's grayscale 28 x 28.
    Image.fromarray(images[0]).convert("RGB").resize((64, 64)).save(tmp_path / "big.jpg")
    x, _ = load_inputs([str(tmp_path / "big.jpg")], 28)
    assert x.shape == (1, 1, 28, 28)
    assert np.abs(x[0, 0].astype(int) - images[0]).mean() < 12  # a resized look-alike
    np.save(tmp_path / "a.npy", images[:4])
    x, sources = load_inputs([str(tmp_path / "a.npy")], 28)
    np.testing.assert_array_equal(x[:, 0], images[:4])
    assert sources == [(str(tmp_path / "a.npy"), i) for i in range(4)]


def test_after_evaluate_calibrated_probabilities_and_operating_points(run, data_root, tmp_path):
    ev = evaluate_run(run, n_boot=20, images=False)
    rows = predict_run(run, [f"{data_root}/breastmnist.npz:test_images"], tmp_path / "p.csv")
    t = ev["temperature"]
    y = read_predictions(load_classifier_run(run, "test"))["test"]["target"]
    for rule, op in ev["operating_points"].items():
        called = np.array([r[f"decision_{rule}"] == "malignant" for r in rows])
        # The decisions at each val-chosen threshold give evaluate's own test confusion matrix.
        assert int(np.sum(called & (y == 1))) == op["test"]["tp"]
        assert int(np.sum(called & (y == 0))) == op["test"]["fp"]
    for r in rows[:10]:
        assert r["probability_calibrated"] == pytest.approx(float(sigmoid(r["logit"] / t)))


@pytest.mark.parametrize(
    "make,msg",
    [
        (lambda d: d / "missing.png", "no such file or folder"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no image files"),
        (lambda d: (d / "bad.png").write_bytes(b"not a png") and d / "bad.png", "not a readable"),
        (lambda d: np.save(d / "f.npy", np.zeros((2, 28, 28))) or d / "f.npy", "uint8"),
        (lambda d: (d / "t.npz").write_bytes(b"PK\x03\x04trunc") and d / "t.npz", "not a readable"),
        (
            lambda d: np.save(d / "s.npy", np.zeros((2, 3, 4, 5), np.uint8)) or d / "s.npy",
            r"expected \(N, H, W\)",
        ),
        (
            lambda d: (
                np.savez(
                    d / "two.npz",
                    a_images=np.zeros((1, 28, 28), np.uint8),
                    b_images=np.zeros((1, 28, 28), np.uint8),
                )
                or d / "two.npz"
            ),
            "name the images array",
        ),
    ],
)
def test_bad_inputs_are_one_clear_error(run, tmp_path, make, msg):
    path = make(tmp_path)
    with pytest.raises(MedsslError, match=msg):
        predict_run(run, [str(path)], tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_cli_predict_and_refusals(run, data_root, tmp_path):
    cli = [sys.executable, "-m", "medssl.cli", "predict"]
    src = f"{data_root}/breastmnist.npz:val_images"
    r = subprocess.run(
        [*cli, str(run), src, "--out", str(tmp_path / "v.csv")], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "78 images scored" in r.stdout and "malignant:" in r.stdout
    assert len(_rows(tmp_path / "v.csv")) == 78
    # An SSL encoder folder, or a folder as --out, is refused in one line, writing nothing.
    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "config.yaml").write_text("dataset: breastmnist\n")
    (enc / "encoder.safetensors").write_bytes(b"")
    r = subprocess.run(
        [*cli, str(enc), src, "--out", str(tmp_path / "e.csv")], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "SSL encoder" in r.stderr
    r = subprocess.run(
        [*cli, str(run), src, "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "is a folder" in r.stderr
    assert not (tmp_path / "e.csv").exists()
