"""Helpers the self-supervised methods share: EMA teachers, their momentum schedule, and the
all-gather of embeddings across torchrun processes."""

from __future__ import annotations

import copy
import math

import torch
import torch.distributed as dist
from torch import nn


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


def gather(z: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """`z` of every torchrun process concatenated in rank order (itself in one process); with
    `grad`, all_gather's backward sums the copies' gradients, so DDP's average is exact."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    if grad:
        from torch.distributed.nn.functional import all_gather  # absent without distributed

        return torch.cat(all_gather(z))
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.detach())
    return torch.cat(parts)
