"""Supervised fine-tuning of the ResNet-18 classifier on the shared epoch loop (`engine`).

The supervised step: shuffled index batches -> augment on the device -> forward -> BCE (or
weighted BCE). After each epoch: validation AUROC, and the best model by it is kept. Test data
is touched once, at the end, with the model chosen on validation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medssl import data as D
from medssl import engine, plots
from medssl.augment import augment
from medssl.catalog import AugmentConfig
from medssl.commands.lifecycle import preprocessing, start, tracked
from medssl.errors import MedsslError
from medssl.io.artifacts import write_csv, write_json
from medssl.io.records import read_metrics
from medssl.io.rundir import MARKERS, drop_resume_state
from medssl.losses import bce, class_weights, weighted_bce
from medssl.metrics import binary_metrics
from medssl.models import Classifier, load_encoder_weights, metadata, read_model, save_model
from medssl.options import TrainConfig
from medssl.runtime import (
    autocast,
    extract_features,
    predict_logits,
    resolve_device,
    resolve_precision,
    to_float,
)
from medssl.tracking import Tracker, check_tracking

__all__ = ["TrainConfig", "resolve", "train"]


def resolve(cfg: TrainConfig) -> int:
    """The checks of `cfg` that need files, before anything is written: the stem an `--init`
    encoder file brings (when `--stem` is unset) and the positive class (a user's source is
    listed for its classes). Returns the positive label."""
    if cfg._stem_from_init and Path(cfg.init).is_file():
        cfg.stem = read_model(cfg.init)[1].get("stem", cfg.stem)
        cfg._stem_from_init = False
    return D.resolve_positive(D.dataset_info(cfg.dataset), cfg.positive_class)


def make_optimizer(model: Classifier, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam(W) over trainable parameters; decay on weights with ndim >= 2 only (docs/math.md §4).

    decoupled: AdamW, w <- (1 - eta lambda) w - eta g_hat.  l2: Adam with gradient
    g + lambda w, i.e. the gradient of L + (lambda/2)||w||^2 fed through Adam's moments.
    Each group stores its own `base_lr` so the schedule scales head and encoder alike.
    """
    groups = []
    for part, scale in ((model.encoder, cfg.encoder_lr_scale), (model.head, 1.0)):
        params = [p for p in part.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        for ps, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if ps:
                groups.append(
                    {
                        "params": ps,
                        "weight_decay": wd,
                        "base_lr": cfg.lr * scale,
                        "lr": cfg.lr * scale,
                    }
                )
    opt_cls = torch.optim.AdamW if cfg.decay == "decoupled" else torch.optim.Adam
    return opt_cls(groups, lr=cfg.lr)


def build_model(cfg: TrainConfig, device: torch.device, log=print) -> Classifier:
    """Classifier with the configured stem and initialisation, on `device`."""
    model = Classifier(cfg.stem, in_channels=1)
    if cfg.init != "scratch":
        for change in load_encoder_weights(model.encoder, cfg.init):
            log(f"init {cfg.init}: {change}")
    if cfg.mode == "head":
        model.freeze_encoder()
    # channels_last: ~15-20% faster convolutions with bf16 on CPU (measured), standard on CUDA.
    return model.to(device, memory_format=torch.channels_last)


RESUME_KEYS = ("model", "best_auroc", "best_epoch")  # beside the engine's CHECKPOINT_KEYS


def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Run one supervised training and write the run directory. Returns metrics.json's dict.

    Run directory: run.json, config.yaml, history.jsonl, train_indices.csv, best.safetensors
    (+ .json), last.pt (resume state, removed once metrics.json is written), metrics.json,
    predictions.csv, learning_curves.png, reliability.png, roc.png.
    Everything that can fail on bad input (the folder, the device, data, model files, label
    fraction, resume state) is checked before the first byte is written.
    """
    positive = resolve(cfg)
    claimed, done = start(cfg, resume, log, lambda path: read_metrics(path / MARKERS["train"]))
    if done is not None:
        return done
    out = claimed.path
    device = resolve_device(cfg.device)
    check_tracking(cfg.mlflow, Path(cfg.out))
    splits = D.load_splits(
        cfg.dataset,
        cfg.data_root,
        positive,
        cfg.size,
        device,
        cfg.download,
        cfg.verify_md5,
        preprocessing(cfg),
    )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, device, log)
    train_idx = D.stratified_subset(splits["train"].targets, cfg.label_fraction, cfg.seed)
    train_split = splits["train"].subset(train_idx)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    state = None
    if claimed.action == "resume":

        def load(s: dict) -> None:
            best_auroc, best_epoch = s["best_auroc"], s["best_epoch"]
            if not isinstance(best_auroc, float) or type(best_epoch) is not int:
                raise MedsslError(f"{out}/last.pt: best_auroc / best_epoch are not numbers")
            if best_epoch >= 0:  # the best model so far must be there and be this run's
                read_model(
                    out / "best.safetensors", "classifier", dataset=cfg.dataset, stem=cfg.stem
                )
            model.load_state_dict(s["model"])

        rows = ("train_loss", "val_loss", "val_auroc", "epoch_time_s")
        state = engine.restore(out, opt, gen, load, RESUME_KEYS, log, rows)

    with tracked(claimed, cfg, state["epoch"] + 1 if state else 0) as tracker:
        write_csv(
            out / "train_indices.csv",
            [{"index": int(i)} for i in train_split.indices.cpu().tolist()],
        )
        run = Supervised(
            cfg,
            model,
            gen,
            splits,
            train_split,
            positive,
            out,
            tracker,
            _loss_fn(cfg, train_split.targets, log),
            _cached_features(cfg, model, splits, train_split),
            [state["best_auroc"], state["best_epoch"]] if state else [-math.inf, -1],
        )
        result = _fit(run, opt, state, log)
        best, _ = read_model(out / "best.safetensors", "classifier")
        model.load_state_dict(best)
        return _finish(cfg, model, splits, positive, out, result, tracker)


def batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches of `perm`; a last batch of ONE sample joins the one before it, since
    BatchNorm cannot normalise a single sample at 1x1 spatial size (imagenet stem, 28 px)."""
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def _loss_fn(cfg: TrainConfig, targets: torch.Tensor, log):
    if cfg.loss != "weighted-bce":
        return bce
    n0, n1 = D.class_counts(targets)
    w0, w1 = class_weights(targets)
    log(f"weighted BCE: N0={n0} N1={n1} -> w0={w0:.4f} w1={w1:.4f} (w_c = N / (2 N_c))")
    return lambda z, y: weighted_bce(z, y, w0, w1)


@dataclass
class Supervised:
    """One supervised run on the shared epoch loop: its data, model and best-so-far, and the
    functions the engine calls (batches, step, end of epoch, checkpoint state)."""

    cfg: TrainConfig
    model: Classifier
    gen: torch.Generator  # the run's device generator: shuffling and augmentation
    splits: dict[str, D.Split]
    train: D.Split  # the label fraction's subset of the training split
    positive: int
    out: Path
    tracker: Tracker
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    feats: dict[str, torch.Tensor]  # cached features (head-only, no augmentation) or empty
    best: list  # [val AUROC, epoch] of the best model so far

    def __post_init__(self) -> None:
        self.aug = self.cfg.augment_config()
        self.steps = len(batches(torch.arange(len(self.train)), self.cfg.batch_size))

    def batches(self, epoch: int) -> list[torch.Tensor]:
        self.model.train()
        perm = torch.randperm(len(self.train), generator=self.gen, device=self.gen.device)
        return batches(perm, self.cfg.batch_size)

    def step(self, epoch: int, i: int, idx: torch.Tensor) -> torch.Tensor:
        y = self.train.targets[idx]
        if self.feats:  # logistic regression step on cached features, in float32
            return self.loss_fn(self.model.forward_head(self.feats["train"][idx]), y)
        x = augment(to_float(self.train.images[idx], self.cfg.resize), self.aug, self.gen)
        if epoch == 0 and i == 0:
            self.tracker.images("augmentation/train_batch", x[:32, 0].cpu().numpy())
        with autocast(x.device, self.cfg.precision):
            logits = self.model(x)  # float32 logits: the head runs outside autocast
        return self.loss_fn(logits, y)

    def validate(self, epoch: int) -> dict:
        """Validation loss and AUROC; the best model by it is saved (best.safetensors)."""
        cfg, val = self.cfg, self.splits["val"]
        if self.feats:
            logits = self.model.forward_head(self.feats["val"]).detach()
        else:
            logits = predict_logits(
                self.model, val.images, cfg.eval_batch_size, cfg.resize, cfg.precision
            )
        scores = logits.double().cpu().numpy()
        auroc = binary_metrics(val.targets.cpu().numpy(), _sigmoid64(logits), scores=scores)
        auroc = auroc["auroc"]
        if auroc > self.best[0]:
            self.best[:] = [auroc, epoch]
            meta = metadata(
                "classifier",
                self.model.encoder,
                dataset=cfg.dataset,
                positive_label=self.positive,
                epoch=epoch,
                val_auroc=auroc,
            )
            save_model(self.model, self.out / "best.safetensors", meta)
        loss = float(self.loss_fn(logits, val.targets))
        return {"val_loss": loss, "val_auroc": auroc, "steps": self.steps}

    def state(self) -> dict:
        auroc, epoch = self.best
        return {"model": self.model.state_dict(), "best_auroc": auroc, "best_epoch": epoch}

    def loop(self, optimizer: torch.optim.Optimizer) -> engine.Loop:
        best = self.best
        return engine.Loop(
            out=self.out,
            cfg=self.cfg,
            optimizer=optimizer,
            generator=self.gen,
            batches=self.batches,
            step=self.step,
            end_epoch=self.validate,
            state=self.state,
            scalars=_scalars,
            postfix=lambda r: {
                "loss": f"{r['train_loss']:.4f}",
                "val_auroc": f"{r['val_auroc']:.4f}",
                "best": f"{best[0]:.4f}@{best[1]}",
            },
            loss_key="train_loss",
            per_sample=True,
            desc=f"train {self.cfg.dataset}",
        )


def _scalars(r: dict) -> dict:
    """TensorBoard scalars of one history row."""
    return {
        "loss/train": r["train_loss"],
        "loss/val": r["val_loss"],
        "val/auroc": r["val_auroc"],
        "lr": r["lr"],
        "time/epoch_s": r["epoch_time_s"],
    }


def _cached_features(cfg: TrainConfig, model: Classifier, splits: dict, train: D.Split) -> dict:
    """Head-only without augmentation is logistic regression on fixed features (docs/math.md
    §7): the features of every split, computed once (empty otherwise)."""
    if not (cfg.mode == "head" and cfg.augment_config() == AugmentConfig()):
        return {}
    parts = [(s, sp) for s, sp in splits.items() if s != "train"] + [("train", train)]
    args = (cfg.eval_batch_size, cfg.resize, cfg.precision)
    return {s: extract_features(model.encoder, sp.images, *args) for s, sp in parts}


def _fit(run: Supervised, opt: torch.optim.Optimizer, state: dict | None, log) -> dict:
    """Train on the shared epoch loop from `state` (a resumed run) or epoch 0."""
    cfg, splits = run.cfg, run.splits
    device = run.train.images.device
    n, (n0, n1) = len(run.train), D.class_counts(run.train.targets)
    if state:
        log(f"resumed {run.out} at epoch {state['epoch'] + 1} (best val AUROC {run.best[0]:.4f})")
    name = D.dataset_info(cfg.dataset).label_names[run.positive]
    log(
        f"{cfg.dataset}: train {n} (N0={n0}, N1={n1}), val {len(splits['val'])}, test "
        f"{len(splits['test'])}; positive class = label {run.positive} ({name}); device {device}"
    )
    history = state["history"] if state else []
    history = engine.run(run.loop(opt), state["epoch"] + 1 if state else 0, history, run.tracker)
    return {
        "history": history,
        "best_epoch": run.best[1],
        "best_val_auroc": run.best[0],
        "n_train": n,
        "n_train_positive": n1,
        "device": str(device),
        "precision": resolve_precision(cfg.precision, device),
    }


def _sigmoid64(logits: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(logits.detach().double()).cpu().numpy()


def _finish(cfg, model, splits, positive, out, result, tracker) -> dict:
    """Predict val/test with the best model; write metrics, predictions and figures."""
    pos_name = D.dataset_info(cfg.dataset).label_names[positive]
    rows, targets, probs, scores = [], {}, {}, {}
    metrics = {
        "dataset": cfg.dataset,
        "positive_class": {"label": positive, "name": pos_name},
        "mode": cfg.mode,
        "init": cfg.init,
        "loss": cfg.loss,
        "stem": cfg.stem,
        "seed": cfg.seed,
        "label_fraction": cfg.label_fraction,
        "n_train": result["n_train"],
        "n_train_positive": result["n_train_positive"],
        "best_epoch": result["best_epoch"],
        "epochs": cfg.epochs,
        "device": result["device"],
        "precision": result["precision"],
        "train_time_s": sum(r["epoch_time_s"] for r in result["history"]),
    }
    for s in ("val", "test"):
        sp = splits[s]
        logits = predict_logits(model, sp.images, cfg.eval_batch_size, cfg.resize, cfg.precision)
        z = logits.double().cpu().numpy()
        p = _sigmoid64(logits)
        t = sp.targets.cpu().numpy().astype(np.int64)
        targets[s], probs[s], scores[s] = t, p, z
        metrics[s] = binary_metrics(t, p, scores=z, n_bins=cfg.n_bins)
        labels, idx = sp.labels.cpu().tolist(), sp.indices.cpu().tolist()
        rows += [
            {
                "split": s,
                "index": i,
                "label": lab,
                "target": int(tt),
                "logit": float(zz),
                "probability": float(pp),
            }
            for i, lab, tt, zz, pp in zip(idx, labels, t, z, p, strict=True)
        ]
    write_csv(out / "predictions.csv", rows)
    plots.plot_learning_curves(result["history"], out / "learning_curves.png")
    plots.plot_reliability_diagram(
        targets, probs, out / "reliability.png", n_bins=cfg.n_bins, positive_name=pos_name
    )
    plots.plot_roc_curves(targets, scores, out / "roc.png", positive_name=pos_name)
    for s in ("val", "test"):
        tracker.scalars(result["best_epoch"], metrics[s], prefix=f"best_model/{s}_")
    for name in ("learning_curves", "reliability", "roc"):
        tracker.figure(f"figures/{name}", out / f"{name}.png")
    write_json(out / MARKERS["train"], metrics)  # written last: its presence marks a finished run
    drop_resume_state(out)
    tracker.artifact(out / MARKERS["train"])
    return metrics
