"""Splits on the device and stratified label subsets.

A split is held as one uint8 tensor ``images`` of shape (N, 1, H, W) and a float tensor
``targets`` of shape (N,) with 1 = the positive class chosen for the run. The original labels
are kept in ``labels`` so that predictions can always be traced back to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from medssl.errors import MedsslError


@dataclass
class Split:
    """One split on the device: uint8 images (N, 1, H, W), targets in {0., 1.}, raw labels."""

    name: str
    images: torch.Tensor
    targets: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor  # positions in the official split (differs after subsampling)

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx: torch.Tensor) -> Split:
        idx = idx.to(self.images.device)
        return Split(
            self.name, self.images[idx], self.targets[idx], self.labels[idx], self.indices[idx]
        )


def to_split(
    name: str, images: np.ndarray, labels: np.ndarray, positive: int, device: torch.device
) -> Split:
    """Put a validated split on `device` with targets = (label == positive)."""
    imgs = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).to(device)
    lab = torch.from_numpy(labels).to(device)
    targets = (lab == positive).float()
    return Split(name, imgs, targets, lab, torch.arange(len(lab), device=device))


def stratified_subset(targets: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Seeded stratified subsample: round(fraction * N_c) of each class c, at least one each.

    Returns sorted indices into `targets`. Raises MedsslError when a class is empty or the
    fraction cannot hold one example of each class (round(fraction * N) < 2).
    """
    if not 0.0 < fraction <= 1.0:
        raise MedsslError(f"--label-fraction must be in (0, 1], got {fraction}")
    if round(fraction * len(targets)) < 2:
        raise MedsslError(
            f"--label-fraction {fraction} of {len(targets)} training examples "
            f"cannot hold one example of each class; use >= {2 / len(targets):.4f}"
        )
    if fraction == 1.0:
        return torch.arange(len(targets))
    gen = torch.Generator().manual_seed(seed)
    t = targets.cpu()
    chosen = []
    for c in (0.0, 1.0):
        idx = torch.nonzero(t == c).flatten()
        if len(idx) == 0:
            raise MedsslError(f"class {int(c)} has no training examples; cannot subsample")
        k = max(1, round(fraction * len(idx)))
        chosen.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    return torch.cat(chosen).sort().values


def class_counts(targets: torch.Tensor) -> tuple[int, int]:
    """(N0, N1): negatives and positives in a target vector."""
    n1 = int(targets.sum().item())
    return len(targets) - n1, n1
