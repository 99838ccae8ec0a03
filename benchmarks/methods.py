"""Pretraining views/s of every SSL method: medssl's own step against lightly's stack, one run.

medssl: the package's pretraining step (`pretrain.Pretraining(...).step`: two views drawn in one
batch on the device, then the method's forward and loss) and the engine's optimizer calls.
lightly: the method's usual lightly transform on PIL images + a torch DataLoader (0 and 2
workers, and 8 where the cores exist) + lightly's loss of the method, on the same networks
(ResNet-18 encoder, the method's heads, teachers updated with lightly's `update_momentum`) with
torchvision's convolutions, as a lightly user runs them. Two more rows show what medssl's
`CroppedConv2d` does: medssl's step without it, and lightly's (0 workers) with it (not counted
as "lightly").
Same batch (256 images = 512 views), lightly in fp32 (its default), medssl in fp32 and in its
auto precision. Median step time over `--steps` steps after 2 warm-up steps.

    python benchmarks/methods.py [--data-root DIR] [--methods simclr,byol] [--steps 8]

Writes benchmarks/results/methods-<device>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

os.environ.setdefault("LIGHTLY_DID_VERSION_CHECK", "True")
sys.path.insert(0, str(Path(__file__).parent))

from suite import WORKERS, PilDataset, _md_table, _sync, machine  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from medssl import data as D  # noqa: E402
from medssl.catalog import METHOD_NAMES, METHOD_TITLES  # noqa: E402
from medssl.commands import pretrain as P  # noqa: E402
from medssl.methods import build  # noqa: E402
from medssl.models import CroppedConv2d  # noqa: E402
from medssl.options import PretrainConfig  # noqa: E402
from medssl.runtime import resolve_precision  # noqa: E402
from medssl.tracking import Tracker  # noqa: E402

GREY = dict(cj_prob=0.8, cj_bright=0.2, cj_contrast=0.3, cj_sat=0.0, cj_hue=0.0)


def lightly_transform(method: str):
    """The method's usual lightly transform, at 28 px for grey images (no colour terms)."""
    import lightly.transforms as T

    common = dict(input_size=28, min_scale=0.35, random_gray_scale=0.0, normalize=None, **GREY)
    if method in ("simclr", "moco"):
        cls = T.SimCLRTransform if method == "simclr" else T.MoCoV2Transform
        return cls(gaussian_blur=0.2, sigmas=(0.1, 0.7), rr_prob=1.0, rr_degrees=10, **common)
    if method == "simsiam":
        return T.SimSiamTransform(gaussian_blur=0.2, sigmas=(0.1, 0.7), **common)
    if method in ("byol", "barlow"):  # lightly's Barlow Twins examples use the BYOL transform
        return T.BYOLTransform(T.BYOLView1Transform(**common), T.BYOLView2Transform(**common))
    if method == "vicreg":
        return T.VICRegTransform(**common)
    return T.DINOTransform(  # two global views, no local crops (as medssl's DINO)
        global_crop_size=28,
        global_crop_scale=(0.35, 1.0),
        n_local_views=0,
        cj_prob=0.8,
        cj_strength=0.3,
        cj_sat=0.0,
        cj_hue=0.0,
        random_gray_scale=0.0,
        normalize=None,
    )


def lightly_loss(method: str, model):
    """A function (v1, v2) -> loss with lightly's loss of the method on medssl's networks."""
    import lightly.loss as L
    from lightly.models.utils import update_momentum

    def emb(x):
        return model.projection(model.encoder(x))

    if method == "simclr":
        crit = L.NTXentLoss(temperature=0.2)
        return lambda v1, v2: crit(emb(v1), emb(v2))
    if method == "moco":
        crit = L.NTXentLoss(temperature=0.2, memory_bank_size=(4096, 128))

        def moco(v1, v2):
            update_momentum(model.encoder, model.key_encoder, 0.99)
            update_momentum(model.projection, model.key_projection, 0.99)
            with torch.no_grad():  # symmetrised, as medssl's MoCo: both views are queries
                k1, k2 = (model.key_projection(model.key_encoder(v)) for v in (v1, v2))
            return 0.5 * (crit(emb(v1), k2) + crit(emb(v2), k1))

        return moco
    if method in ("byol", "simsiam"):
        crit = L.NegativeCosineSimilarity()

        def byol(v1, v2):
            z1, z2 = emb(v1), emb(v2)
            p1, p2 = model.predictor(z1), model.predictor(z2)
            if method == "byol":
                update_momentum(model.encoder, model.target_encoder, 0.99)
                update_momentum(model.projection, model.target_projection, 0.99)
                with torch.no_grad():
                    t = model.target_projection(model.target_encoder(torch.cat([v1, v2])))
                z1, z2 = t[: len(v1)], t[len(v1) :]
            return 0.5 * (crit(p1, z2.detach()) + crit(p2, z1.detach()))

        return byol
    if method in ("barlow", "vicreg"):
        crit = L.BarlowTwinsLoss() if method == "barlow" else L.VICRegLoss()
        return lambda v1, v2: crit(emb(v1), emb(v2))
    crit = L.DINOLoss(output_dim=2048, warmup_teacher_temp=0.04, teacher_temp=0.04)

    def dino(v1, v2):
        update_momentum(model.encoder, model.teacher_encoder, 0.996)
        update_momentum(model.head, model.teacher_head, 0.996)
        with torch.no_grad():
            t = [model.teacher_head(model.teacher_encoder(v)) for v in (v1, v2)]
        s = [model.head(model.encoder(v)) for v in (v1, v2)]
        return crit(t, s)

    return dino


