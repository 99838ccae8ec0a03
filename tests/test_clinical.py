"""Clinical images (data/preprocess.py, data/dicom.py, commands/external.py) on real BreastMNIST
images: 16-bit PNG and DICOM trees decode to the official pixels and train identically, predict
replays the run's preprocessing, evaluate --dataset scores an external set with the run's own
temperature and thresholds, patient-level splits, pydicom's own test files, bad inputs."""

import hashlib
import json

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_windowing
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medssl import cli
from medssl import data as D
from medssl.data import sources
from medssl.data.dicom import window_linear
from medssl.data.preprocess import Preprocessing, read_file, to_8bit
from medssl.errors import MedsslError

RECIPE = D.DATASETS["breastmnist"].recipe | {"epochs": 1, "stem": "imagenet"}
PINNED = [x for k, v in RECIPE.items() for x in (f"--{k.replace('_', '-')}", str(v))]
WINDOW = (920.5, 2041.0)  # maps 8v - 100 (stored 16v, slope 0.5, intercept -100) back to v


def write_dicom(path, pixels, photometric="MONOCHROME2", bits=8, rescale=None, window=None,
                patient="P0"):  # fmt: skip
    """A single-frame DICOM file of `pixels` (uncompressed, explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        SecondaryCaptureImageStorage,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.PatientID, ds.Modality = patient, "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = (8 if bits <= 8 else 16), bits, bits - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint8 if bits <= 8 else np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _mirror(exported, root, write):
    """`root` holding a copy of every PNG of the exported tree, written by `write(path, v)`."""
    for png in sorted(exported.rglob("*.png")):
        v = np.asarray(Image.open(png))
        write(root / png.relative_to(exported), v)
    return root


def _dicom_tree(exported, root):
    def write(rel, v):
        split = rel.parts[-3]
        dcm = rel.with_suffix(".dcm")
        if split == "train":  # 8-bit MONOCHROME2, no rescale, the identity window
            write_dicom(dcm, v, window=(128, 256), patient=f"{split}-{rel.stem}")
        elif split == "val":  # 12 bits stored, MONOCHROME1: inverted, rescaled, windowed
            write_dicom(dcm, (255 - v.astype(np.uint16)) * 16, "MONOCHROME1", 12, (0.5, -100),
                        WINDOW, f"{split}-{rel.stem}")  # fmt: skip
        else:  # 12 bits stored, MONOCHROME2, rescaled, windowed
            write_dicom(dcm, v.astype(np.uint16) * 16, "MONOCHROME2", 12, (0.5, -100), WINDOW,
                        f"{split}-{rel.stem}")  # fmt: skip

    return _mirror(exported, root, write)


def _png16(factor):
    def write(path, v):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(v.astype(np.uint16) * factor).save(path)

    return write


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("clinical")
    assert cli.main(["data", "--dataset", "breastmnist", "--data-root", str(data_root),
                     "--export", str(root / "png8")]) == 0  # fmt: skip
    return root / "png8"


def _train(dataset, out, data_root, *extra):
    argv = ["train", "--dataset", str(dataset), "--data-root", str(data_root),
            "--positive-class", "malignant", *PINNED, "--out", str(out), "--no-progress",
            "--no-tensorboard", *extra]  # fmt: skip
    assert cli.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def png_run(exported, data_root, tmp_path_factory):
    return _train(exported, tmp_path_factory.mktemp("runs") / "png8", data_root)


# ---- the mappings against their formulas ----


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_is_the_standard_function_as_pydicom_applies_it(function):
    x = np.arange(-300, 301, dtype=np.float64)
    ds = Dataset()
    ds.BitsStored, ds.PixelRepresentation, ds.PhotometricInterpretation = 8, 0, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40.0, 201.0, function
    ours = window_linear(x, 40.0, 201.0, function)
    np.testing.assert_allclose(ours, apply_windowing(x, ds), atol=1e-9)  # output range 0..255


def test_bits_keeps_the_used_bits_and_range_squashes_12_bit(data_root):
    v = D.load_arrays("breastmnist", data_root)["train"][0][:50]
    for factor, bits in ((257, 16), (16, 12)):
        raw = v.astype(np.uint16) * factor
        prep = Preprocessing(bits=bits)
        assert np.array_equal(to_8bit(raw, prep, []), v)
    squashed = to_8bit(v.astype(np.uint16) * 16, Preprocessing(intensity="range"), [])
    assert len(np.unique(squashed)) <= 17 < len(np.unique(v))  # the bug `bits` avoids
    pct = to_8bit(v[0], Preprocessing(intensity="percentile"), [])
    lo, hi = np.percentile(v[0], (0.5, 99.5))
    expect = np.clip(np.rint((v[0] - lo) * 255 / (hi - lo)), 0, 255)
    assert np.array_equal(pct, expect.astype(np.uint8))


def test_aspect_policies(tmp_path):
    img = np.zeros((20, 40), np.uint8)
    img[:, 10:30] = 200
    Image.fromarray(img).save(tmp_path / "wide.png")
    pad = read_file(tmp_path / "wide.png", Preprocessing(size=40, aspect="pad"))
    assert pad[:10].max() == 0 and pad[30:].max() == 0 and pad[15, 20] == 200  # letterboxed
    crop = read_file(tmp_path / "wide.png", Preprocessing(size=20, aspect="crop"))
    assert np.array_equal(crop, img[:, 10:30])  # the centre square, already at the size
    stretch = read_file(tmp_path / "wide.png", Preprocessing(size=28, aspect="stretch"))
    ref = Image.fromarray(img).resize((28, 28), Image.Resampling.LANCZOS)
    assert np.array_equal(stretch, np.asarray(ref))


# ---- real images in other containers: the same pixels, the same model ----


def test_16_bit_pngs_read_back_as_the_official_pixels(exported, data_root, tmp_path, capsys):
    official = D.load_arrays("breastmnist", data_root)
    for factor, bits in ((257, 16), (16, 12)):
        root = _mirror(exported, tmp_path / f"png16x{factor}", _png16(factor))
        got = D.load_arrays(str(root))
        assert f"use {bits} bits" in capsys.readouterr().out
        for s in D.SPLITS:
            assert np.array_equal(got[s][0], official[s][0]), (factor, s)
        assert sources.loaded_record(str(root), 28)["preprocessing"]["bits"] == bits


def test_dicom_tree_trains_exactly_as_the_png_tree(exported, png_run, data_root, tmp_path):
    root = _dicom_tree(exported, tmp_path / "dicom")
    official = D.load_arrays("breastmnist", data_root)
    got = D.load_arrays(str(root))
    for s in D.SPLITS:
        assert np.array_equal(got[s][0], official[s][0]), s
    run = _train(root, tmp_path / "run-dicom", data_root)
    ours, ref = (json.loads((r / "metrics.json").read_text()) for r in (run, png_run))
    assert ours["test"] == ref["test"] and ours["val"] == ref["val"]
    record = json.loads((run / "data.json").read_text())
    assert record["grouping"].startswith("by patient (DICOM PatientID)")


def _test_files(exported):
    return sources.list_source(str(exported)).files["test"]


def _predict_logits(run, files, tmp_path, name):
    out = tmp_path / f"{name}.csv"
    assert cli.main(["predict", str(run), *map(str, files), "--out", str(out)]) == 0
    rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
    return np.array([float(r[2]) for r in rows])


def test_predict_on_files_reproduces_the_runs_test_logits(exported, png_run, tmp_path):
    rows = [r.split(",") for r in (png_run / "predictions.csv").read_text().splitlines()]
    col = rows[0].index("logit")
    want = np.array([float(r[col]) for r in rows[1:] if r[0] == "test"])
    files = _test_files(exported)
    png16 = _mirror(exported, tmp_path / "p16", _png16(257))
    png12 = _mirror(exported, tmp_path / "p12", _png16(16))  # 12-bit data: bits found on them
    dicom = _dicom_tree(exported, tmp_path / "dcm")
    for name, fs in {
        "png8": files,
        "png16": [png16 / f.relative_to(exported) for f in files],
        "png12": [png12 / f.relative_to(exported) for f in files],
        "dicom": [(dicom / f.relative_to(exported)).with_suffix(".dcm") for f in files],
    }.items():
        np.testing.assert_allclose(_predict_logits(png_run, fs, tmp_path, name), want, atol=1e-5)


def _digests(folder):
    return {p: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_evaluate_external_on_the_runs_own_test_images_gives_its_test_metrics(
    exported, png_run, tmp_path, capsys
):
    files = _test_files(exported)
    csv = tmp_path / "site-b.csv"
    csv.write_text("path,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files))
    before = _digests(png_run)
    assert cli.main(["evaluate", str(png_run), "--dataset", str(csv), "--n-bootstrap", "50"]) == 0
    out = png_run / "external" / "site-b"
    after = _digests(png_run)
    assert {p for p in after if p not in before} == {p for p in after if out in p.parents}
    assert all(after[p] == d for p, d in before.items())  # nothing else in the run changed
    got = json.loads((out / "metrics.json").read_text())
    test = json.loads((png_run / "metrics.json").read_text())["test"]
    for key in test:
        if isinstance(test[key], float):
            assert got[key] == pytest.approx(test[key], abs=1e-9), key
        else:
            assert got[key] == test[key], key
    assert {"calibration_after", "operating_points", "ci95"} <= set(got)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.json", "evaluation.md", "reliability.png", "roc.png", "pr.png"]
    )
    capsys.readouterr()
    assert cli.main(["compare", str(png_run)]) == 0  # compare shows it, next to the own test
    shown = capsys.readouterr().out
    assert "External validation" in shown and f"| site-b | {got['n']} | {got['auroc']:.3f}" in shown


# ---- patient-level splits ----


def _patient_csv(exported, path, split=False, share=False):
    listing = sources.list_source(str(exported))
    lines = ["path,label,patient" + (",split" if split else "")]
    for s in D.SPLITS:
        for i, f in enumerate(listing.files[s]):
            patient = f"{s}-{i // 3}" if not share or i else "train-0"
            lines.append(f"{f},{f.parent.name},{patient}" + (f",{s}" if split else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_patient_column_groups_the_made_split(exported, tmp_path):
    csv = _patient_csv(exported, tmp_path / "patients.csv")
    arrays = D.load_arrays(str(csv))
    groups = sources.loaded_groups(str(csv))
    sets = {s: set(groups[s]) for s in D.SPLITS}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or
                sets["val"] & sets["test"])  # fmt: skip
    n = sum(len(arrays[s][1]) for s in D.SPLITS)
    assert 0.15 < len(arrays["test"][1]) / n < 0.25 and 0.05 < len(arrays["val"][1]) / n < 0.15
    assert "by patient (patient column)" in sources.loaded_record(str(csv), 28)["grouping"]
    shared = _patient_csv(exported, tmp_path / "shared.csv", split=True, share=True)
    with pytest.raises(MedsslError, match="in both train and val"):
        D.load_arrays(str(shared))


def test_tune_folds_are_grouped_by_patient(exported, tmp_path):
    from medssl.commands.tune import _folds, _inner_split

    csv = _patient_csv(exported, tmp_path / "patients.csv")
    arrays = D.load_arrays(str(csv))
    patients = sources.loaded_groups(str(csv))
    groups = np.array(patients["train"] + patients["val"])
    y = np.concatenate([arrays["train"][1], arrays["val"][1]])
    seen = []
    for rest, held in _folds(3, 0, y, groups):
        fit, inner = _inner_split(rest, y, groups, 0)
        assert set(fit) | set(inner) == set(rest) and not set(fit) & set(inner)
        g = {name: set(groups[i]) for name, i in (("fit", fit), ("inner", inner), ("held", held))}
        assert not (g["fit"] & g["inner"] or g["fit"] & g["held"] or g["inner"] & g["held"])
        assert len(np.unique(y[held])) == 2 and len(np.unique(y[inner])) == 2
        seen.append(held)
    assert sorted(np.concatenate(seen)) == list(range(len(y)))


# ---- pydicom's own files: decoded as the standard says, or refused in one line ----


def test_every_pydicom_test_file_decodes_or_is_refused_in_one_line():
    prep = Preprocessing(size=28)
    decoded, refused = 0, 0
    for path in get_testdata_files("*.dcm"):
        try:
            out = read_file(__import__("pathlib").Path(path), prep)
        except MedsslError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(path), str(exc)
            refused += 1
            continue
        assert out.shape == (28, 28) and out.dtype == np.uint8
        decoded += 1
    assert decoded >= 20 and refused >= 5


def test_ct_and_mr_decode_by_the_modality_lut_and_window(tmp_path):
    from pathlib import Path

    ct = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(ct)
    x = apply_modality_lut(ds.pixel_array, ds)
    from medssl.data import dicom

    lo, hi = x.min(), x.max()  # no window in the file: the image's own min-max
    expect = np.clip(np.rint((x - lo) * 255 / (hi - lo)), 0, 255).astype(np.uint8)
    tags: list[str] = []
    assert np.array_equal(dicom.read(Path(ct), None, tags), expect)
    assert "DICOM without window: this image's min-max, linear" in tags
    ds.WindowCenter, ds.WindowWidth = 40, 400  # a CT soft-tissue window stored in the file
    ds.save_as(tmp_path / "ct.dcm")
    expect = np.clip(np.rint(window_linear(x, 40, 400)), 0, 255).astype(np.uint8)
    assert np.array_equal(dicom.read(tmp_path / "ct.dcm", None, []), expect)
    mr = dicom.read(Path(get_testdata_file("MR_small.dcm")), None, [])
    for lossless in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm",
                     "MR_small_expb.dcm", "MR_small_jp2klossless.dcm"):  # fmt: skip
        assert np.array_equal(dicom.read(Path(get_testdata_file(lossless)), None, []), mr)
    tags: list[str] = []
    dicom.read(Path(ct), (40.0, 400.0), tags)
    assert "DICOM window 40,400 (--window)" in tags


@pytest.mark.parametrize(
    "name,msg",
    [
        ("rtplan_truncated.dcm", "no pixel data"),
        ("SC_rgb_rle_2frame.dcm", "multi-frame"),
        ("examples_palette.dcm", "PALETTE COLOR"),
        ("rtdose.dcm", "multi-frame"),
    ],
)
def test_pydicom_files_medssl_refuses(name, msg):
    from pathlib import Path

    from medssl.data import dicom

    with pytest.raises(MedsslError, match=msg):
        dicom.read(Path(get_testdata_file(name)), None, [])


# ---- bad input: one line, exit 2, nothing written ----


def _tiny_dicom_tree(root, n=12):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(n):
            write_dicom(root / c / f"{i}.dcm", rng.integers(0, 256, (28, 28)).astype(np.uint8),
                        patient=f"{c}{i}")  # fmt: skip
    return root


def _refused(argv, capsys, msg, out=None):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err, err
    if out is not None:
        assert not out.exists()


def test_bad_clinical_inputs_are_one_line_and_write_nothing(tmp_path, png_run, capsys):
    tree = _tiny_dicom_tree(tmp_path / "t")
    (tree / "a" / "0.dcm").write_bytes((tree / "a" / "0.dcm").read_bytes()[:300])
    out = tmp_path / "run"
    base = ["train", "--positive-class", "a", "--out", str(out), "--epochs", "1", "--no-progress"]
    _refused([*base, "--dataset", str(tree)], capsys, "0.dcm", out)
    tree = _tiny_dicom_tree(tmp_path / "nopix")
    ds = pydicom.dcmread(tree / "b" / "3.dcm")
    del ds.PixelData
    ds.save_as(tree / "b" / "3.dcm")
    _refused([*base, "--dataset", str(tree)], capsys, "no pixel data", out)
    _refused([*base, "--dataset", str(tree), "--window", "40,0"], capsys, "must be >= 1", out)
    csv = tmp_path / "blank.csv"
    good = _tiny_dicom_tree(tmp_path / "good")
    rows = [
        f"{p},{p.parent.name},{'' if i == 3 else i}"
        for i, p in enumerate(sorted(good.rglob("*.dcm")))
    ]
    csv.write_text("path,label,patient\n" + "\n".join(rows) + "\n")
    _refused([*base, "--dataset", str(csv)], capsys, "empty patient", out)
    one = tmp_path / "one.csv"
    one.write_text("path,label\n" + "".join(f"{p},b\n" for p in sorted(good.rglob("*.dcm"))))
    _refused(["evaluate", str(png_run), "--dataset", str(one)], capsys, "two labels")
    other = tmp_path / "other.csv"
    other.write_text(
        "path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in sorted(good.rglob("*.dcm")))
    )
    _refused(["evaluate", str(png_run), "--dataset", str(other)], capsys, "not the run's")
    assert not (png_run / "external" / "other").exists()


def test_the_study_passes_the_preprocessing_to_every_step():
    from medssl.commands.study.plan import plan
    from medssl.options import StudyConfig

    cfg = StudyConfig(dataset="breastmnist", intensity="window", window="40,400", aspect="crop")
    steps = plan(cfg)
    assert steps and all(
        s.options["intensity"] == "window"
        and s.options["window"] == [40.0, 400.0]
        and s.options["aspect"] == "crop"
        for s in steps
    )
