"""SimCLR (Chen et al. 2020; docs/math.md §11-§14): encoder f, projection MLP g, NT-Xent.

Recipe for 28 px grey images: projection 512-512-128 (Linear-BN-ReLU-Linear), tau 0.2, both
views through the encoder in one forward pass (BatchNorm statistics over the 2B views). Under
torchrun the projections are all-gathered with gradients, so every anchor sees the global batch.
"""

from __future__ import annotations

import torch
from torch import nn

from medssl.losses import nt_xent
from medssl.methods.common import gather
from medssl.models import Encoder, ProjectionHead


def distributed_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over the global batch: local views (B, k) gathered to (B·world, k) per view.

    Every process computes the same global loss; all_gather's backward sums the gradients of the
    copies, and DDP's averaging then gives exactly the single-process gradient.
    """
    return nt_xent(gather(z1), gather(z2), temperature)


class SimCLR(nn.Module):
    """Encoder f and projection head g; forward gives the NT-Xent loss of two views."""

    def __init__(self, stem: str, proj_dims: tuple[int, ...], temperature: float = 0.2) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.projection = ProjectionHead(proj_dims)
        self.temperature = temperature

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised projections z (N, k) of a batch of views."""
        return self.projection(self.encoder(x))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        b = len(x1)
        z = self.embed(torch.cat([x1, x2]))
        with torch.autocast(z.device.type, enabled=False):
            return distributed_nt_xent(z[:b].float(), z[b:].float(), self.temperature)

    def after_step(self, progress: float) -> None:
        pass

    def heads(self) -> dict[str, nn.Module]:
        return {"projection_head": self.projection}


def build(cfg, n_train: int) -> SimCLR:
    return SimCLR(cfg.stem, tuple(cfg.proj_dims), cfg.temperature)
