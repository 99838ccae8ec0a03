"""One epoch loop for supervised training and every self-supervised method.

nanoGPT's order, written once: learning rate from a pure function of the epoch -> the epoch's
index batches -> step (batch -> loss) -> backward -> optimizer step -> after-step hook (EMA
teachers, queues) -> end-of-epoch hook (validation or kNN monitor, best model, the method's
files) -> history -> tracker -> checkpoint -> progress bar. A non-finite loss is flagged on the
device at every step (no host sync) and raised before anything of the epoch is saved.

A caller describes its run as a `Loop`: plain functions in a dataclass (no class hierarchy, no
callback registry). `train.py` and `pretrain.py` each build one; `restore` reads the checkpoint
this loop writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from medssl.errors import MedsslError
from medssl.io.artifacts import atomic_path, read_jsonl, read_torch, short_error, write_jsonl

# What every checkpoint holds besides the caller's `state()`.
CHECKPOINT_KEYS = ("epoch", "history_len", "optimizer", "generator")


def lr_factor(epoch: int, cfg: Any) -> float:
    """Multiplier of the peak LR at `epoch` (0-based): linear warm-up, then the schedule.

    exp is docs/math.md §8, eta_t = eta_0 gamma^t with t counted after warm-up;
    cosine goes from 1 to 0 over the post-warm-up epochs. `cfg` has warmup_epochs,
    lr_schedule, gamma and epochs.
    """
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    t = epoch - cfg.warmup_epochs
    if cfg.lr_schedule == "exp":
        return cfg.gamma**t
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t / max(1, cfg.epochs - cfg.warmup_epochs)))
    return 1.0


@dataclass
class Loop:
    """What one run's epoch loop is made of.

    Attributes:
        out: the run folder (history.jsonl and last.pt are written there).
        cfg: the command's options (epochs, warm-up, schedule, gamma, progress).
        optimizer: its param groups carry `base_lr`; the LR is base_lr x lr_factor(epoch).
        generator: the run's device generator (shuffling, augmentation), saved for resume.
        batches: epoch -> the epoch's index batches (sets train mode, draws the permutation).
        step: (epoch, step, idx) -> scalar loss of that batch (graph attached).
        end_epoch: epoch -> extra history fields (validation, kNN monitor); saves best model or
            the method's files.
        state: the caller's part of last.pt (model, best so far).
        scalars: a history row -> the tracker's scalars.
        after_step: (epoch, step) after each optimizer step: EMA teachers, momentum schedules.
        postfix: a history row -> the progress bar's postfix.
        loss_key: the history field of the epoch's mean loss.
        per_sample: mean over samples (batches weighted by size) or over steps.
        hint: what to do after a non-finite loss.
        write: this process writes history, checkpoint and events (rank 0 under torchrun).
    """

    out: Path
    cfg: Any
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    batches: Callable[[int], list[torch.Tensor]]
    step: Callable[[int, int, torch.Tensor], torch.Tensor]
    end_epoch: Callable[[int], dict]
    state: Callable[[], dict]
    scalars: Callable[[dict], dict]
    after_step: Callable[[int, int], None] | None = None
    postfix: Callable[[dict], dict] | None = None
    loss_key: str = "loss"
    per_sample: bool = False
    desc: str = "train"
    hint: str = "lower --lr and start a new run"
    write: bool = True


def run(loop: Loop, start: int, history: list[dict], tracker) -> list[dict]:
    """Train epochs `start`..cfg.epochs-1, appending one history row per epoch."""
    cfg, opt = loop.cfg, loop.optimizer
    bar = tqdm(
        range(start, cfg.epochs),
        desc=loop.desc,
        unit="epoch",
        disable=not cfg.progress or not loop.write,
        initial=start,
        total=cfg.epochs,
        dynamic_ncols=True,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        factor = lr_factor(epoch, cfg)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor
        batches = loop.batches(epoch)
        device = batches[0].device
        loss_sum, weight = torch.zeros((), device=device), 0
        bad_step = torch.full((), -1, device=device)
        for step, idx in enumerate(batches):
            loss = loop.step(epoch, step, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if loop.after_step is not None:
                loop.after_step(epoch, step)
            w = len(idx) if loop.per_sample else 1
            loss_sum += loss.detach() * w if loop.per_sample else loss.detach()
            weight += w
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
        if int(bad_step) >= 0:  # one host sync per epoch
            _nonfinite(loop, epoch, int(bad_step))
        row = {"epoch": epoch, "lr": opt.param_groups[-1]["lr"]}
        row[loop.loss_key] = float(loss_sum) / weight
        row |= loop.end_epoch(epoch)
        row["epoch_time_s"] = time.perf_counter() - t0
        history.append(row)
        if loop.write:
            tracker.scalars(epoch, loop.scalars(row))
            write_jsonl(loop.out / "history.jsonl", history)
            if epoch < cfg.epochs - 1:  # after the last epoch the caller's finish marker follows;
                save_checkpoint(loop, epoch, len(history))  # a kill before it redoes that epoch
        if loop.postfix is not None:
            bar.set_postfix(loop.postfix(row))
    bar.close()
    return history


def _nonfinite(loop: Loop, epoch: int, step: int) -> None:
    kept = (
        f"the checkpoint of epoch {epoch - 1} is kept in {loop.out}"
        if (loop.out / "last.pt").is_file()
        else "no checkpoint was saved"
    )
    raise MedsslError(f"non-finite loss at epoch {epoch}, step {step}; {kept}; {loop.hint}")


def save_checkpoint(loop: Loop, epoch: int, history_len: int) -> None:
    """last.pt: the caller's state, optimizer, RNG states and position, written atomically."""
    state = {
        **loop.state(),
        "optimizer": loop.optimizer.state_dict(),
        "epoch": epoch,
        "generator": loop.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history_len": history_len,
    }
    with atomic_path(loop.out / "last.pt") as tmp:
        torch.save(state, tmp)


