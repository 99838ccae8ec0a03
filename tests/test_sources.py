"""Your own data: folders, CSV and npz sources, conversions, the cache, unlabeled pools, and the
identity check on the exported BreastMNIST (folder tree and CSV read back as the npz)."""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from medssl import cli
from medssl import data as D
from medssl.data import pools, sources
from medssl.errors import MedsslError


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_root):
    """BreastMNIST written by `medssl data --export` (folder tree + labels.csv)."""
    root = tmp_path_factory.mktemp("export")
    assert cli.main(["data", "--dataset", "breastmnist", "--data-root", str(data_root),
                     "--export", str(root / "breast")]) == 0  # fmt: skip
    return root / "breast"


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def _tree(root, n=12, size=28, classes=("a", "b")):
    """A folder ROOT/{class}/img{i}.png of distinct grey images (no splits)."""
    rng = np.random.default_rng(0)
    for c in classes:
        for i in range(n):
            _png(root / c / f"img{i:03d}.png", rng.integers(0, 256, (size, size), np.uint8))
    return root


def test_exported_folder_and_csv_read_back_as_the_npz(exported, data_root):
    npz = D.load_arrays("breastmnist", data_root)
    for source in (exported, exported / "labels.csv"):
        got = D.load_arrays(str(source))
        for split in D.SPLITS:
            assert np.array_equal(got[split][0], npz[split][0]), (source, split)
            assert np.array_equal(got[split][1], npz[split][1]), (source, split)
    info = D.dataset_info(str(exported))
    assert info.label_names == {0: "malignant", 1: "normal-benign"}
    assert D.resolve_positive(info, "malignant") == 0
    with pytest.raises(MedsslError, match="--positive-class is required"):
        D.resolve_positive(info, None)


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())["test"]


