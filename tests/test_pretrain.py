"""SimCLR pretraining: labels unused, resume, kNN monitor, projection head, DDP equivalence."""

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medssl import data as D
from medssl import engine as E
from medssl import monitor as MON
from medssl.commands import pretrain as P
from medssl.errors import MedsslError
from medssl.losses import nt_xent
from medssl.methods.simclr import SimCLR, distributed_nt_xent
from medssl.models import ProjectionHead, read_model
from medssl.runtime import extract_features


def quiet(*a, **k):
    pass


def _cfg(tmp_path, name, data_root, **kw):
    base = dict(
        dataset="breastmnist",
        data_root=str(data_root),
        out=str(tmp_path / name),
        epochs=1,
        batch_size=64,
        stem="imagenet",
        knn_every=1,
        progress=False,
    )
    base.update(kw)
    return P.PretrainConfig(**base)


def test_labels_never_reach_the_loss(tmp_path, data_root, monkeypatch):
    a = P.pretrain(_cfg(tmp_path, "a", data_root), log=quiet)
    real = D.load_splits

    def shuffled(*args, **kwargs):
        splits = real(*args, **kwargs)
        tr = splits["train"]
        perm = torch.randperm(len(tr), generator=torch.Generator().manual_seed(0))
        splits["train"] = D.Split("train", tr.images, tr.targets[perm], tr.labels[perm], tr.indices)
        return splits

    monkeypatch.setattr(D, "load_splits", shuffled)
    b = P.pretrain(_cfg(tmp_path, "b", data_root), log=quiet)
    wa, _ = read_model(tmp_path / "a" / "encoder.safetensors")
    wb, meta = read_model(tmp_path / "b" / "encoder.safetensors")
    assert meta["kind"] == "encoder" and meta["stem"] == "imagenet"
    for k in wa:  # bit-identical encoder
        assert torch.equal(wa[k], wb[k]), k
    assert a["final_loss"] == b["final_loss"]
    assert a["knn_val_auroc_last"] != b["knn_val_auroc_last"]  # only the monitor saw labels


def test_pretrain_outputs_and_resume(tmp_path, data_root, monkeypatch):
    full = P.pretrain(_cfg(tmp_path, "full", data_root, epochs=2), log=quiet)
    out = tmp_path / "full"
    for f in (
        "config.yaml",
        "history.jsonl",
        "encoder.safetensors",
        "projection_head.safetensors",
        "loss_curve.png",
        "pretrain.json",
    ):
        assert (out / f).stat().st_size > 0, f
    assert not (out / "last.pt").exists()  # resume state goes once the run is finished
    head, meta = read_model(out / "projection_head.safetensors")
    assert meta["kind"] == "projection_head" and head["net.3.weight"].shape == (128, 512)
    assert 0 <= full["knn_val_auroc_last"] <= 1
    assert full["knn_few_labels"] == 50 and 0 <= full["knn_few_val_auroc_last"] <= 1
    assert full["knn_few_val_auroc_init"] is not None
    # the monitor's starting point: the randomly initialised encoder, before any step
    torch.manual_seed(0)
    init_model = SimCLR("imagenet", (512, 512, 128))
    splits = D.load_splits("breastmnist", data_root)
    expect = MON.knn_monitor(init_model.encoder, splits, _cfg(tmp_path, "x", data_root), "fp32")
    assert full["knn_val_auroc_init"] == pytest.approx(expect["knn_val_auroc"], abs=0.02)
    assert (
        json.loads((out / "knn_init.json").read_text())["knn_val_auroc"]
        == (full["knn_val_auroc_init"])
    )

    real = E.lr_factor

    def crash(epoch, cfg):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(epoch, cfg)

    monkeypatch.setattr(E, "lr_factor", crash)
    with pytest.raises(KeyboardInterrupt):
        P.pretrain(_cfg(tmp_path, "cut", data_root, epochs=2), log=quiet)
    monkeypatch.setattr(E, "lr_factor", real)
    resumed = P.pretrain(_cfg(tmp_path, "cut", data_root, epochs=2), resume=True, log=quiet)
    assert resumed["final_loss"] == full["final_loss"]
    wa, _ = read_model(out / "encoder.safetensors")
    wb, _ = read_model(tmp_path / "cut" / "encoder.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_encoder_feeds_train_init(tmp_path, data_root):
    from medssl.commands.train import TrainConfig, train

    P.pretrain(_cfg(tmp_path, "ssl", data_root), log=quiet)
    enc = str(tmp_path / "ssl" / "encoder.safetensors")
    with pytest.raises(MedsslError, match="--stem imagenet"):
        train(
            TrainConfig(
                init=enc,
                stem="cifar",
                data_root=str(data_root),
                epochs=1,
                out=str(tmp_path / "t0"),
                progress=False,
            ),
            log=quiet,
        )
    logs = []
    m = train(
        TrainConfig(
            init=enc,
            stem="imagenet",
            data_root=str(data_root),
            epochs=1,
            label_fraction=0.2,
            encoder_lr_scale=0.1,
            out=str(tmp_path / "t"),
            progress=False,
        ),
        log=logs.append,
    )
    assert m["init"] == enc and m["test"]["n"] == 156


def test_knn_scores_analytic():
    train = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]])
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0])
    query = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    s = MON.knn_scores(train, targets, query, k=2)
    assert s[0] == pytest.approx(1.0) and s[1] == pytest.approx(0.0)
    s = MON.knn_scores(train, targets, query, k=4)
    assert 0.5 < s[0] < 1 and 0 < s[1] < 0.5