def restore(
    out: Path,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    load: Callable[[dict], None],
    keys: tuple[str, ...],
    log,
    row_keys: tuple[str, ...] = (),
) -> dict | None:
    """Read out/last.pt (the caller's `keys` and CHECKPOINT_KEYS) and apply it: `load(state)`
    for the caller's modules, then optimizer and RNG states. Returns the state with its
    `history`, or None without a checkpoint. Every mismatch is one line (`_load_checkpoint`)."""

    def apply(state: dict) -> None:
        load(state)
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        if "torch_rng" in state:  # absent in pretrain checkpoints of medssl 0.1.0
            torch.set_rng_state(state["torch_rng"].cpu())

    return _load_checkpoint(out, CHECKPOINT_KEYS + keys, apply, log, ("epoch", "lr", *row_keys))


def _load_checkpoint(
    out: Path, require: tuple[str, ...], restore, log, row_keys: tuple[str, ...] = ()
) -> dict | None:
    """Read `out/last.pt` and its history and apply them with `restore(state)`, turning every
    mismatch (a corrupt, truncated or foreign checkpoint, a broken history.jsonl) into one line.
    Returns the state with `history` (the rows up to the checkpoint), or None without a
    checkpoint (a run interrupted in its first epoch starts again from epoch 0)."""
    ckpt = out / "last.pt"
    if not ckpt.is_file():
        log(f"--resume: no checkpoint in {out} yet; starting from epoch 0")
        return None
    state = read_torch(ckpt, require, "resume checkpoint")
    epoch, n_rows = state["epoch"], state.get("history_len", 0)
    if not (isinstance(epoch, int) and epoch >= 0 and isinstance(n_rows, int) and n_rows >= 0):
        raise MedsslError(f"{ckpt}: epoch {epoch!r} / history length {n_rows!r} are not counts")
    history = read_jsonl(out / "history.jsonl", "history") if n_rows else []
    if len(history) < n_rows:
        raise MedsslError(
            f"{out}/history.jsonl: {len(history)} rows, the checkpoint needs {n_rows}"
        )
    for i, row in enumerate(history[:n_rows]):
        bad = [k for k in row_keys if not _number(row.get(k))]
        if bad or row.get("epoch") != i:
            raise MedsslError(
                f"{out}/history.jsonl:{i + 1}: not a history row of epoch {i} (missing or not "
                f"finite numbers: {bad or ['epoch']})"
            )
    try:
        restore(state)
    except MedsslError:
        raise
    except Exception as exc:  # load_state_dict / set_state on foreign tensors
        raise MedsslError(
            f"{ckpt}: does not fit this run ({short_error(exc)}); choose another --out (a new or "
            "empty folder)"
        ) from None
    return state | {"history": history[:n_rows]}


def _number(x) -> bool:
    """A finite int or float (history rows of a healthy run hold nothing else)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
