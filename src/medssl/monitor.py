"""The kNN monitor of pretraining: how well frozen features separate the classes, each epoch.

Labels are read here only, never by a pretraining loss: a weighted cosine kNN (Wu et al. 2018)
scores the validation split from the training split's features, with every training label in
the memory bank and with a few (a stratified handful, like a low-label probe).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from medssl import data as D
from medssl.metrics import auroc
from medssl.models import Encoder
from medssl.runtime import extract_features


@torch.no_grad()
def knn_scores(
    train_feats: torch.Tensor,
    train_targets: torch.Tensor,
    query_feats: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Weighted kNN (cosine) positive-class score of each query: sum w y / sum w over the k
    nearest training features, w = exp(cos / temperature) (Wu et al. 2018's monitor)."""
    train = F.normalize(train_feats.float(), dim=1)
    query = F.normalize(query_feats.float(), dim=1)
    k = min(k, len(train))
    sims, idx = (query @ train.T).topk(k, dim=1)  # (Q, k)
    w = ((sims - 1) / temperature).exp()  # shifted by the max possible cos for stability
    return (w * train_targets.float()[idx]).sum(1) / w.sum(1)


KNN_FEW_SUBSETS = 3  # the few-label monitor averages over this many fixed label subsets


def knn_few_label_banks(targets: torch.Tensor, n_labels: int) -> list[torch.Tensor]:
    """The few-label kNN monitor's memory banks: KNN_FEW_SUBSETS stratified subsets of about
    `n_labels` training examples (seeds 0, 1, ...; the same at every epoch, so the curve moves
    only with the encoder). Empty when `n_labels` is 0 or not below the split's size."""
    if n_labels <= 0 or n_labels >= len(targets):
        return []
    frac = max(n_labels, 2) / len(targets)
    return [D.stratified_subset(targets, frac, seed) for seed in range(KNN_FEW_SUBSETS)]


def knn_monitor(encoder: Encoder, splits: dict, cfg, precision: str) -> dict:
    """kNN (cosine, k = cfg.knn_k) AUROC and accuracy on val from frozen train features.

    Two memory banks: every training label (`knn_val_auroc`, `knn_val_accuracy`) and, when
    cfg.knn_labels > 0, a few labels (`knn_few_val_auroc`: mean over KNN_FEW_SUBSETS stratified
    subsets of cfg.knn_labels examples). With every label in the bank a random encoder's kNN is
    near the ceiling on easy sets (PneumoniaMNIST); the few-label bank, like a low-label probe,
    shows what the representation adds.
    """
    tr = extract_features(
        encoder, splits["train"].images, cfg.eval_batch_size, cfg.resize, precision
    )
    va = extract_features(encoder, splits["val"].images, cfg.eval_batch_size, cfg.resize, precision)
    targets = splits["train"].targets
    scores = knn_scores(tr, targets, va, cfg.knn_k).double().cpu().numpy()
    y = splits["val"].targets.cpu().numpy()
    out = {
        "knn_val_auroc": auroc(y, scores),
        "knn_val_accuracy": float(np.mean((scores >= 0.5) == (y == 1))),
    }
    banks = knn_few_label_banks(targets.cpu(), cfg.knn_labels)
    if banks:
        few = [
            auroc(y, knn_scores(tr[b], targets[b], va, cfg.knn_k).double().cpu().numpy())
            for b in (bank.to(tr.device) for bank in banks)
        ]
        out["knn_few_val_auroc"] = float(np.mean(few))
        out["knn_few_labels"] = len(banks[0])
    return out
