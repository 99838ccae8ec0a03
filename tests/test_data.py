"""Loading the official files through medmnist, positive-class mapping, subsets, bad files."""

import numpy as np
import pytest
import torch

from medssl import data as D
from medssl.errors import MedsslError

# Split sizes and label counts from ../shared/data/medmnist/README.md (medmnist INFO).
EXPECTED = {
    "breastmnist": {"train": (546, 399), "val": (78, 57), "test": (156, 114)},
    "pneumoniamnist": {"train": (4708, 3494), "val": (524, 389), "test": (624, 390)},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_splits_and_positive_class(name, data_root):
    splits = D.load_splits(name, data_root, verify_md5=True)
    info = D.dataset_info(name)
    for split, (n, n_label1) in EXPECTED[name].items():
        sp = splits[split]
        assert sp.images.shape == (n, 1, 28, 28) and sp.images.dtype == torch.uint8
        assert int((sp.labels == 1).sum()) == n_label1
        # targets mark the clinical positive: label 0 (malignant) for BreastMNIST.
        expected_pos = n_label1 if info.default_positive == 1 else n - n_label1
        assert int(sp.targets.sum()) == expected_pos
    assert info.label_names[info.default_positive] in ("malignant", "pneumonia")


def test_positive_class_override_and_names():
    info = D.dataset_info("breastmnist")
    assert D.resolve_positive(info, None) == 0
    assert D.resolve_positive(info, "malignant") == 0
    assert D.resolve_positive(info, "benign") == 1
    assert D.resolve_positive(info, "1") == 1
    with pytest.raises(MedsslError):
        D.resolve_positive(info, "tumour")
    with pytest.raises(MedsslError):
        D.resolve_positive(info, "2")
    with pytest.raises(MedsslError, match="unknown dataset"):
        D.dataset_info("chestmnist")


def test_stratified_subset_is_seeded_and_stratified():
    targets = torch.tensor([1.0] * 300 + [0.0] * 100)
    a = D.stratified_subset(targets, 0.1, seed=3)
    b = D.stratified_subset(targets, 0.1, seed=3)
    c = D.stratified_subset(targets, 0.1, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(targets[a].sum()) == 30 and int((targets[a] == 0).sum()) == 10
    tiny = D.stratified_subset(targets, 0.005, seed=0)  # 1.5 -> 2 positives, 0.5 -> 1 negative
    assert sorted(targets[tiny].tolist()) == [0.0, 1.0, 1.0]
    with pytest.raises(MedsslError, match="cannot hold one example of each class"):
        D.stratified_subset(targets, 0.001, seed=0)
    assert torch.equal(D.stratified_subset(targets, 1.0, 0), torch.arange(400))
    with pytest.raises(MedsslError):
        D.stratified_subset(targets, 0.0, 0)
    with pytest.raises(MedsslError):
        D.stratified_subset(targets, 1.5, 0)


def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 6), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1), dtype=np.uint8)
    arrays.update(overrides)
    np.savez(path, **arrays)


def test_missing_file_message(tmp_path):
    with pytest.raises(MedsslError, match="file not found.*--data-root"):
        D.load_splits("breastmnist", tmp_path)


def test_corrupt_and_invalid_files(tmp_path):
    path = tmp_path / "breastmnist.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(MedsslError, match="breastmnist.npz"):
        D.load_splits("breastmnist", tmp_path)
    _write_npz(path, train_labels=np.full((20, 1), 3, dtype=np.uint8))
    with pytest.raises(MedsslError, match="not binary"):
        D.load_splits("breastmnist", tmp_path)
    _write_npz(path, val_images=np.zeros((6, 32, 32), dtype=np.uint8))
    with pytest.raises(MedsslError, match="shape"):
        D.load_splits("breastmnist", tmp_path)
    _write_npz(path, test_images=np.zeros((6, 28, 28), dtype=np.float32))
    with pytest.raises(MedsslError, match="dtype"):
        D.load_splits("breastmnist", tmp_path)
    _write_npz(path)
    del_keys = dict(np.load(path))
    del del_keys["test_labels"]
    np.savez(path, **del_keys)
    with pytest.raises(MedsslError, match="test"):
        D.load_splits("breastmnist", tmp_path)
    _write_npz(path, train_labels=np.zeros((20, 1), dtype=np.uint8))
    with pytest.raises(MedsslError, match="one class only"):
        D.load_splits("breastmnist", tmp_path)
    _write_npz(
        path,
        val_images=np.zeros((0, 28, 28), dtype=np.uint8),
        val_labels=np.zeros((0, 1), dtype=np.uint8),
    )
    with pytest.raises(MedsslError, match="val split is empty"):
        D.load_splits("breastmnist", tmp_path)
    _write_npz(path)
    with pytest.raises(MedsslError, match="MD5"):
        D.load_splits("breastmnist", tmp_path, verify_md5=True)
    assert len(D.load_splits("breastmnist", tmp_path)["train"]) == 20  # valid synthetic file


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv(D.DATA_ROOT_ENV, str(tmp_path))
    assert D.default_data_root() == tmp_path
    monkeypatch.delenv(D.DATA_ROOT_ENV)
    assert D.default_data_root().name == ".medmnist"


def test_dataset_summary_and_data_command(tmp_path, data_root):
    import subprocess
    import sys

    s = D.dataset_summary("pneumoniamnist", data_root)
    assert s["md5_ok"] and s["default_positive"] == {"label": 1, "name": "pneumonia"}
    assert s["splits"]["test"] == {"n": 624, "label_0": 234, "label_1": 390}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "medssl.cli",
            "data",
            "--data-root",
            str(data_root),
            "--export-samples",
            str(tmp_path / "png"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "label 0 (malignant)" in r.stdout and "MD5 matches" in r.stdout
    assert len(list((tmp_path / "png").glob("breastmnist_label0_*.png"))) == 4
    r = subprocess.run(
        [sys.executable, "-m", "medssl.cli", "data", "--data-root", str(tmp_path / "empty")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "medssl data --download" in r.stderr
    assert "breastmnist.npz" in r.stderr  # where to get it
