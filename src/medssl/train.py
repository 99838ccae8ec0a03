"""Supervised fine-tuning of the ResNet-18 classifier: one plain training loop.

Order per epoch (nanoGPT's): learning rate from a pure function of the epoch -> shuffled index
batches -> augment on the device -> forward / loss / backward / step -> evaluate on validation
-> keep the best model by validation AUROC -> checkpoint -> log. Test data is touched once, at
the end, with the model chosen on validation.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from medssl import data as D
from medssl.artifacts import atomic_path, read_json, write_csv, write_json, write_jsonl
from medssl.augment import AugmentConfig, augment, to_float
from medssl.errors import MedsslError
from medssl.losses import bce, class_weights, weighted_bce
from medssl.metrics import binary_metrics
from medssl.models import Classifier, load_encoder_weights, metadata, read_model, save_model
from medssl.options import TrainConfig
from medssl.rundir import claim, drop_resume_state, load_resume, open_run
from medssl.tracking import Tracker, check_tracking

__all__ = ["TrainConfig", "train"]


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; otherwise the named device, checked.

    On CUDA, cuDNN autotuning is switched on: the input shape is fixed for a run, so the first
    steps pick the fastest convolution kernels (CPU runs, the determinism contract, are unaffected).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise MedsslError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise MedsslError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MedsslError("--device cuda requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MedsslError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        torch.backends.cudnn.benchmark = True
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 autocast on CUDA with bf16 or a CPU with native bf16 (AVX512-BF16/AMX;
    measured 2.3x on the 3x3 stems on a 2-core EPYC), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The one autocast context for the run (bf16) or a no-op (fp32)."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak LR at `epoch` (0-based): linear warm-up, then the schedule.

    exp is finetuning-theory.md §8, eta_t = eta_0 gamma^t with t counted after warm-up;
    cosine goes from 1 to 0 over the post-warm-up epochs.
    """
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    t = epoch - cfg.warmup_epochs
    if cfg.lr_schedule == "exp":
        return cfg.gamma**t
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t / max(1, cfg.epochs - cfg.warmup_epochs)))
    return 1.0


def make_optimizer(model: Classifier, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam(W) over trainable parameters; decay on weights with ndim >= 2 only (§4).

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


@torch.no_grad()
def predict_logits(
    model: Classifier,
    images: torch.Tensor,
    batch_size: int = 512,
    resize: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Logits (N,) float32 for uint8 images (N, C, H, W), in eval mode, in batches."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(images), dtype=torch.float32, device=images.device)
    with autocast(images.device, precision):
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size], resize)
            out[start : start + batch_size] = model(x).float()
    model.train(was_training)
    return out


@torch.no_grad()
def extract_features(
    encoder: torch.nn.Module,
    images: torch.Tensor,
    batch_size: int = 512,
    resize: int | None = None,
    precision: str = "fp32",
) -> torch.Tensor:
    """Frozen encoder features h (N, 512) float32 of uint8 images, in eval mode."""
    was_training = encoder.training
    encoder.eval()
    feats = []
    with autocast(images.device, precision):
        for start in range(0, len(images), batch_size):
            feats.append(encoder(to_float(images[start : start + batch_size], resize)).float())
    encoder.train(was_training)
    return torch.cat(feats)


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


def _checkpoint_state(model, opt, epoch, best, gen, history_len) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "best_auroc": best[0],
        "best_epoch": best[1],
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history_len": history_len,
    }


RESUME_KEYS = (
    "model",
    "optimizer",
    "epoch",
    "best_auroc",
    "best_epoch",
    "generator",
    "torch_rng",
    "history_len",
)


