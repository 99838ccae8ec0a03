"""TensorBoard events (read back with TensorBoard's own reader) and MLflow logging of real runs."""

import json

import numpy as np
import pytest

from medssl import engine as E
from medssl.commands import train as T
from medssl.commands.pretrain import PretrainConfig, pretrain
from medssl.tracking import Tracker, mlflow_uri, read_scalars


def quiet(*args, **kwargs):
    pass


def _images(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    return {tag: acc.Images(tag) for tag in acc.Tags()["images"]}


def test_tracker_scalars_images_and_figures_round_trip(tmp_path):
    from PIL import Image

    png = tmp_path / "fig.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(png)
    t = Tracker(tmp_path, {"a": 1, "nested": {"b": 2}})
    t.scalars(0, {"loss": 1.5, "skip_nan": float("nan"), "skip_text": "x"})
    t.scalars(1, {"loss": 0.5})
    t.images("views", np.random.default_rng(0).random((3, 8, 8)))
    t.figure("fig", png)
    t.close()
    s = read_scalars(tmp_path)
    assert s == {"loss": [(0, 1.5), (1, 0.5)]}  # NaN and text are not logged
    imgs = _images(tmp_path)
    assert set(imgs) == {"views", "fig"}
    assert (imgs["fig"][0].width, imgs["fig"][0].height) == (30, 20)


def test_no_tensorboard_writes_nothing(tmp_path):
    t = Tracker(tmp_path, {}, tensorboard=False)
    t.scalars(0, {"loss": 1.0})
    t.close()
    assert not (tmp_path / "tensorboard").exists()


def _cfg(tmp_path, data_root, name, **kw):
    base = dict(
        dataset="breastmnist",
        data_root=str(data_root),
        out=str(tmp_path / name),
        epochs=3,
        label_fraction=0.3,
        stem="imagenet",
        progress=False,
    )
    return T.TrainConfig(**(base | kw))


def test_train_events_match_history_and_resume_does_not_fork(tmp_path, data_root, monkeypatch):
    real = E.lr_factor

    def crash_at_2(epoch, cfg):
        if epoch == 2:
            raise KeyboardInterrupt
        return real(epoch, cfg)

    monkeypatch.setattr(E, "lr_factor", crash_at_2)
    with pytest.raises(KeyboardInterrupt):
        T.train(_cfg(tmp_path, data_root, "r"), log=quiet)
    monkeypatch.setattr(E, "lr_factor", real)
    m = T.train(_cfg(tmp_path, data_root, "r"), resume=True, log=quiet)

    run = tmp_path / "r"
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    s = read_scalars(run)
    assert [step for step, _ in s["loss/train"]] == [0, 1, 2]  # one value per epoch, no fork
    for key, tag in (("train_loss", "loss/train"), ("val_auroc", "val/auroc"), ("lr", "lr")):
        assert [v for _, v in s[tag]] == pytest.approx([h[key] for h in history], rel=1e-6)
    assert s["best_model/test_auroc"] == [(m["best_epoch"], pytest.approx(m["test"]["auroc"]))]
    imgs = _images(run)
    assert {"augmentation/train_batch", "figures/roc", "figures/reliability"} <= set(imgs)


def test_pretrain_events(tmp_path, data_root):
    cfg = PretrainConfig(
        dataset="breastmnist",
        data_root=str(data_root),
        out=str(tmp_path / "p"),
        epochs=2,
        batch_size=128,
        knn_every=1,
        progress=False,
    )
    pretrain(cfg, log=quiet)
    s = read_scalars(tmp_path / "p")
    history = [json.loads(x) for x in (tmp_path / "p" / "history.jsonl").read_text().splitlines()]
    assert [v for _, v in s["loss/nt_xent"]] == pytest.approx([h["loss"] for h in history])
    assert [v for _, v in s["knn/val_auroc"]] == pytest.approx(
        [h["knn_val_auroc"] for h in history]
    )
    assert "augmentation/view_pairs" in _images(tmp_path / "p")


def test_mlflow_local_store(tmp_path, data_root):
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    m = T.train(_cfg(tmp_path, data_root, "ml", epochs=2, mlflow=str(store)), log=quiet)
    client = MlflowClient(mlflow_uri(str(store)))
    exp = client.get_experiment_by_name("medssl-breastmnist")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "ml"
    assert run.data.params["label_fraction"] == "0.3"
    history = client.get_metric_history(run.info.run_id, "val_auroc")
    assert len(history) == 2
    assert run.data.metrics["best_model_test_auroc"] == pytest.approx(m["test"]["auroc"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "roc.png"} <= artifacts


def test_mlflow_uri():
    assert mlflow_uri("http://host:5000") == "http://host:5000"
    assert mlflow_uri("file:/x/y") == "file:/x/y"
    assert mlflow_uri("/tmp/mlruns") == "file:///tmp/mlruns"
