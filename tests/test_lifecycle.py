"""The run-folder lifecycle's refusals that unseen inputs found (issue 21): a tune storage that
cannot be opened, lies inside another run or holds another search; sample PNGs into a run
folder; a model file whose metadata is damaged. Each is one line, exit 2, nothing written."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from medssl import cli
from medssl.errors import MedsslError
from medssl.models import read_model

TINY = ["--folds", "2", "--max-epochs", "1", "--no-progress", "--device", "cpu"]


def _files(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        out[dirpath] = "dir"
        for n in names:
            p = Path(dirpath) / n
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _refused(argv: list[str], root: Path, capsys, reason: str) -> None:
    before = _files(root)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("medssl: error: ") and reason in err, err
    assert _files(root) == before


@pytest.fixture(scope="module")
def finished_train(tmp_path_factory, data_root) -> Path:
    out = tmp_path_factory.mktemp("runs") / "train"
    argv = ["train", "--dataset", "breastmnist", "--data-root", str(data_root), "--epochs", "1"]
    assert cli.main(argv + ["--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    return out


def test_tune_storage_refused_before_anything_is_written(tmp_path, data_root, capsys):
    base = ["tune", "--dataset", "breastmnist", "--data-root", str(data_root), *TINY]
    out = str(tmp_path / "t")
    _refused(base + ["--out", out, "--storage", "foo://x"], tmp_path, capsys, "--storage foo://x")
    bad = tmp_path / "bad.log"
    bad.write_text('{"a": 1}\n')  # JSON, but not an Optuna journal
    argv = base + ["--out", out, "--storage", str(bad)]
    _refused(argv, tmp_path, capsys, "not an Optuna journal")
    _refused(base + ["--out", out, "--storage", str(tmp_path / "no" / "j.log")], tmp_path, capsys,
             "not a file in an existing folder")  # fmt: skip
    assert not Path(out).exists()


def test_tune_storage_inside_another_run_is_refused(tmp_path, data_root, finished_train, capsys):
    base = ["tune", "--dataset", "breastmnist", "--data-root", str(data_root), *TINY]
    journal = finished_train / "journal.log"
    _refused(base + ["--out", str(tmp_path / "t"), "--storage", str(journal)], finished_train,
             capsys, "inside the run folder")  # fmt: skip
    assert not journal.exists() and not (tmp_path / "t").exists()


def test_joining_a_search_of_other_options_is_refused(tmp_path, data_root, capsys):
    journal = tmp_path / "journal.log"
    base = ["tune", "--dataset", "breastmnist", "--data-root", str(data_root), *TINY,
            "--storage", str(journal), "--trials", "1"]  # fmt: skip
    assert cli.main(base + ["--out", str(tmp_path / "a"), "--space", "stem=compact"]) == 0
    capsys.readouterr()
    other = base + ["--out", str(tmp_path / "b"), "--space", "stem=imagenet"]
    _refused(other, tmp_path, capsys, "is for other ['space']")
    again = base + ["--out", str(tmp_path / "c"), "--space", "stem=compact", "--trials", "1"]
    assert cli.main(again) == 0  # the same search may be joined


def test_export_samples_into_a_run_folder_is_refused(finished_train, data_root, capsys):
    argv = ["data", "--dataset", "breastmnist", "--data-root", str(data_root)]
    inside = finished_train / "samples"
    _refused(argv + ["--export-samples", str(inside)], finished_train, capsys, "inside the run")


@pytest.mark.parametrize(
    "key,value",
    [("stem", "resnet9000"), ("arch", "vit"), ("positive_label", "7"), ("val_auroc", "high"),
     ("epoch", "nan"), ("kind", "Teacher Model")],
)  # fmt: skip
def test_damaged_model_metadata_is_refused(finished_train, tmp_path, key, value, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for f in finished_train.iterdir():
        if f.is_file():
            (run / f.name).write_bytes(f.read_bytes())
    best = run / "best.safetensors"
    meta = read_model(best)[1] | {key: value}
    save_file(load_file(str(best)), str(best), metadata=meta)
    with pytest.raises(MedsslError, match=f"damaged medssl metadata.*{key}"):
        read_model(best)
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((2, 28, 28), np.uint8))
    _refused(["predict", str(run), str(image), "--out", str(tmp_path / "p.csv")], tmp_path,
             capsys, "damaged medssl metadata")  # fmt: skip
    assert json.loads((run / "metrics.json").read_text())["dataset"] == "breastmnist"
