"""SimCLR pretraining (contrastive-ssl-theory.md): encoder f + projection g trained with NT-Xent.

The training split is used as unlabeled images: labels never reach the loss. Labels are read only
by the kNN monitor, which scores the frozen encoder's features on the validation split after an
epoch so users can watch representations improve.

Multi-process: launched with `torchrun`, each process takes its slice of one global permutation,
projections are all-gathered WITH gradients so every anchor sees the 2B·world views of the global
batch, and DDP averages parameter gradients: loss and gradients equal one process on the whole
batch (BatchNorm statistics stay per process, as without SyncBatchNorm).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from medssl import data as D
from medssl.artifacts import atomic_path, read_json, write_json, write_jsonl
from medssl.augment import to_float, two_views
from medssl.errors import MedsslError
from medssl.losses import nt_xent
from medssl.metrics import auroc
from medssl.models import Encoder, ProjectionHead, metadata, save_model
from medssl.options import PretrainConfig
from medssl.rundir import claim, drop_resume_state, load_resume, open_run
from medssl.tracking import Tracker, check_tracking
from medssl.train import autocast, extract_features, lr_factor, resolve_device, resolve_precision


class SimCLR(torch.nn.Module):
    """Encoder f and projection head g; forward gives unnormalised z of a batch of views."""

    def __init__(self, stem: str, proj_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.projection = ProjectionHead(proj_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.encoder(x))


def gather_with_grad(z: torch.Tensor) -> torch.Tensor:
    """Concatenate `z` from all processes in rank order, keeping gradients (identity if single)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z))


def distributed_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over the global batch: local views (B, k) gathered to (B·world, k) per view.

    Every process computes the same global loss; all_gather's backward sums the gradients of the
    copies, and DDP's averaging then gives exactly the single-process gradient.
    """
    return nt_xent(gather_with_grad(z1), gather_with_grad(z2), temperature)


@torch.no_grad()
def knn_scores(
    train_feats: torch.Tensor,
    train_targets: torch.Tensor,
    query_feats: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Weighted kNN (cosine) positive-class score of each query: sum w y / sum w over the k
    nearest training features, w = exp(cos / temperature) (Wu et al. 2018's monitor)."""
    train = F.normalize(train_feats.float(), dim=1)
    query = F.normalize(query_feats.float(), dim=1)
    k = min(k, len(train))
    sims, idx = (query @ train.T).topk(k, dim=1)  # (Q, k)
    w = ((sims - 1) / temperature).exp()  # shifted by the max possible cos for stability
    return (w * train_targets.float()[idx]).sum(1) / w.sum(1)


