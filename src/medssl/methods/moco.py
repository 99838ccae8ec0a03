"""MoCo v2 (He et al. 2020; Chen et al. 2020, "Improved baselines"): a query encoder trained with
InfoNCE against the keys of a momentum encoder and a queue of earlier keys.

Recipe for 28 px grey images: Linear-ReLU-Linear head 512-512-128 (v2's MLP, no BatchNorm),
tau 0.2, key encoder an EMA of the query encoder with constant momentum 0.99 (0.999 in the
paper, whose epochs have ~5000 steps; ours have 2-20), queue of 4096 keys capped at the number
of training images, initialised with random unit vectors as in the paper. The loss is
symmetrised over the two views (query of each view against the other view's key; both keys are
enqueued), as in MoCo v3 and solo-learn's mocov2+. Shuffle-BN is not used: in one process the
key encoder's BatchNorm sees the key batch only. Under torchrun keys are all-gathered before
they are enqueued, so every process holds the same queue.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medssl.losses import info_nce
from medssl.methods.common import ema_copy, ema_update, gather
from medssl.models import Encoder, ProjectionHead


class MoCo(nn.Module):
    """Query encoder + head, their momentum copy, and a queue (K, k) of unit keys."""

    def __init__(self, stem: str, dims, temperature: float, momentum: float, queue: int) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels=1)
        self.projection = ProjectionHead(tuple(dims), batchnorm=False)
        self.key_encoder = ema_copy(self.encoder)
        self.key_projection = ema_copy(self.projection)
        self.temperature, self.momentum = temperature, momentum
        self.register_buffer("queue", F.normalize(torch.randn(queue, dims[-1]), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.pending = torch.empty(0, dims[-1])

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, progress: float = 0.0) -> torch.Tensor:
        b = len(x1)
        q = self.projection(self.encoder(torch.cat([x1, x2])))
        with torch.no_grad():
            k = self.key_projection(self.key_encoder(torch.cat([x1, x2])))
        with torch.autocast(q.device.type, enabled=False):
            q, k = q.float(), F.normalize(k.float(), dim=1)
            loss = 0.5 * (
                info_nce(q[:b], k[b:], self.queue, self.temperature)
                + info_nce(q[b:], k[:b], self.queue, self.temperature)
            )
        self.pending = gather(k, grad=False)  # enqueued after the step: backward needs the queue
        return loss

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries of the ring buffer with `keys` (after the loss used it)."""
        n = len(self.queue)
        if n == 0:
            return
        keys = keys[-n:]
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % n
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % n)

    def after_step(self, progress: float) -> None:
        self._enqueue(self.pending)
        ema_update(self.key_encoder, self.encoder, self.momentum)
        ema_update(self.key_projection, self.projection, self.momentum)

    def heads(self) -> dict[str, nn.Module]:
        return {"projection_head": self.projection}


def build(cfg, n_train: int) -> MoCo:
    queue = min(cfg.queue_size, n_train)  # never more negatives than there are images
    return MoCo(cfg.stem, cfg.proj_dims, cfg.temperature, cfg.momentum, queue)
