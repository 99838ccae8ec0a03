"""Self-supervised pretraining on the shared epoch loop: any method of `medssl.methods`.

The training split is used as unlabeled images: labels never reach a loss. Each step draws two
augmented views of a batch on the device and asks the method for its loss (SimCLR's NT-Xent,
MoCo's InfoNCE, BYOL, SimSiam, Barlow Twins, VICReg, DINO); after each optimizer step the method
updates its momentum teacher, if it has one. After each epoch the kNN monitor (`monitor`) scores
the frozen encoder on the validation split, and the encoder and heads are saved.

Multi-process: launched with `torchrun`, each process takes its slice of one global permutation
and DDP averages parameter gradients; methods whose loss compares samples across the batch
gather what they need (SimCLR all-gathers its projections with gradients, so loss and gradients
equal one process on the whole batch). BatchNorm statistics stay per process unless
`--sync-bn` converts them to SyncBatchNorm.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from medssl import data as D
from medssl import engine, plots
from medssl.augment import two_views
from medssl.catalog import METHOD_TITLES, METHODS
from medssl.commands.lifecycle import open_run, preprocessing
from medssl.data import pools
from medssl.io.artifacts import read_json, write_json
from medssl.io.records import read_result
from medssl.io.rundir import MARKERS, claim, drop_resume_state
from medssl.methods import build
from medssl.models import metadata, save_model
from medssl.monitor import knn_monitor
from medssl.options import PretrainConfig
from medssl.runtime import autocast, resolve_device, resolve_precision, to_float
from medssl.tracking import Tracker, check_tracking

__all__ = ["PretrainConfig", "pretrain", "format_summary"]


def _rank_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed(device: torch.device) -> None:
    """Join the torchrun process group when launched with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def make_optimizer(model: torch.nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (teachers have none); decay on weights only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    for g in groups:
        g["base_lr"] = cfg.lr
    return torch.optim.AdamW(groups, lr=cfg.lr)


def pretrain(cfg: PretrainConfig, resume: bool = False, log=print) -> dict:
    """Pretrain the encoder with `cfg.method`; write encoder, heads, history and plots.

    Run directory: run.json, config.yaml, knn_init.json (the kNN monitor of the initial
    encoder), history.jsonl (loss, kNN val AUROC/accuracy with all and with few labels, LR,
    time), encoder.safetensors (+ .json), the method's heads (e.g. projection_head.safetensors),
    loss_curve.png, last.pt (resume state, removed once the run finishes), pretrain.json
    (written last: marks a finished run). Bad input is refused before the first byte is written.
    """
    device = _process_device(cfg.device)
    rank, world = _rank_info()
    say = log if rank == 0 else _quiet
    claimed = claim(cfg, resume) if rank == 0 else None
    if claimed and claimed.action == "finished":
        log(f"{claimed.path} already holds this finished pretrain run; nothing to do")
        return read_result(claimed.path, "pretrain", ("dataset",))
    out = Path(cfg.out)
    check_tracking(cfg.mlflow, Path(cfg.out))
    info = D.dataset_info(cfg.dataset)
    splits = D.load_splits(  # the kNN monitor's AUROC is the same for either positive class
        cfg.dataset,
        cfg.data_root,
        1 if info.default_positive is None else info.default_positive,
        cfg.size,
        device,
        cfg.download,
        cfg.verify_md5,
        preprocessing(cfg),
    )
    images, seen = pretraining_images(cfg, splits, say)
    torch.manual_seed(cfg.seed)
    model = build(cfg, len(images)).to(device, memory_format=torch.channels_last)
    net = _parallel(model, cfg, world)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    state = None
    if resume and (claimed is None or claimed.action == "resume"):

        def restore(s: dict) -> None:
            model.load_state_dict(s["model"])

        state = engine.restore(out, opt, gen, restore, ("model",), say, ("loss", "epoch_time_s"))
    precision = resolve_precision(cfg.precision, device)
    n, global_batch = len(images), cfg.batch_size * world
    if state:
        say(f"resumed {out} at epoch {state['epoch'] + 1}")
    say(
        f"{cfg.method} on {_saw(seen)} ({n} images, labels unused): "
        f"{steps_per_epoch(n, global_batch)} steps/epoch of {min(global_batch, n)} images = "
        f"{2 * min(global_batch, n)} views, augment {cfg.augment}, {world} process(es), "
        f"device {device}, {precision}"
    )
    folder = open_run(claimed, cfg) if rank == 0 else contextlib.nullcontext()
    start = state["epoch"] + 1 if state else 0
    on, name = rank == 0, f"medssl-{cfg.dataset}"  # only the first process logs
    tracker = Tracker(
        out, cfg.to_dict(), cfg.tensorboard and on, cfg.mlflow if on else None, start, name
    )
    with folder, contextlib.closing(tracker):
        if rank == 0 and cfg.knn_every and start == 0:
            _knn_at_init(model, splits, cfg, precision, out, tracker)
        run = Pretraining(cfg, model, net, gen, images, splits, out, tracker, precision)
        loop = run.loop(opt)
        history = engine.run(loop, start, state["history"] if state else [], tracker)
        summary = {}
        if rank == 0:
            summary = _finish(cfg, history, out, seen, world, precision, str(device))
            drop_resume_state(out)
            tracker.figure("figures/loss_curve", out / "loss_curve.png")
            tracker.artifact(out / MARKERS["pretrain"])
    if world > 1:
        dist.barrier()
    return summary


def _process_device(name: str) -> torch.device:
    """This process's device: under torchrun each process takes the GPU of its LOCAL_RANK;
    the process group is started here (a no-op without torchrun)."""
    device = resolve_device(name)
    if device.type == "cuda" and int(os.environ.get("LOCAL_RANK", "-1")) >= 0:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    _init_distributed(device)
    return device


def _parallel(model: torch.nn.Module, cfg: PretrainConfig, world: int) -> torch.nn.Module:
    """The network the steps run: the method itself, or its DDP wrapper (with SyncBatchNorm
    when asked) across torchrun processes."""
    if world == 1:
        return model
    net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if cfg.sync_bn else model
    return torch.nn.parallel.DistributedDataParallel(net)


def _knn_at_init(model, splits, cfg, precision, out: Path, tracker) -> None:
    """The starting point of the monitor: the randomly initialised encoder's kNN score."""
    init = knn_monitor(model.encoder, splits, cfg, precision)
    write_json(out / "knn_init.json", init)
    few = init.get("knn_few_val_auroc", math.nan)
    tracker.scalars(
        0, {"knn/val_auroc_at_init": init["knn_val_auroc"], "knn/few_label_val_auroc_at_init": few}
    )


@dataclass
class Pretraining:
    """One pretraining run on the shared epoch loop: the method, its data and the functions the
    engine calls (batches, the two-view step, the after-step hook, the end of epoch)."""

    cfg: PretrainConfig
    model: torch.nn.Module  # the method: encoder, heads, teachers
    net: torch.nn.Module  # what the steps run: the method, or its DDP wrapper
    gen: torch.Generator  # the run's device generator: shuffling and views
    images: torch.Tensor  # (N, 1, H, W) uint8 on the device: the pretraining images
    splits: dict  # the dataset's splits, for the kNN monitor
    out: Path
    tracker: Tracker
    precision: str

    def __post_init__(self) -> None:
        self.rank, self.world = _rank_info()
        self.global_batch = self.cfg.batch_size * self.world
        self.steps = steps_per_epoch(len(self.images), self.global_batch)
        self.aug = self.cfg.augment_config()

    def batches(self, epoch: int) -> list[torch.Tensor]:
        self.net.train()
        perm = torch.randperm(len(self.images), generator=self.gen, device=self.images.device)
        g, world, rank = self.global_batch, self.world, self.rank
        # this process's slice of each global batch
        return [perm[s * g : (s + 1) * g].tensor_split(world)[rank] for s in range(self.steps)]

    def step(self, epoch: int, i: int, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        v1, v2 = two_views(to_float(self.images[idx], cfg.resize), self.aug, self.gen)
        if epoch == 0 and i == 0:  # pairs: view 1 above view 2
            pairs = torch.stack([v1[:16, 0], v2[:16, 0]], 1).flatten(0, 1)
            self.tracker.images("augmentation/view_pairs", pairs.float().cpu().numpy())
        with autocast(self.images.device, self.precision):
            return self.net(v1, v2, (epoch * self.steps + i) / (cfg.epochs * self.steps))

    def after_step(self, epoch: int, i: int) -> None:
        self.model.after_step((epoch * self.steps + i + 1) / (self.cfg.epochs * self.steps))

    def end_epoch(self, epoch: int) -> dict:
        row, cfg = {}, self.cfg
        if self.rank == 0 and cfg.knn_every and (epoch + 1) % cfg.knn_every == 0:
            row = knn_monitor(self.model.encoder, self.splits, cfg, self.precision)
        if self.rank == 0:
            save_encoder_and_heads(self.model, cfg, epoch, self.out)
        return row

    def loop(self, optimizer: torch.optim.Optimizer) -> engine.Loop:
        cfg = self.cfg
        temperature = " or raise --temperature" if cfg.method in ("simclr", "moco") else ""
        return engine.Loop(
            out=self.out,
            cfg=cfg,
            optimizer=optimizer,
            generator=self.gen,
            batches=self.batches,
            step=self.step,
            end_epoch=self.end_epoch,
            state=lambda: {"model": self.model.state_dict()},
            scalars=lambda r: _scalars(cfg, r),
            after_step=self.after_step,
            postfix=lambda r: {
                "loss": f"{r['loss']:.4f}",
                "knn_auroc": f"{r.get('knn_val_auroc', float('nan')):.4f}",
            },
            desc=f"{cfg.method} {cfg.dataset}",
            hint=f"lower --lr{temperature}",
            write=self.rank == 0,
        )


def _scalars(cfg: PretrainConfig, r: dict) -> dict:
    """TensorBoard scalars of one history row."""
    return {
        f"loss/{METHODS[cfg.method].loss}": r["loss"],
        "lr": r["lr"],
        "knn/val_auroc": r.get("knn_val_auroc", math.nan),
        "knn/val_accuracy": r.get("knn_val_accuracy", math.nan),
        "knn/few_label_val_auroc": r.get("knn_few_val_auroc", math.nan),
        "time/epoch_s": r["epoch_time_s"],
    }


def steps_per_epoch(n: int, global_batch: int) -> int:
    """Full global batches per epoch (the last partial one is dropped); one when n < batch."""
    return n // global_batch if n >= global_batch else 1


def _quiet(*_args, **_kw) -> None:
    pass


def save_encoder_and_heads(model: torch.nn.Module, cfg: PretrainConfig, epoch: int, out: Path):
    """encoder.safetensors and each head's file, with metadata naming the method."""
    meta = dict(dataset=cfg.dataset, epoch=epoch, objective=cfg.method, method=cfg.method)
    if cfg.temperature is not None:
        meta["temperature"] = cfg.temperature
    save_model(
        model.encoder, out / "encoder.safetensors", metadata("encoder", model.encoder, **meta)
    )
    dims = ",".join(map(str, cfg.proj_dims))
    for name, head in model.heads().items():
        kind = "projection_head" if name == "projection_head" else name
        save_model(
            head, out / f"{name}.safetensors", metadata(kind, model.encoder, dims=dims, **meta)
        )


def format_summary(s: dict) -> str:
    """The lines `medssl pretrain` prints at the end."""

    def f(x) -> str:
        return f"{x:.4f}" if isinstance(x, int | float) else "n/a"

    few = ""
    if s.get("knn_few_labels"):
        few = (
            f"; with {s['knn_few_labels']} labels {f(s.get('knn_few_val_auroc_init'))} -> "
            f"{f(s.get('knn_few_val_auroc_last'))}"
        )
    method = METHOD_TITLES.get(str(s.get("method", s.get("objective", "simclr"))), "?")
    return (
        f"{method} {s.get('dataset')}: loss {f(s.get('first_loss'))} -> {f(s.get('final_loss'))}; "
        f"kNN val AUROC {f(s.get('knn_val_auroc_init'))} (init) -> "
        f"{f(s.get('knn_val_auroc_first'))} (first check) -> {f(s.get('knn_val_auroc_last'))}"
        f"{few}; {f(s.get('train_time_s'))} s\nencoder: {s.get('encoder')}"
    )


def pretraining_images(cfg: PretrainConfig, splits: dict, log) -> tuple[torch.Tensor, list]:
    """The images pretrained on, (N, 1, H, W) uint8 on the splits' device, and what they are:
    the dataset's training split, or the `--unlabeled` pool (never its val/test images)."""
    train = splits["train"]
    if not cfg.unlabeled:  # labels are never read by the training step
        return train.images, [{"source": cfg.dataset, "kind": "train split", "n": len(train)}]
    pool, seen = pools.load_pool(cfg.unlabeled, cfg.data_root, preprocessing(cfg), log)
    arrays = {s: (splits[s].images[:, 0].cpu().numpy(), None) for s in D.SPLITS}
    pools.check_pool(pool, arrays, cfg.dataset)
    return torch.from_numpy(pool).unsqueeze(1).to(train.images.device), seen


def _saw(seen: list[dict]) -> str:
    return " + ".join(f"{s['source']} ({s['kind']}, {s['n']})" for s in seen)


def _finish(cfg, history, out, seen, world, precision, device) -> dict:
    init_file = out / "knn_init.json"
    init = read_json(init_file, "kNN monitor at init") if init_file.is_file() else {}
    plots.plot_pretrain_curves(history, out / "loss_curve.png", knn_init=init)
    knn = [r["knn_val_auroc"] for r in history if "knn_val_auroc" in r]
    few = [r["knn_few_val_auroc"] for r in history if "knn_few_val_auroc" in r]
    summary = {
        "dataset": cfg.dataset,
        "objective": cfg.method,
        "method": cfg.method,
        "epochs": cfg.epochs,
        "n_train_images": sum(s["n"] for s in seen),
        "pretrained_on": seen,
        "world_size": world,
        "device": device,
        "precision": precision,
        "final_loss": history[-1]["loss"] if history else None,
        "first_loss": history[0]["loss"] if history else None,
        "knn_val_auroc_init": init.get("knn_val_auroc"),  # the random encoder, before any step
        "knn_val_auroc_first": knn[0] if knn else None,
        "knn_val_auroc_last": knn[-1] if knn else None,
        "knn_few_labels": next(
            (r["knn_few_labels"] for r in history if "knn_few_labels" in r), None
        ),
        "knn_few_val_auroc_init": init.get("knn_few_val_auroc"),
        "knn_few_val_auroc_first": few[0] if few else None,
        "knn_few_val_auroc_last": few[-1] if few else None,
        "train_time_s": sum(r["epoch_time_s"] for r in history),
        "encoder": str(out / "encoder.safetensors"),
    }
    write_json(out / MARKERS["pretrain"], summary)
    return summary
