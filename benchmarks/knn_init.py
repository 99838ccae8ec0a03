"""Write knn_init.json (the kNN monitor of the randomly initialised encoder) into a finished
SimCLR run made before `medssl pretrain` recorded it; the same seeded init and monitor as
`medssl pretrain` uses, so the value equals what a new run records.

    python benchmarks/knn_init.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from medssl import data as D
from medssl.io.artifacts import read_yaml, write_json
from medssl.methods.simclr import SimCLR
from medssl.monitor import knn_monitor
from medssl.options import PretrainConfig
from medssl.runtime import resolve_device, resolve_precision


def main() -> None:
    for run in map(Path, sys.argv[1:]):
        saved = read_yaml(run / "config.yaml")
        cfg = PretrainConfig.from_dict(saved | {"out": str(run), "progress": False})
        device = resolve_device(cfg.device)
        splits = D.load_splits(cfg.dataset, cfg.data_root, size=cfg.size, device=device)
        torch.manual_seed(cfg.seed)
        model = SimCLR(cfg.stem, cfg.projection_dims()).to(
            device, memory_format=torch.channels_last
        )
        init = knn_monitor(model.encoder, splits, cfg, resolve_precision(cfg.precision, device))
        write_json(run / "knn_init.json", init)
        print(f"{run}: kNN val AUROC at init {init['knn_val_auroc']:.4f}")


if __name__ == "__main__":
    main()