def bench_method(method, images, np_images, splits, device, steps, batch):
    cfg = PretrainConfig(method=method, batch_size=batch, knn_every=0, progress=False)
    rows = []

    def fresh(plain_convs: bool = False):
        torch.manual_seed(0)
        model = build(cfg, len(images)).to(device, memory_format=torch.channels_last)
        if plain_convs:  # torchvision's convolutions, as in a lightly user's ResNet-18
            for m in model.modules():
                if type(m) is CroppedConv2d:
                    m.__class__ = torch.nn.Conv2d
        return model, P.make_optimizer(model, cfg)

    def timed(step_fn) -> float:
        times = []
        for i in range(steps + 2):
            _sync(device)
            t = time.perf_counter()
            step_fn(i)
            _sync(device)
            if i >= 2:
                times.append(time.perf_counter() - t)
        return 2 * batch / statistics.median(times)

    auto = resolve_precision("auto", device)
    medssl_rows = [(p, False) for p in sorted({"fp32", auto})] + [(auto, True)]
    for precision, plain in medssl_rows:  # the last: medssl's step without CroppedConv2d
        model, opt = fresh(plain_convs=plain)
        gen = torch.Generator(device=device).manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            tracker = Tracker(Path(tmp), {}, tensorboard=False)
            run_cfg = cfg.model_copy(update={"epochs": 1000})
            run = P.Pretraining(
                run_cfg, model, model, gen, images, splits, Path(tmp), tracker, precision
            )
            loop = run.loop(opt)
            batches = loop.batches(1)

            def medssl_step(i, loop=loop, batches=batches, opt=opt):
                loss = loop.step(1, i, batches[i % len(batches)])  # the package's own step
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loop.after_step(1, i)

            rows.append(
                dict(
                    method=METHOD_TITLES[method],
                    pipeline=f"medssl step, {precision}" + (", torchvision convs" if plain else ""),
                    views_per_s=timed(medssl_step),
                )
            )
    for workers, plain in [(w, True) for w in WORKERS] + [(0, False)]:
        model, opt = fresh(plain_convs=plain)
        loss_fn = lightly_loss(method, model)
        loader = DataLoader(
            PilDataset(np_images, None, lightly_transform(method)),
            batch_size=batch,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=workers > 0,
        )
        box = {"it": iter(loader)}

        def lightly_step(i, box=box, loader=loader, model=model, opt=opt, loss_fn=loss_fn):
            try:
                views = next(box["it"])
            except StopIteration:
                box["it"] = iter(loader)
                views = next(box["it"])
            v1, v2 = (v.to(device, non_blocking=True) for v in views[:2])
            model.train()
            loss = loss_fn(v1, v2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        rows.append(
            dict(
                method=METHOD_TITLES[method],
                pipeline=f"lightly, DataLoader {workers} workers, fp32"
                + ("" if plain else " + medssl's CroppedConv2d"),
                views_per_s=timed(lightly_step),
            )
        )
    best_lightly = max(
        r["views_per_s"]
        for r in rows
        if r["pipeline"].startswith("lightly") and "Cropped" not in r["pipeline"]
    )
    for r in rows:
        r["vs_best_lightly"] = r["views_per_s"] / best_lightly
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--methods", default=",".join(METHOD_NAMES))
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    splits = D.load_splits("pneumoniamnist", args.data_root, device=device)
    np_images = splits["train"].images[:, 0].cpu().numpy()
    rows = []
    for m in args.methods.split(","):
        rows += bench_method(
            m, splits["train"].images, np_images, splits, device, args.steps, args.batch
        )
        print(_md_table(rows[-len(WORKERS) - 4 :]), flush=True)
    out = Path(__file__).parent / "results"
    meta = {
        "date": str(date.today()),
        "machine": machine(device),
        "steps": args.steps,
        "batch": args.batch,
        "torch": torch.__version__,
    }
    (out / f"methods-{device.type}.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    head = (
        f"# SSL methods: pretraining views/s, medssl vs lightly\n\n{meta['date']}, "
        f"{meta['machine']}, torch {meta['torch']}; PneumoniaMNIST train, batch "
        f"{args.batch} (x2 views), median of {args.steps} steps after 2 warm-up. "
        "vs_best_lightly: views/s over the best lightly DataLoader row (torchvision "
        "convolutions, fp32); the `+ medssl's CroppedConv2d` row is lightly's pipeline on "
        "medssl's networks, not counted as lightly.\n\n"
    )
    (out / f"methods-{device.type}.md").write_text(head + _md_table(rows) + "\n")
    print(_md_table(rows))


if __name__ == "__main__":
    main()
