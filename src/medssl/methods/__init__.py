"""Self-supervised methods: each is its networks and its loss in one module of about a hundred
lines, over the shared pretraining loop (`medssl.pretrain` on `medssl.engine`).

A method is an `nn.Module` with
- `encoder`: the ResNet-18 `Encoder` that pretraining is for;
- `forward(x1, x2, progress)`: the loss of a batch of two views (B, C, H, W) each, at
  `progress` (the fraction of training done before this step: temperature schedules); networks
  run under the caller's autocast, the loss in float32 outside it;
- `after_step(progress)`: called after every optimizer step with the fraction of training done
  (EMA teachers and their momentum schedules; a no-op for SimCLR);
- `heads()`: the trained heads saved beside the encoder, {file stem: module}.
Each module has `DEFAULTS` (its recipe: the options it fills when unset) and `build(cfg, n)`.
Teachers (EMA copies) have `requires_grad=False`, so the optimizer never sees them; they are in
the state dict, so a resumed run continues them exactly.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from medssl.errors import MedsslError


def ema_copy(module: nn.Module) -> nn.Module:
    """A frozen copy of `module` for a momentum teacher."""
    teacher = copy.deepcopy(module)
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- m teacher + (1 - m) student for parameters and BatchNorm running statistics;
    the batch counter is copied, constant buffers (the input normalisation) are left alone."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
    student_buffers = dict(student.named_buffers())
    for name, t in teacher.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            t.mul_(momentum).add_(student_buffers[name], alpha=1 - momentum)
        elif name.endswith("num_batches_tracked"):
            t.copy_(student_buffers[name])


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL's schedule: m = 1 - (1 - base)(cos(pi progress) + 1) / 2, from base to 1."""
    return 1 - (1 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1) / 2


METHODS = ("simclr", "moco", "byol", "simsiam", "barlow", "vicreg", "dino")
LOSSES = {  # the loss each method minimises (`medssl.losses`); its TensorBoard tag is loss/<it>
    "simclr": "nt_xent",
    "moco": "info_nce",
    "byol": "negative_cosine",
    "simsiam": "negative_cosine",
    "barlow": "barlow_twins",
    "vicreg": "vicreg",
    "dino": "dino",
}
NAMES = {
    "simclr": "SimCLR",
    "moco": "MoCo v2",
    "byol": "BYOL",
    "simsiam": "SimSiam",
    "barlow": "Barlow Twins",
    "vicreg": "VICReg",
    "dino": "DINO",
}


def build(cfg, n_train: int) -> nn.Module:
    """The method `cfg.method` with its recipe (see each module and docs/methods.md), for a
    training split of `n_train` images (MoCo's queue is never larger than the data)."""
    from importlib import import_module

    if cfg.method not in METHODS:
        raise MedsslError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    return import_module(f"medssl.methods.{cfg.method}").build(cfg, n_train)


def gather(z: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """`z` of every torchrun process concatenated in rank order (itself in one process); with
    `grad`, all_gather's backward sums the copies' gradients, so DDP's average is exact."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    if grad:
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(z))
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.detach())
    return torch.cat(parts)