def test_train_probe_evaluate_identical_from_npz_folder_and_csv(exported, data_root, tmp_path):
    """The same seed and split give the same numbers whatever form the data comes in."""
    runs = {}
    for name, dataset in {"npz": "breastmnist", "folder": str(exported),
                          "csv": str(exported / "labels.csv")}.items():  # fmt: skip
        out = tmp_path / f"train-{name}"
        # by name the data gets BreastMNIST's recipe, by path the user-data one: pin them all
        recipe = D.DATASETS["breastmnist"].recipe | {"epochs": 1, "stem": "imagenet"}
        pinned = [x for k, v in recipe.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        argv = ["train", "--dataset", dataset, "--data-root", str(data_root), "--positive-class",
                "malignant", *pinned, "--label-fraction", "0.5",
                "--out", str(out), "--no-progress", "--no-tensorboard"]  # fmt: skip
        assert cli.main(argv) == 0
        assert cli.main(["evaluate", str(out), "--n-bootstrap", "20", "--no-images"]) == 0
        probe = tmp_path / f"probe-{name}"
        argv = ["probe", "--dataset", dataset, "--data-root", str(data_root), "--positive-class",
                "malignant", "--label-fractions", "0.2,1", "--seeds", "0", "--out", str(probe),
                "--no-progress", "--no-tensorboard", "--no-embedding"]  # fmt: skip
        assert cli.main(argv) == 0
        runs[name] = (out, probe)
    ref_train, ref_probe = runs["npz"]
    for name in ("folder", "csv"):
        out, probe = runs[name]
        assert _metrics(out) == _metrics(ref_train), name
        ev = json.loads((out / "evaluation.json").read_text())
        ref = json.loads((ref_train / "evaluation.json").read_text())
        assert ev["test"] == ref["test"] and ev["temperature"] == ref["temperature"], name
        assert (probe / "results.csv").read_text() == (ref_probe / "results.csv").read_text()
        record = json.loads((out / "data.json").read_text())
        assert record["classes"] == ["malignant", "normal-benign"]
        assert record["n"] == {"train": 546, "val": 78, "test": 156}
    medmnist = json.loads((ref_train / "data.json").read_text())  # a name: the preprocessing only
    assert medmnist["kind"] == "medmnist" and medmnist["preprocessing"]["bits"] == 8
    assert record["preprocessing"] == medmnist["preprocessing"]  # the same replay record


def test_folder_without_splits_gets_a_recorded_stratified_split(tmp_path, capsys):
    root = _tree(tmp_path / "mine", n=20)
    (root / "README.txt").write_text("not an image")  # outside the class folders: unseen
    (root / "a" / "notes.txt").write_text("ignored, and said")
    arrays = D.load_arrays(str(root))
    assert "ignored 1 non-image file(s) (notes.txt)" in capsys.readouterr().out
    n = {s: len(arrays[s][1]) for s in D.SPLITS}
    assert n == {"train": 28, "val": 4, "test": 8}  # 7:1:2 of each class of 20
    for s in D.SPLITS:
        assert np.bincount(arrays[s][1]).tolist() == [n[s] // 2] * 2
    again = D.load_arrays(str(root))
    assert all(np.array_equal(arrays[s][0], again[s][0]) for s in D.SPLITS)
    record = sources.loaded_record(str(root), 28)
    assert "made by medssl" in record["split"]
    files = record["split_files"]
    assert len(files["test"]) == 8 and not set(files["test"]) & set(files["train"])


def test_csv_without_a_split_column_gets_the_recorded_split(tmp_path, capsys):
    """The documented `path,label` form (no `split`): medssl splits it 7:1:2 and records the
    files relative to the CSV's folder (it was an internal error)."""
    root = _tree(tmp_path / "imgs", n=20)
    rows = ["path,label"] + [
        f"imgs/{c}/{f.name},{c}" for c in ("a", "b") for f in sorted((root / c).iterdir())
    ]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    csv = str(tmp_path / "labels.csv")
    assert cli.main(["data", "--dataset", csv]) == 0
    assert "made by medssl" in capsys.readouterr().out
    files = sources.loaded_record(csv, 28)["split_files"]
    assert len(files["test"]) == 8 and all(f.startswith("imgs/") for f in files["train"])
    out = tmp_path / "run"
    argv = ["train", "--dataset", csv, "--positive-class", "b", "--epochs", "1", "--out", str(out)]
    assert cli.main(argv + ["--no-progress", "--no-tensorboard", "--device", "cpu"]) == 0
    assert json.loads((out / "data.json").read_text())["split_files"] == files


def test_class_names_that_differ_only_in_case_need_the_exact_name(tmp_path):
    root = _tree(tmp_path / "mine", n=20, classes=("Lesion", "lesion"))
    info = D.dataset_info(str(root))
    assert D.resolve_positive(info, "lesion") == 1 and D.resolve_positive(info, "Lesion") == 0
    with pytest.raises(MedsslError, match="matches both classes"):
        D.resolve_positive(info, "LESION")
    other = D.dataset_info(str(_tree(tmp_path / "other", n=20, classes=("benign", "Lesion"))))
    assert D.resolve_positive(other, "lesion") == 0  # one case-folded match is still found


def test_train_records_the_split_and_evaluate_refuses_changed_data(tmp_path, capsys):
    root = _tree(tmp_path / "mine", n=20)
    out = tmp_path / "run"
    argv = [
        "train",
        "--dataset",
        str(root),
        "--positive-class",
        "b",
        "--epochs",
        "1",
        "--stem",
        "imagenet",
        "--out",
        str(out),
        "--no-progress",
        "--no-tensorboard",
    ]
    assert cli.main(argv) == 0
    record = json.loads((out / "data.json").read_text())
    assert record["classes"] == ["a", "b"] and "split_files" in record
    pred = tmp_path / "p.csv"
    assert cli.main(["predict", str(out), str(root / "a" / "img000.png"), "--out", str(pred)]) == 0
    assert "b" in pred.read_text() or "a" in pred.read_text()
    capsys.readouterr()
    # the user's data changes under the run: evaluating it would be on other images
    victim = root / "a" / "img005.png"
    _png(victim, np.full((28, 28), 7, np.uint8))
    assert cli.main(["evaluate", str(out), "--n-bootstrap", "5"]) == 2
    assert "differ from those" in capsys.readouterr().err


def test_conversions_are_counted_and_logged(tmp_path, capsys):
    rng = np.random.default_rng(1)
    root = tmp_path / "mixed"
    for i in range(10):
        _png(root / "x" / f"rgb{i}.png", rng.integers(0, 256, (40, 30, 3), np.uint8))
        _png(root / "y" / f"rgba{i}.png", rng.integers(0, 256, (28, 28, 4), np.uint8))
        _png(root / "y" / f"grey{i}.jpg", rng.integers(0, 256, (64, 64), np.uint8))
    arrays = D.load_arrays(str(root))
    log = capsys.readouterr().out
    assert "RGB to grey" in log and "alpha dropped" in log
    assert "pad 30x40 to square" in log and "resized from 64x64" in log
    assert all(a.shape[1:] == (28, 28) and a.dtype == np.uint8 for a, _ in arrays.values())
    stretch = D.Preprocessing(size=40, aspect="stretch")
    rgb, _ = sources.decode(root / "x" / "rgb0.png", stretch)  # as PIL's luma, then Lanczos
    pil = np.asarray(Image.open(root / "x" / "rgb0.png").convert("L").resize((40, 40),
                     Image.Resampling.LANCZOS))  # fmt: skip
    assert np.array_equal(rgb, pil)
    deep = rng.integers(0, 65536, (28, 28)).astype(np.uint16)
    Image.fromarray(deep).save(root / "x" / "deep0.png")
    with pytest.raises(MedsslError, match="mixed bit depths in one source"):
        D.load_arrays(str(root))


def test_the_cache_is_keyed_by_content(tmp_path, capsys):
    root = _tree(tmp_path / "mine", n=10)
    files = sorted(root.rglob("*.png"))
    first = sources.decode_files(files, 28, print, "pool")
    assert "from the cache" not in capsys.readouterr().out
    second = sources.decode_files(files, 28, print, "pool")
    assert "from the cache" in capsys.readouterr().out
    assert np.array_equal(first, second)
    _png(files[0], np.zeros((28, 28), np.uint8))  # same name, other content: decoded again
    third = sources.decode_files(files, 28, print, "pool")
    assert "from the cache" not in capsys.readouterr().out
    assert third[0].max() == 0 and np.array_equal(third[1:], first[1:])


def test_unlabeled_pool_mixes_sources_and_refuses_held_out_images(exported, data_root, tmp_path):
    pneu = D.load_arrays("pneumoniamnist", data_root)["train"][0]
    np.save(tmp_path / "extra.npy", pneu[:30])
    folder = tmp_path / "pool"
    for i in range(5):
        _png(folder / "deep" / "er" / f"{i}.png", pneu[100 + i])
    pool, seen = pools.load_pool(
        ["breastmnist", str(folder), str(tmp_path / "extra.npy")], data_root, 28
    )
    assert [s["n"] for s in seen] == [546, 5, 30] and len(pool) == 581
    assert np.array_equal(pool[546:551], pneu[100:105]) and np.array_equal(pool[551:], pneu[:30])
    splits = D.load_arrays("breastmnist", data_root)
    pools.check_pool(pool, splits, "breastmnist")  # its own training split is allowed
    with pytest.raises(MedsslError, match="validation/test images"):
        pools.check_pool(np.concatenate([pool, splits["test"][0][3:4]]), splits, "breastmnist")
    # an image in both train and test (the official BreastMNIST has one) is training data too
    both = set(sources.image_hashes(splits["train"][0])) & set(
        sources.image_hashes(splits["test"][0])
    )
    assert len(both) == 1


def test_pretrain_on_a_pool_records_what_the_encoder_saw(data_root, tmp_path):
    pneu = D.load_arrays("pneumoniamnist", data_root)["train"][0]
    np.save(tmp_path / "pneu.npy", pneu[:300])
    out = tmp_path / "pre"
    argv = ["pretrain", "--dataset", "breastmnist", "--data-root", str(data_root), "--unlabeled",
            f"breastmnist,{tmp_path / 'pneu.npy'}", "--epochs", "1", "--knn-every", "0",
            "--out", str(out), "--no-progress", "--no-tensorboard"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads((out / "pretrain.json").read_text())
    assert [s["n"] for s in summary["pretrained_on"]] == [546, 300]
    assert summary["n_train_images"] == 846


def test_study_on_own_data_with_cross_dataset_pretraining(exported, data_root, tmp_path):
    pneu = D.load_arrays("pneumoniamnist", data_root)["train"][0]
    np.save(tmp_path / "pneu.npy", pneu[:400])
    out = tmp_path / "study"
    argv = ["study", "--dataset", str(exported / "labels.csv"), "--positive-class", "malignant",
            "--pretrain-on", str(tmp_path / "pneu.npy"), "--budget", "smoke", "--device", "cpu",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["positive_class"] == {"label": 0, "name": "malignant"}
    assert summary["pretrain"]["simclr"]["pretrained_on"][0]["n"] == 400
    assert "pneu.npy (array, 400)" in (out / "report.html").read_text()


BAD = {
    "device link": lambda r: (_tree(r), (r / "a" / "img999.png").symlink_to("/dev/zero")),
    "class link": lambda r: (_tree(r, classes=("a",)), (r / "b").symlink_to(r / "a")),
    "one class": lambda r: _tree(r, classes=("a",)),
    "three classes": lambda r: _tree(r, classes=("a", "b", "c")),
    "empty class": lambda r: (_tree(r), shutil.rmtree(r / "b"), (r / "b").mkdir()),
    "corrupt image": lambda r: (_tree(r), (r / "a" / "img001.png").write_bytes(b"\x89PNGjunk")),
    "float image": lambda r: (
        _tree(r),
        Image.fromarray(np.zeros((28, 28), np.float32)).save(r / "a" / "img001.tif"),
    ),
    "splits incomplete": lambda r: (_tree(r / "train"), _tree(r / "val")),
    "classes differ by split": lambda r: [
        _tree(r / s, classes=c) for s, c in [("train", "ab"), ("val", "ab"), ("test", "ac")]
    ],  # fmt: skip
    "too few for a split": lambda r: _tree(r, n=3),
}
BAD_REASON = {
    "one class": "expected two class folders.*found 1",
    "three classes": "found 3",
    "empty class": "no images",
    "corrupt image": "img001.png: not a readable image",
    "device link": "img999.png: not a regular file",
    "class link": "are the same folder or one holds the other",
    "float image": "floating-point",
    "splits incomplete": "not all of train, val and test",
    "classes differ by split": "differ from train",
    "too few for a split": "too few for a 7:1:2 split",
}
CSV = {
    "csv missing file": "path,label\nnothere.png,a\n",
    "csv header": "file,class\nx.png,a\n",
    "csv one label": "path,label\na/img000.png,a\na/img001.png,a\n",
    "csv twice": "path,label,split\na/img000.png,a,train\na/img000.png,a,test\n",
    "csv bad split": "path,label,split\na/img000.png,a,training\n",
}
CSV_REASON = {
    "csv missing file": "do not exist, e.g. nothere.png",
    "csv header": "needs the columns path,label",
    "csv one label": "expected two labels",
    "csv twice": "listed twice",
    "csv bad split": "is not train, val or test",
}


def _world_hash(root):
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("case", sorted(BAD) + sorted(CSV))
def test_bad_sources_are_one_line_and_write_nothing(case, tmp_path, capsys):
    data = tmp_path / "data"
    if case in BAD:
        BAD[case](data)
        dataset, reason = data, BAD_REASON[case]
    else:
        _tree(data)
        (data / "list.csv").write_text(CSV[case])
        dataset, reason = data / "list.csv", CSV_REASON[case]
    before = _world_hash(tmp_path)
    cache_before = set(os.listdir(sources.cache_dir())) if sources.cache_dir().is_dir() else set()
    argv = ["train", "--dataset", str(dataset), "--positive-class", "1", "--out",
            str(tmp_path / "run"), "--epochs", "1"]  # fmt: skip
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("medssl: error: "), err
    import re

    assert re.search(reason, err), err
    assert _world_hash(tmp_path) == before
    after = set(os.listdir(sources.cache_dir())) if sources.cache_dir().is_dir() else set()
    assert not {f for f in after - cache_before if not f.endswith(".json") and "tmp" in f}


@pytest.mark.parametrize(
    "argv,reason",
    [
        (["train", "--dataset", "{data}"], "--positive-class is required"),
        (["train", "--dataset", "{data}", "--positive-class", "c"], "is not a class of"),
        (["train", "--dataset", "{tmp}/nope"], "nor an existing folder, .csv or .npz"),
        (["train", "--dataset", "{tmp}/x.txt"], "nor an existing folder"),
        (["pretrain", "--unlabeled", "{tmp}/nope"], "nor an existing folder, .npz or .npy"),
        (["pretrain", "--unlabeled", "{tmp}/x.txt"], "nor an existing folder, .npz or .npy"),
        (["pretrain", "--unlabeled", "{tmp}/empty"], "no images in this folder"),
        (["pretrain", "--unlabeled", "{tmp}/bad.npy"], "dtype float64"),
        (["data", "--export", "{tmp}/data"], "--export writes one dataset"),
        (["data", "--dataset", "breastmnist", "--export", "{data}"], "not a new or empty folder"),
        (["study", "--dataset", "{data}"], "--positive-class is required"),
        (
            ["study", "--dataset", "{data}", "--positive-class", "a", "--pretrain-on", "{data}"],
            "validation/test images",
        ),  # fmt: skip
    ],
)
def test_bad_options_for_own_data(argv, reason, tmp_path, capsys, data_root, monkeypatch):
    monkeypatch.setenv("MEDSSL_DATA_ROOT", str(data_root))
    monkeypatch.chdir(tmp_path)
    data = _tree(tmp_path / "data")
    (tmp_path / "x.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "bad.npy", np.zeros((3, 28, 28)))
    before = _world_hash(tmp_path)
    args = [a.format(data=data, tmp=tmp_path) for a in argv] + ["--out", str(tmp_path / "o")]
    if args[0] == "data":
        args = args[:-2]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err, err
    assert _world_hash(tmp_path) == before


def test_data_report_and_augment_preview_on_own_data(tmp_path, capsys):
    root = _tree(tmp_path / "mine", n=20)
    assert cli.main(["data", "--dataset", str(root)]) == 0
    out = capsys.readouterr().out
    assert "labels 0 = a, 1 = b" in out and "made by medssl" in out and "n=    28" in out
    png = tmp_path / "views.png"
    argv = ["augment-preview", "--dataset", str(root), "--images", "2", "--out", str(png)]
    assert cli.main(argv) == 0 and png.is_file()