def _rank_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed(device: torch.device) -> None:
    """Join the torchrun process group when launched with WORLD_SIZE > 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


RESUME_KEYS = ("model", "optimizer", "epoch", "generator", "history_len")


def pretrain(cfg: PretrainConfig, resume: bool = False, log=print) -> dict:
    """Run SimCLR pretraining; write encoder, projection head, history and plots to cfg.out.

    Run directory: run.json, config.yaml, knn_init.json (the kNN monitor of the initial
    encoder), history.jsonl (loss, kNN val AUROC/accuracy with all and with few labels, LR,
    time), encoder.safetensors (+ .json), projection_head.safetensors, loss_curve.png, last.pt
    (resume state, removed once the run finishes), pretrain.json (written last: marks a
    finished run). Bad input is refused before the first byte is written.
    """
    device = resolve_device(cfg.device)
    if device.type == "cuda" and int(os.environ.get("LOCAL_RANK", "-1")) >= 0:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    _init_distributed(device)
    rank, world = _rank_info()
    claimed = claim(cfg, resume) if rank == 0 else None
    if claimed and claimed.action == "finished":
        log(f"{claimed.path} already holds this finished pretrain run; nothing to do")
        return read_json(claimed.path / "pretrain.json", "pretrain summary")
    out = Path(cfg.out)
    check_tracking(cfg.mlflow)
    info = D.dataset_info(cfg.dataset)
    splits = D.load_splits(
        cfg.dataset,
        cfg.data_root,
        info.default_positive,
        cfg.size,
        device,
        cfg.download,
        cfg.verify_md5,
    )
    torch.manual_seed(cfg.seed)
    model = SimCLR(cfg.stem, cfg.projection_dims()).to(device, memory_format=torch.channels_last)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def restore(state: dict) -> None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"].cpu())

    state = None
    if resume and (claimed is None or claimed.action == "resume"):
        state = load_resume(out, RESUME_KEYS, restore, log if rank == 0 else _quiet)
    aug = cfg.augment_config()
    images = splits["train"].images  # labels are never read by the training step
    n = len(images)
    history: list[dict] = state["history"] if state else []
    start = state["epoch"] + 1 if state else 0
    if state:
        log(f"resumed {out} at epoch {start}")
    precision = resolve_precision(cfg.precision, device)
    global_batch = cfg.batch_size * world
    steps = n // global_batch if n >= global_batch else 1
    if rank == 0:
        log(
            f"SimCLR on {cfg.dataset} train ({n} images, labels unused): {steps} steps/epoch of "
            f"{min(global_batch, n)} images = {2 * min(global_batch, n)} views, tau "
            f"{cfg.temperature}, augment {cfg.augment}, {world} process(es), device {device}, "
            f"{precision}"
        )
    folder = open_run(claimed, cfg) if rank == 0 else contextlib.nullcontext()
    with (
        folder,
        contextlib.closing(
            Tracker(
                out,
                cfg.to_dict(),
                cfg.tensorboard and rank == 0,
                cfg.mlflow if rank == 0 else None,
                start,
                f"medssl-{cfg.dataset}",
            )
        ) as tracker,
    ):
        if rank == 0 and cfg.knn_every and start == 0:
            # The starting point of the monitor: the randomly initialised encoder's kNN score.
            init = knn_monitor(model.encoder, splits, cfg, precision)
            write_json(out / "knn_init.json", init)
            tracker.scalars(
                0,
                {
                    "knn/val_auroc_at_init": init["knn_val_auroc"],
                    "knn/few_label_val_auroc_at_init": init.get("knn_few_val_auroc", math.nan),
                },
            )
        bar = tqdm(
            range(start, cfg.epochs),
            desc=f"SimCLR {cfg.dataset}",
            unit="epoch",
            disable=not cfg.progress or rank != 0,
            initial=start,
            total=cfg.epochs,
            dynamic_ncols=True,
        )
        for epoch in bar:
            t0 = time.perf_counter()
            lr = cfg.lr * lr_factor(epoch, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            net.train()
            perm = torch.randperm(n, generator=gen, device=device)
            loss_sum = torch.zeros((), device=device)
            for step in range(steps):
                batch = perm[step * global_batch : (step + 1) * global_batch]
                local = batch.tensor_split(world)[rank]  # this process's slice of the batch
                v1, v2 = two_views(to_float(images[local], cfg.resize), aug, gen)
                if epoch == 0 and step == 0:  # pairs: view 1 above view 2
                    pairs = torch.stack([v1[:16, 0], v2[:16, 0]], 1).flatten(0, 1)
                    tracker.images("augmentation/view_pairs", pairs.float().cpu().numpy())
                with autocast(device, precision):
                    z = net(torch.cat([v1, v2]))
                loss = distributed_nt_xent(
                    z[: len(local)].float(), z[len(local) :].float(), cfg.temperature
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach()
            row = {
                "epoch": epoch,
                "lr": lr,
                "loss": float(loss_sum) / steps,
                "epoch_time_s": time.perf_counter() - t0,
            }
            if not math.isfinite(row["loss"]):
                kept = (
                    f"the checkpoint of epoch {epoch - 1} is kept in {out}"
                    if (out / "last.pt").is_file()
                    else "no checkpoint was saved"
                )
                raise MedsslError(
                    f"non-finite NT-Xent loss at epoch {epoch}; {kept}; lower --lr or raise "
                    f"--temperature"
                )
            if rank == 0 and cfg.knn_every and (epoch + 1) % cfg.knn_every == 0:
                row.update(knn_monitor(model.encoder, splits, cfg, precision))
            if rank == 0:
                history.append(row)
                tracker.scalars(
                    epoch,
                    {
                        "loss/nt_xent": row["loss"],
                        "lr": lr,
                        "knn/val_auroc": row.get("knn_val_auroc", math.nan),
                        "knn/val_accuracy": row.get("knn_val_accuracy", math.nan),
                        "knn/few_label_val_auroc": row.get("knn_few_val_auroc", math.nan),
                        "time/epoch_s": row["epoch_time_s"],
                    },
                )
                _save(model, opt, gen, epoch, history, cfg, out)
                bar.set_postfix(
                    loss=f"{row['loss']:.4f}",
                    knn_auroc=f"{row.get('knn_val_auroc', float('nan')):.4f}",
                )
        bar.close()
        summary = {}
        if rank == 0:
            summary = _finish(cfg, history, out, n, world, precision, str(device))
            drop_resume_state(out)
            tracker.figure("figures/loss_curve", out / "loss_curve.png")
            tracker.artifact(out / "pretrain.json")
    if world > 1:
        dist.barrier()
    return summary


def _quiet(*_args, **_kw) -> None:
    pass


def format_summary(s: dict) -> str:
    """The lines `medssl pretrain` prints at the end."""

    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    few = ""
    if s.get("knn_few_labels"):
        few = (
            f"; with {s['knn_few_labels']} labels {f(s.get('knn_few_val_auroc_init'))} -> "
            f"{f(s.get('knn_few_val_auroc_last'))}"
        )
    return (
        f"SimCLR {s['dataset']}: loss {f(s.get('first_loss'))} -> {f(s.get('final_loss'))}; "
        f"kNN val AUROC {f(s.get('knn_val_auroc_init'))} (init) -> "
        f"{f(s.get('knn_val_auroc_first'))} (first check) -> {f(s.get('knn_val_auroc_last'))}"
        f"{few}; {s.get('train_time_s', 0):.0f} s\nencoder: {s.get('encoder')}"
    )


KNN_FEW_SUBSETS = 3  # the few-label monitor averages over this many fixed label subsets


def knn_few_label_banks(targets: torch.Tensor, n_labels: int) -> list[torch.Tensor]:
    """The few-label kNN monitor's memory banks: KNN_FEW_SUBSETS stratified subsets of about
    `n_labels` training examples (seeds 0, 1, ...; the same at every epoch, so the curve moves
    only with the encoder). Empty when `n_labels` is 0 or not below the split's size."""
    if n_labels <= 0 or n_labels >= len(targets):
        return []
    frac = max(n_labels, 2) / len(targets)
    return [D.stratified_subset(targets, frac, seed) for seed in range(KNN_FEW_SUBSETS)]