def test_few_label_banks_are_stratified_fixed_and_distinct():
    targets = torch.tensor([0.0] * 147 + [1.0] * 399)  # BreastMNIST's train balance
    banks = MON.knn_few_label_banks(targets, 50)
    assert len(banks) == MON.KNN_FEW_SUBSETS
    for b in banks:
        assert len(b) == 50 and len(set(b.tolist())) == 50
        assert 0 < int((targets[b] == 0).sum()) < 50  # both classes, in proportion (13 : 37)
        assert int((targets[b] == 0).sum()) == round(50 / 546 * 147)
    assert not torch.equal(banks[0], banks[1])  # different subsets ...
    again = MON.knn_few_label_banks(targets, 50)
    assert all(torch.equal(a, b) for a, b in zip(banks, again, strict=True))  # ... every epoch
    assert MON.knn_few_label_banks(targets, 0) == [] and MON.knn_few_label_banks(targets, 546) == []


def test_knn_monitor_few_label_bank_is_the_mean_over_subsets(data_root, tmp_path):
    torch.manual_seed(0)
    enc = SimCLR("imagenet", (512, 512, 128)).encoder
    splits = D.load_splits("breastmnist", data_root)
    cfg = _cfg(tmp_path, "m", data_root, knn_labels=40)
    m = MON.knn_monitor(enc, splits, cfg, "fp32")
    assert m["knn_few_labels"] == 40 and 0 <= m["knn_few_val_auroc"] <= 1
    # written out: kNN over each bank's features, AUROC against val, then the mean
    feats = extract_features(enc, splits["train"].images, 512, None, "fp32")
    val = extract_features(enc, splits["val"].images, 512, None, "fp32")
    y = splits["val"].targets.numpy()
    expect = [
        MON.auroc(y, MON.knn_scores(feats[b], splits["train"].targets[b], val, 20).double().numpy())
        for b in MON.knn_few_label_banks(splits["train"].targets, 40)
    ]
    assert m["knn_few_val_auroc"] == pytest.approx(sum(expect) / len(expect), abs=1e-9)
    off = MON.knn_monitor(enc, splits, _cfg(tmp_path, "o", data_root, knn_labels=0), "fp32")
    assert "knn_few_val_auroc" not in off and off["knn_val_auroc"] == m["knn_val_auroc"]


def test_projection_head_and_bad_options(tmp_path):
    g = ProjectionHead((512, 256, 64))
    assert g(torch.randn(4, 512)).shape == (4, 64)
    for kw, msg in [
        ({"temperature": 0}, "temperature"),
        ({"batch_size": 1}, "batch-size"),
        ({"proj_dims": "256,128"}, "proj-dims"),
        ({"augment": "x"}, "preset"),
        ({"epochs": 0}, "epochs"),
        ({"knn_labels": -1}, "knn-labels"),
    ]:
        with pytest.raises(MedsslError, match=msg):
            P.PretrainConfig(**kw)
    assert P.PretrainConfig(dataset="pneumoniamnist").augment == "simclr-xray"
    assert P.PretrainConfig(dataset="breastmnist").augment == "simclr-ultrasound"


# ---- DDP: two gloo processes on a fixed global batch == one process on the whole batch ----


def _ddp_worker(rank, world, init_file, z1, z2, weight, tau, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    b = len(z1) // world
    sl = slice(rank * b, (rank + 1) * b)
    loss = distributed_nt_xent(ddp(z1[sl]), ddp(z2[sl]), tau)
    loss.backward()
    results[rank] = (loss.detach().clone(), model.weight.grad.detach().clone())
    dist.destroy_process_group()


def test_ddp_gather_matches_single_process(tmp_path):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    weight = torch.randn(5, 6, generator=g)
    tau = 0.3
    model = torch.nn.Linear(6, 5, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    ref = nt_xent(model(z1), model(z2), tau)
    ref.backward()
    manager = mp.Manager()
    results = manager.dict()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / "init"), z1, z2, weight, tau, results),
        nprocs=2,
        join=True,
    )
    for rank in range(2):
        loss, grad = results[rank]
        torch.testing.assert_close(loss, ref.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, model.weight.grad, rtol=1e-5, atol=1e-6)
