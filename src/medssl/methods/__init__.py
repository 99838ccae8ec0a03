"""Self-supervised methods: each is its networks and its loss in one module of about a hundred
lines, over the shared pretraining loop (`medssl.commands.pretrain` on `medssl.engine`).

A method is an `nn.Module` with
- `encoder`: the ResNet-18 `Encoder` that pretraining is for;
- `forward(x1, x2, progress)`: the loss of a batch of two views (B, C, H, W) each, at
  `progress` (the fraction of training done before this step: temperature schedules); networks
  run under the caller's autocast, the loss in float32 outside it;
- `after_step(progress)`: called after every optimizer step with the fraction of training done
  (EMA teachers and their momentum schedules; a no-op for SimCLR);
- `heads()`: the trained heads saved beside the encoder, {file stem: module}.
Each module has `build(cfg, n_train)`; its row in `medssl.catalog.METHODS` holds its title, its
loss and its recipe (the options it fills when unset). Adding a method is that module and that
row; `medssl.methods.common` has the EMA and all-gather helpers.
Teachers (EMA copies) have `requires_grad=False`, so the optimizer never sees them; they are in
the state dict, so a resumed run continues them exactly.
"""

from __future__ import annotations

from importlib import import_module

from torch import nn

from medssl.catalog import METHODS
from medssl.errors import MedsslError


def build(cfg, n_train: int) -> nn.Module:
    """The method `cfg.method` with its recipe (see each module and docs/methods.md), for a
    training split of `n_train` images (MoCo's queue is never larger than the data)."""
    if cfg.method not in METHODS:
        raise MedsslError(f"unknown method {cfg.method!r}; choose from {', '.join(METHODS)}")
    # the module named by the catalog row: a new method is one file and one row, no list here
    return import_module(f"medssl.methods.{cfg.method}").build(cfg, n_train)
