"""SimSiam (Chen & He 2021): BYOL without a momentum encoder: one network predicts its own
stop-gradient projection of the other view.

Recipe for 28 px grey images: projector 512-512-512 ending in BatchNorm (the paper's CIFAR
variant has 2 layers of 2048; scaled to the 512-d encoder), bottleneck predictor 512-128-512,
loss 1/2 D(p1, z2) + 1/2 D(p2, z1) with D the negative cosine and z detached.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses import negative_cosine
from medssl.models import Encoder, ProjectionHead


class SimSiam(nn.Module):
    """Encoder, projector (ends with BatchNorm) and bottleneck predictor."""

    def __init__(self, stem: str, dims) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.projection = ProjectionHead(tuple(dims), last_bn=True)
        k = dims[-1]
        self.predictor = ProjectionHead((k, max(k // 4, 1), k))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        b = len(x1)
        z = self.projection(self.encoder(torch.cat([x1, x2])))
        p = self.predictor(z)
        with torch.autocast(z.device.type, enabled=False):
            p, z = p.float(), z.float()
            return 0.5 * (negative_cosine(p[:b], z[b:]) + negative_cosine(p[b:], z[:b]))

    def after_step(self, progress: float) -> None:
        pass

    def heads(self) -> dict[str, nn.Module]:
        return {"projection_head": self.projection, "predictor": self.predictor}


def build(cfg, n_train: int) -> SimSiam:
    return SimSiam(cfg.stem, cfg.proj_dims)
