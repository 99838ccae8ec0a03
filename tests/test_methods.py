"""The self-supervised methods: recipes, teachers, queues, exact resume, torchrun gathers, and
every method end to end on BreastMNIST (pretrain -> probe / train --init)."""

import copy
import json
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medssl import engine as E
from medssl.catalog import METHOD_NAMES as METHODS
from medssl.commands import pretrain as P
from medssl.losses import barlow_twins, nt_xent, vicreg
from medssl.methods import build
from medssl.methods.common import cosine_momentum, ema_copy, ema_update, gather
from medssl.models import read_model
from medssl.options import PretrainConfig

QUIET = lambda *a, **k: None  # noqa: E731
TEACHERS = {"moco": "key_encoder", "byol": "target_encoder", "dino": "teacher_encoder"}


def _steps(net, opt, x1, x2, n, start=0, total=10):
    losses = []
    for i in range(start, start + n):
        loss = net(x1, x2, i / total)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        net.after_step((i + 1) / total)
        losses.append(loss.detach().clone())
    return losses


def _build(method, seed=0):
    cfg = PretrainConfig(method=method)
    torch.manual_seed(seed)
    net = build(cfg, 546)
    opt = P.make_optimizer(net, cfg)
    return cfg, net, opt


@pytest.mark.parametrize("method", METHODS)
def test_each_method_learns_on_a_batch_and_is_seeded(method):
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.rand(8, 1, 28, 28, generator=g), torch.rand(8, 1, 28, 28, generator=g)
    _, a, opt_a = _build(method)
    _, b, opt_b = _build(method)
    la, lb = _steps(a, opt_a, x1, x2, 3), _steps(b, opt_b, x1, x2, 3)
    assert all(torch.isfinite(x) for x in la)
    assert all(torch.equal(x, y) for x, y in zip(la, lb, strict=True))  # same seed, same numbers
    trainable = {id(p) for p in a.parameters() if p.requires_grad}
    assert {id(p) for g in opt_a.param_groups for p in g["params"]} == trainable
    if method in TEACHERS:  # the teacher is never trained by the optimizer, only by the EMA
        teacher = getattr(a, TEACHERS[method])
        assert not any(p.requires_grad for p in teacher.parameters())
        assert not all(
            torch.equal(t, s)
            for t, s in zip(teacher.parameters(), a.encoder.parameters(), strict=True)
        )


def test_recipes_fill_only_what_is_unset():
    assert PretrainConfig().proj_dims == [512, 512, 128] and PretrainConfig().lr == 2e-3
    dino = PretrainConfig(method="dino")
    assert (dino.lr, dino.weight_decay, dino.temperature, dino.momentum) == (5e-4, 0.04, 0.1, 0.996)
    assert PretrainConfig(method="byol", lr=1e-3, proj_dims="512,64,32").proj_dims == [512, 64, 32]
    assert PretrainConfig(method="byol", lr=1e-3).lr == 1e-3
    assert PretrainConfig(method="moco").queue_size == 4096


def test_ema_and_momentum_schedule_formulas():
    s, t = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = t.weight.detach().clone()
    ema_update(t, s, 0.9)
    torch.testing.assert_close(t.weight, 0.9 * before + 0.1 * s.weight.detach())
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)
    frozen = ema_copy(s)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_moco_queue_is_a_ring_buffer_no_larger_than_the_data():
    cfg = PretrainConfig(method="moco")
    torch.manual_seed(0)
    net = build(cfg, 10)  # 10 training images: at most 10 negatives
    assert net.queue.shape == (10, 128)
    keys = torch.nn.functional.normalize(torch.randn(6, 128), dim=1)
    net._enqueue(keys)
    torch.testing.assert_close(net.queue[:6], keys)
    assert int(net.queue_ptr) == 6
    net._enqueue(keys)  # wraps around
    torch.testing.assert_close(net.queue[6:], keys[:4])
    torch.testing.assert_close(net.queue[:2], keys[4:])
    assert int(net.queue_ptr) == 2


def test_dino_teacher_temperature_warms_up():
    cfg = PretrainConfig(method="dino")
    net = build(cfg, 546)
    assert net.teacher_temp(0.0) == pytest.approx(0.04)
    assert net.teacher_temp(0.15) == pytest.approx(0.055)
    assert net.teacher_temp(0.3) == pytest.approx(0.07) and net.teacher_temp(1.0) == 0.07


@pytest.mark.parametrize("method", ["moco", "byol", "dino"])
def test_checkpoint_state_continues_teachers_queues_and_centres_exactly(method):
    """Two steps, then the state dict into a fresh model: the next step is identical."""
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.rand(8, 1, 28, 28, generator=g), torch.rand(8, 1, 28, 28, generator=g)
    _, a, opt_a = _build(method)
    _steps(a, opt_a, x1, x2, 2)
    _, b, opt_b = _build(method, seed=5)  # other initial weights: everything comes from the state
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as from disk: no shared tensors
    la, lb = _steps(a, opt_a, x1, x2, 1, start=2), _steps(b, opt_b, x1, x2, 1, start=2)
    assert torch.equal(la[0], lb[0])
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


