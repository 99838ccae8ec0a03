"""BYOL (Grill et al. 2020): an online network (encoder, projector, predictor) predicts the
projection of the other view made by a target network, an EMA of the online encoder and
projector; no negatives.

Recipe for 28 px grey images: projector 512-1024-256 and predictor 256-1024-256 (Linear-BN-
ReLU-Linear; the paper's 4096-wide hidden layers scaled to the 512-d encoder), target momentum
from 0.99 to 1 on BYOL's cosine schedule over all steps (0.996 in the paper, whose runs have
~100x more steps), loss the sum over both view orders of the negative cosine between the
prediction and the (stop-gradient) target projection: the paper's 2 - 2 cos per direction up to
a constant and a factor Adam does not see.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses import negative_cosine
from medssl.methods.common import cosine_momentum, ema_copy, ema_update
from medssl.models import Encoder, ProjectionHead


class BYOL(nn.Module):
    """Online encoder + projector + predictor, and the target encoder + projector (EMA)."""

    def __init__(self, stem: str, dims, momentum: float) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.projection = ProjectionHead(tuple(dims))
        k = dims[-1]
        self.predictor = ProjectionHead((k, dims[1], k))
        self.target_encoder = ema_copy(self.encoder)
        self.target_projection = ema_copy(self.projection)
        self.base_momentum = momentum

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        b = len(x1)
        p = self.predictor(self.projection(self.encoder(torch.cat([x1, x2]))))
        with torch.no_grad():
            z = self.target_projection(self.target_encoder(torch.cat([x1, x2])))
        with torch.autocast(p.device.type, enabled=False):
            p, z = p.float(), z.float()
            return negative_cosine(p[:b], z[b:]) + negative_cosine(p[b:], z[:b])

    def after_step(self, progress: float) -> None:
        m = cosine_momentum(self.base_momentum, progress)
        ema_update(self.target_encoder, self.encoder, m)
        ema_update(self.target_projection, self.projection, m)

    def heads(self) -> dict[str, nn.Module]:
        return {"projection_head": self.projection, "predictor": self.predictor}


def build(cfg, n_train: int) -> BYOL:
    return BYOL(cfg.stem, cfg.proj_dims, cfg.momentum)
