"""VICReg (Bardes et al. 2022): variance, invariance and covariance terms on the two views'
projections ("expander"): no negatives, no momentum encoder, no batch-wise normalisation.

Recipe for 28 px grey images: expander 512-1024-1024-1024 (Linear-BN-ReLU, last Linear; the
paper's 8192 x 3 scaled to the 512-d encoder), coefficients 25 / 25 / 1 as in the paper. Under
torchrun the projections are all-gathered with gradients (the paper's FullGatherLayer).
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses import vicreg
from medssl.methods.common import gather
from medssl.models import Encoder, ProjectionHead


class VICReg(nn.Module):
    """Encoder and expander."""

    def __init__(self, stem: str, dims) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.projection = ProjectionHead(tuple(dims))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        b = len(x1)
        z = self.projection(self.encoder(torch.cat([x1, x2])))
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            return vicreg(gather(z[:b]), gather(z[b:]))

    def after_step(self, progress: float) -> None:
        pass

    def heads(self) -> dict[str, nn.Module]:
        return {"projection_head": self.projection}


def build(cfg, n_train: int) -> VICReg:
    return VICReg(cfg.stem, cfg.proj_dims)