# ---- torchrun: the gathered losses of two processes equal one process on the whole batch ----


def _worker(rank, world, init_file, loss_name, z1, z2, weight, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    b = len(z1) // world
    sl = slice(rank * b, (rank + 1) * b)
    fn = {"barlow": barlow_twins, "vicreg": vicreg}[loss_name]
    loss = fn(gather(ddp(z1[sl])), gather(ddp(z2[sl])))
    loss.backward()
    results[rank] = (loss.detach().clone(), model.weight.grad.detach().clone())
    dist.destroy_process_group()


@pytest.mark.parametrize("loss_name", ["barlow", "vicreg"])
def test_gathered_losses_under_ddp_match_one_process(tmp_path, loss_name):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    weight = torch.randn(5, 6, generator=g)
    model = torch.nn.Linear(6, 5, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    fn = {"barlow": barlow_twins, "vicreg": vicreg}[loss_name]
    ref = fn(model(z1), model(z2))
    ref.backward()
    results = mp.Manager().dict()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(
        _worker,
        args=(2, str(tmp_path / "init"), loss_name, z1, z2, weight, results),
        nprocs=2,
        join=True,
    )
    for rank in range(2):
        loss, grad = results[rank]
        torch.testing.assert_close(loss, ref.detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad, model.weight.grad, rtol=1e-4, atol=1e-6)
    assert (
        nt_xent
    )  # SimCLR's gather: tests/test_pretrain.py::test_ddp_gather_matches_single_process


# ---- on the real data ----


def _cfg(tmp_path, name, data_root, method, **kw):
    base = dict(
        dataset="breastmnist",
        data_root=str(data_root),
        out=str(tmp_path / name),
        method=method,
        epochs=1,
        batch_size=128,
        knn_every=1,
        progress=False,
        tensorboard=False,
    )
    return PretrainConfig(**(base | kw))


@pytest.mark.slow
def test_every_method_pretrains_on_breastmnist_and_its_encoder_is_used(tmp_path, data_root):
    from medssl.commands.probe import ProbeConfig, probe
    from medssl.commands.train import TrainConfig, train

    for method in METHODS:
        s = P.pretrain(_cfg(tmp_path, method, data_root, method), log=QUIET)
        assert s["method"] == method and math.isfinite(s["final_loss"]), method
        assert 0 <= s["knn_val_auroc_last"] <= 1
        _, meta = read_model(tmp_path / method / "encoder.safetensors", "encoder")
        assert meta["method"] == method
        assert json.loads((tmp_path / method / "run.json").read_text())["state"] == "finished"
    enc = str(tmp_path / "dino" / "encoder.safetensors")
    table = probe(
        ProbeConfig(
            encoder=enc,
            data_root=str(data_root),
            out=str(tmp_path / "probe"),
            label_fractions="1",
            seeds="0",
            embedding=False,
            progress=False,
        ),
        log=QUIET,
    )["table"]
    assert 0.5 < table[0]["test_auroc"] <= 1
    m = train(
        TrainConfig(
            init=str(tmp_path / "byol" / "encoder.safetensors"),
            data_root=str(data_root),
            out=str(tmp_path / "ft"),
            epochs=1,
            progress=False,
        ),
        log=QUIET,
    )
    assert m["stem"] == "imagenet" and 0 <= m["test"]["auroc"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("method", ["moco", "dino"])
def test_killed_method_resumes_to_the_same_encoder(tmp_path, data_root, monkeypatch, method):
    """Teachers, the MoCo queue and the DINO centre are in the checkpoint: an interrupted run
    resumed at epoch 1 ends bit-identical to an uninterrupted one (CPU)."""
    full = P.pretrain(_cfg(tmp_path, "full", data_root, method, epochs=2), log=QUIET)
    real = E.lr_factor

    def crash(epoch, cfg):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(epoch, cfg)

    monkeypatch.setattr(E, "lr_factor", crash)
    with pytest.raises(KeyboardInterrupt):
        P.pretrain(_cfg(tmp_path, "cut", data_root, method, epochs=2), log=QUIET)
    monkeypatch.setattr(E, "lr_factor", real)
    resumed = P.pretrain(_cfg(tmp_path, "cut", data_root, method, epochs=2), resume=True, log=QUIET)
    assert resumed["final_loss"] == full["final_loss"]
    for name in ("encoder", "projection_head"):
        wa, _ = read_model(tmp_path / "full" / f"{name}.safetensors")
        wb, _ = read_model(tmp_path / "cut" / f"{name}.safetensors")
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