def knn_monitor(encoder: Encoder, splits: dict, cfg: PretrainConfig, precision: str) -> dict:
    """kNN (cosine, k = cfg.knn_k) AUROC and accuracy on val from frozen train features.

    Two memory banks: every training label (`knn_val_auroc`, `knn_val_accuracy`) and, when
    cfg.knn_labels > 0, a few labels (`knn_few_val_auroc`: mean over KNN_FEW_SUBSETS stratified
    subsets of cfg.knn_labels examples). With every label in the bank a random encoder's kNN is
    near the ceiling on easy sets (PneumoniaMNIST); the few-label bank, like a low-label probe,
    shows what the representation adds.
    """
    tr = extract_features(
        encoder, splits["train"].images, cfg.eval_batch_size, cfg.resize, precision
    )
    va = extract_features(encoder, splits["val"].images, cfg.eval_batch_size, cfg.resize, precision)
    targets = splits["train"].targets
    scores = knn_scores(tr, targets, va, cfg.knn_k).double().cpu().numpy()
    y = splits["val"].targets.cpu().numpy()
    out = {
        "knn_val_auroc": auroc(y, scores),
        "knn_val_accuracy": float(np.mean((scores >= 0.5) == (y == 1))),
    }
    banks = knn_few_label_banks(targets.cpu(), cfg.knn_labels)
    if banks:
        few = [
            auroc(y, knn_scores(tr[b], targets[b], va, cfg.knn_k).double().cpu().numpy())
            for b in (bank.to(tr.device) for bank in banks)
        ]
        out["knn_few_val_auroc"] = float(np.mean(few))
        out["knn_few_labels"] = len(banks[0])
    return out


def _save(model: SimCLR, opt, gen, epoch: int, history: list[dict], cfg, out: Path) -> None:
    meta = dict(dataset=cfg.dataset, epoch=epoch, objective="simclr", temperature=cfg.temperature)
    save_model(
        model.encoder, out / "encoder.safetensors", metadata("encoder", model.encoder, **meta)
    )
    save_model(
        model.projection,
        out / "projection_head.safetensors",
        metadata("projection_head", model.encoder, dims=",".join(map(str, cfg.proj_dims)), **meta),
    )
    write_jsonl(out / "history.jsonl", history)
    with atomic_path(out / "last.pt") as tmp:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "generator": gen.get_state(),
                "history_len": len(history),
            },
            tmp,
        )


def _finish(cfg, history, out, n, world, precision, device) -> dict:
    from medssl import plots

    init_file = out / "knn_init.json"
    init = read_json(init_file, "kNN monitor at init") if init_file.is_file() else {}
    plots.plot_pretrain_curves(history, out / "loss_curve.png", knn_init=init)
    knn = [r["knn_val_auroc"] for r in history if "knn_val_auroc" in r]
    few = [r["knn_few_val_auroc"] for r in history if "knn_few_val_auroc" in r]
    summary = {
        "dataset": cfg.dataset,
        "objective": "simclr",
        "epochs": cfg.epochs,
        "n_train_images": n,
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
    write_json(out / "pretrain.json", summary)
    return summary
