"""DINO (Caron et al. 2021): self-distillation with no labels. A student matches the centred,
sharpened output distribution of a teacher, an EMA of the student, across views.

Recipe for 28 px grey images: head 512-1024-1024-256 (Linear-BN-ReLU, as DINO's ResNet runs use
BatchNorm in the head), then L2 normalisation and a weight-normalised last layer to K = 2048
prototypes with its norm fixed to 1 (the paper's norm_last_layer; 65536 prototypes for
ImageNet). Two global views only (28 px leaves no room for local crops). Student temperature
0.1; teacher temperature warmed up linearly from 0.04 to 0.07 over the first 30% of training
(the paper's ResNet-50 setting); centre momentum 0.9; teacher momentum from 0.996 to 1 on a
cosine. AdamW with lr 5e-4 and weight decay 0.04 (the paper's start value). Under torchrun the
centre is averaged over processes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from medssl.losses import dino, dino_center
from medssl.methods.common import cosine_momentum, ema_copy, ema_update
from medssl.models import Encoder, ProjectionHead

PROTOTYPES = 2048
TEACHER_TEMP = (0.04, 0.07, 0.3)  # start, end, fraction of training to warm up over
CENTER_MOMENTUM = 0.9


class DINOHead(nn.Module):
    """MLP to a bottleneck, L2 normalisation, weight-normalised prototypes (norm fixed to 1)."""

    def __init__(self, dims, prototypes: int) -> None:
        super().__init__()
        self.mlp = ProjectionHead(tuple(dims))
        self.prototypes = nn.Parameter(torch.empty(prototypes, dims[-1]))
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.mlp(h), dim=-1)
        return F.linear(z, F.normalize(self.prototypes, dim=-1))


class DINO(nn.Module):
    """Student (encoder + head), teacher (EMA copy) and the centre of the teacher's outputs."""

    def __init__(self, stem: str, dims, student_temp: float, momentum: float) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.head = DINOHead(dims, PROTOTYPES)
        self.teacher_encoder = ema_copy(self.encoder)
        self.teacher_head = ema_copy(self.head)
        self.student_temp, self.base_momentum = student_temp, momentum
        self.register_buffer("center", torch.zeros(1, PROTOTYPES))
        self.pending = self.center

    @staticmethod
    def teacher_temp(progress: float) -> float:
        start, end, warmup = TEACHER_TEMP
        return start + (end - start) * min(progress / warmup, 1.0)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        b = len(x1)
        s = self.head(self.encoder(torch.cat([x1, x2])))
        with torch.no_grad():
            t = self.teacher_head(self.teacher_encoder(torch.cat([x1, x2])))
        with torch.autocast(s.device.type, enabled=False):
            s, t = s.float(), t.float()
            teacher = [t[:b], t[b:]]
            temp = self.teacher_temp(progress)
            loss = dino([s[:b], s[b:]], teacher, self.center, self.student_temp, temp)
            new = dino_center(self.center, teacher, CENTER_MOMENTUM)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(new)
            new /= dist.get_world_size()
        self.pending = new  # the centre moves after the step, as in the paper's code
        return loss

    def after_step(self, progress: float) -> None:
        self.center.copy_(self.pending)
        m = cosine_momentum(self.base_momentum, progress)
        ema_update(self.teacher_encoder, self.encoder, m)
        ema_update(self.teacher_head, self.head, m)

    def heads(self) -> dict[str, nn.Module]:
        return {"projection_head": self.head}


def build(cfg, n_train: int) -> DINO:
    return DINO(cfg.stem, cfg.proj_dims, cfg.temperature, cfg.momentum)