def train(cfg: TrainConfig, resume: bool = False, log=print) -> dict:
    """Run one supervised training and write the run directory. Returns metrics.json's dict.

    Run directory: run.json, config.yaml, history.jsonl, train_indices.csv, best.safetensors
    (+ .json), last.pt (resume state, removed once metrics.json is written), metrics.json,
    predictions.csv, learning_curves.png, reliability.png, roc.png.
    Everything that can fail on bad input (the folder, the device, data, model files, label
    fraction, resume state) is checked before the first byte is written.
    """
    from medssl import plots

    claimed = claim(cfg, resume)
    if claimed.action == "finished":
        log(f"{claimed.path} already holds this finished train run; nothing to do")
        return read_json(claimed.path / "metrics.json", "metrics", require=("val", "test"))
    out = claimed.path
    device = resolve_device(cfg.device)
    check_tracking(cfg.mlflow)
    info = D.dataset_info(cfg.dataset)
    positive = D.resolve_positive(info, cfg.positive_class)
    pos_name = info.label_names[positive]
    splits = D.load_splits(
        cfg.dataset, cfg.data_root, positive, cfg.size, device, cfg.download, cfg.verify_md5
    )
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, device, log)
    train_idx = D.stratified_subset(splits["train"].targets, cfg.label_fraction, cfg.seed)
    train_split = splits["train"].subset(train_idx)
    opt = make_optimizer(model, cfg)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)

    def restore(state: dict) -> None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())

    state = load_resume(out, RESUME_KEYS, restore, log) if claimed.action == "resume" else None

    with open_run(claimed, cfg):
        write_csv(
            out / "train_indices.csv",
            [{"index": int(i)} for i in train_split.indices.cpu().tolist()],
        )
        start = state["epoch"] + 1 if state else 0
        with contextlib.closing(
            Tracker(out, cfg.to_dict(), cfg.tensorboard, cfg.mlflow, start, f"medssl-{cfg.dataset}")
        ) as tracker:
            result = _fit(cfg, model, opt, gen, splits, train_split, out, state, log, tracker)
            best, _ = read_model(out / "best.safetensors", "classifier")
            model.load_state_dict(best)
            return _finish(cfg, model, splits, positive, pos_name, out, result, plots, tracker)


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches of `perm`; a last batch of ONE sample joins the one before it, since
    BatchNorm cannot normalise a single sample at 1x1 spatial size (imagenet stem, 28 px)."""
    chunks = list(perm.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


def _fit(cfg, model, opt, gen, splits, train_split, out, state, log, tracker):
    """The epoch loop from `state` (a restored checkpoint) or from epoch 0."""
    device = train_split.images.device
    aug_cfg = cfg.augment_config()
    info = D.dataset_info(cfg.dataset)
    positive = D.resolve_positive(info, cfg.positive_class)
    pos_name = info.label_names[positive]
    n = len(train_split)
    n0, n1 = D.class_counts(train_split.targets)
    if cfg.loss == "weighted-bce":
        w0, w1 = class_weights(train_split.targets)
        loss_fn = lambda z, y: weighted_bce(z, y, w0, w1)  # noqa: E731
        log(f"weighted BCE: N0={n0} N1={n1} -> w0={w0:.4f} w1={w1:.4f} (w_c = N / (2 N_c))")
    else:
        loss_fn = bce
    # Head-only without augmentation is logistic regression on fixed features (§7): compute the
    # features once and train the head on the cached tensor.
    cached = cfg.mode == "head" and aug_cfg == AugmentConfig()
    if cached:
        feats = {
            s: extract_features(
                model.encoder, sp.images, cfg.eval_batch_size, cfg.resize, cfg.precision
            )
            for s, sp in splits.items()
            if s != "train"
        }
        feats["train"] = extract_features(
            model.encoder, train_split.images, cfg.eval_batch_size, cfg.resize, cfg.precision
        )
    history: list[dict] = []
    start_epoch, best = 0, (-math.inf, -1)
    if state:
        start_epoch, best = state["epoch"] + 1, (state["best_auroc"], state["best_epoch"])
        history = state["history"]
        log(f"resumed {out} at epoch {start_epoch} (best val AUROC {best[0]:.4f})")
    steps_per_epoch = len(_batches(torch.arange(n), cfg.batch_size))
    log(
        f"{cfg.dataset}: train {n} (N0={n0}, N1={n1}), val {len(splits['val'])}, test "
        f"{len(splits['test'])}; positive class = label {positive} ({pos_name}); device {device}"
    )
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc=f"train {cfg.dataset}",
        unit="epoch",
        disable=not cfg.progress,
        initial=start_epoch,
        total=cfg.epochs,
        dynamic_ncols=True,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        factor = lr_factor(epoch, cfg)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * factor
        model.train()
        perm = torch.randperm(n, generator=gen, device=device)
        loss_sum = torch.zeros((), device=device)
        bad_step = torch.full((), -1, device=device)
        for step, idx in enumerate(_batches(perm, cfg.batch_size)):
            y = train_split.targets[idx]
            if cached:  # logistic regression step on cached features, in float32
                logits = model.forward_head(feats["train"][idx])
            else:
                x = augment(to_float(train_split.images[idx], cfg.resize), aug_cfg, gen)
                if epoch == 0 and step == 0:
                    tracker.images("augmentation/train_batch", x[:32, 0].cpu().numpy())
                with autocast(device, cfg.precision):
                    logits = model(x)  # float32 logits: the head runs outside autocast
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            # Non-finite losses are flagged on the device (no per-step host sync) and checked
            # once per epoch, before anything of the epoch is saved.
            bad_step = torch.where((bad_step < 0) & ~torch.isfinite(loss.detach()), step, bad_step)
        if int(bad_step) >= 0:
            kept = (
                f"the checkpoint of epoch {epoch - 1} is kept in {out}"
                if (out / "last.pt").is_file()
                else "no checkpoint was saved"
            )
            raise MedsslError(
                f"non-finite loss at epoch {epoch}, step {int(bad_step)}; {kept}; lower --lr "
                f"and start a new run"
            )
        if cached:
            val_logits = model.forward_head(feats["val"]).detach()
        else:
            val_logits = predict_logits(
                model, splits["val"].images, cfg.eval_batch_size, cfg.resize, cfg.precision
            )
        val_t = splits["val"].targets
        val_loss = float(loss_fn(val_logits, val_t))
        val_auroc = binary_metrics(
            val_t.cpu().numpy(), _sigmoid64(val_logits), scores=val_logits.double().cpu().numpy()
        )["auroc"]
        row = {
            "epoch": epoch,
            "lr": opt.param_groups[-1]["lr"],
            "train_loss": float(loss_sum) / n,  # .item(): one host sync per epoch
            "val_loss": val_loss,
            "val_auroc": val_auroc,
            "steps": steps_per_epoch,
            "epoch_time_s": time.perf_counter() - t0,
        }
        history.append(row)
        tracker.scalars(
            epoch,
            {
                "loss/train": row["train_loss"],
                "loss/val": val_loss,
                "val/auroc": val_auroc,
                "lr": row["lr"],
                "time/epoch_s": row["epoch_time_s"],
            },
        )
        if val_auroc > best[0]:
            best = (val_auroc, epoch)
            save_model(
                model,
                out / "best.safetensors",
                metadata(
                    "classifier",
                    model.encoder,
                    dataset=cfg.dataset,
                    positive_label=positive,
                    epoch=epoch,
                    val_auroc=val_auroc,
                ),
            )
        write_jsonl(out / "history.jsonl", history)
        with atomic_path(out / "last.pt") as tmp:
            torch.save(_checkpoint_state(model, opt, epoch, best, gen, len(history)), tmp)
        bar.set_postfix(
            loss=f"{row['train_loss']:.4f}",
            val_auroc=f"{val_auroc:.4f}",
            best=f"{best[0]:.4f}@{best[1]}",
        )
    bar.close()
    return {
        "history": history,
        "best_epoch": best[1],
        "best_val_auroc": best[0],
        "n_train": n,
        "n_train_positive": n1,
        "device": str(device),
        "precision": resolve_precision(cfg.precision, device),
    }


def _sigmoid64(logits: torch.Tensor) -> np.ndarray:
    return torch.sigmoid(logits.detach().double()).cpu().numpy()


def _finish(cfg, model, splits, positive, pos_name, out, result, plots, tracker) -> dict:
    """Predict val/test with the best model; write metrics, predictions and figures."""
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
    write_json(out / "metrics.json", metrics)  # written last: its presence marks a finished run
    drop_resume_state(out)
    tracker.artifact(out / "metrics.json")
    return metrics
