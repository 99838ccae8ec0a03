"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of the two views' standardised
projections is pushed to the identity: invariance on the diagonal, redundancy reduction off it.

Recipe for 28 px grey images: projector 512-1024-1024-1024 (Linear-BN-ReLU, last Linear without
bias; the paper's 8192 x 3 scaled to the 512-d encoder), lambda 5e-3. Both views go through the
encoder in one pass. Under torchrun the projections are all-gathered with gradients, so the
correlation matrix is the global batch's, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses import barlow_twins
from medssl.methods.common import gather
from medssl.models import Encoder, ProjectionHead

LAMBD = 5e-3


class BarlowTwins(nn.Module):
    """Encoder and projector; the loss standardises each view's projections over the batch."""

    def __init__(self, stem: str, dims) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.projection = ProjectionHead(tuple(dims), last_bias=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        b = len(x1)
        z = self.projection(self.encoder(torch.cat([x1, x2])))
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            return barlow_twins(gather(z[:b]), gather(z[b:]), LAMBD)

    def after_step(self, progress: float) -> None:
        pass

    def heads(self) -> dict[str, nn.Module]:
        return {"projection_head": self.projection}


def build(cfg, n_train: int) -> BarlowTwins:
    return BarlowTwins(cfg.stem, cfg.proj_dims)
