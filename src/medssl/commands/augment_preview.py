"""`medssl augment-preview`: see what an augmentation preset does to real images."""

from __future__ import annotations

import torch

from medssl import catalog, plots
from medssl import data as D
from medssl.augment import augment
from medssl.io.rundir import check_output_file
from medssl.options import AugmentPreviewConfig
from medssl.runtime import to_float


def run(cfg: AugmentPreviewConfig) -> str:
    """`medssl augment-preview`: a PNG grid of `cfg.views` views of `cfg.images` training
    images under preset `cfg.augment`; returns the path written."""
    out = check_output_file(cfg.out, plots.written_by("augment-preview"), "PNG image")
    train = D.load_splits(cfg.dataset, cfg.data_root, positive=1)["train"]  # labels unused
    gen = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(train), generator=gen)[: cfg.images]
    x = to_float(train.images[idx])
    views = augment(x.repeat_interleave(cfg.views, 0), catalog.preset(cfg.augment), gen)
    views = views.view(len(idx), cfg.views, *x.shape[-2:]).numpy()
    title = f"{cfg.dataset}: preset {cfg.augment}"
    grid = plots.plot_augmentation_grid(x[:, 0].numpy(), views, out, title=title)
    return str(grid)
