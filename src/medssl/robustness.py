"""Robustness mini-suite: mild, modality-plausible shifts of the test images at 3 severities.

Each shift maps a float batch (N, 1, H, W) in [0, 1] to a shifted batch, deterministically
given its seed. The suite re-predicts the test split under every shift and reports the change
in AUROC, accuracy, ECE, and in sensitivity/specificity at an operating point chosen on
validation.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from medssl.augment import _gaussian_blur, apply_affine
from medssl.calibration import sigmoid
from medssl.metrics import accuracy, auroc, expected_calibration_error
from medssl.operating_points import rates_at


def _noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator(device=x.device).manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g, device=x.device)).clamp(0, 1)


def _speckle(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator(device=x.device).manual_seed(seed)
    return (x * (1 + sigma * torch.randn(x.shape, generator=g, device=x.device))).clamp(0, 1)


def _blur(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    n = len(x)
    return _gaussian_blur(
        x,
        torch.full((n,), sigma, device=x.device),
        torch.ones(n, dtype=torch.bool, device=x.device),
        (sigma, sigma),
    )


def _contrast(x: torch.Tensor, factor: float, seed: int) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def _crop_resize(x: torch.Tensor, area: float, seed: int) -> torch.Tensor:
    s = area**0.5
    theta = torch.tensor([[s, 0.0, 0.0], [0.0, s, 0.0]], device=x.device).expand(len(x), 2, 3)
    return apply_affine(x, theta)


def _jpeg(x: torch.Tensor, quality: float, seed: int) -> torch.Tensor:
    """JPEG round trip through Pillow (a per-image loop: evaluation only, not a hot path)."""
    out = []
    for img in (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(buf)))
    return torch.from_numpy(np.stack(out)).to(x.device).unsqueeze(1).float() / 255


SHIFTS = {  # name -> (function, three severities, what the parameter is)
    "gaussian_noise": (_noise, (0.02, 0.05, 0.1), "noise std"),
    "speckle": (_speckle, (0.05, 0.1, 0.2), "multiplicative noise std"),
    "blur": (_blur, (0.5, 0.8, 1.2), "Gaussian sigma (px)"),
    "brightness": (lambda x, f, s: (x * f).clamp(0, 1), (0.9, 0.8, 0.7), "intensity factor"),
    "contrast": (_contrast, (0.9, 0.8, 0.7), "contrast factor"),
    "gamma": (lambda x, g, s: x.clamp(0, 1) ** g, (1.2, 1.5, 1.8), "gamma exponent"),
    "crop_resize": (_crop_resize, (0.9, 0.8, 0.7), "central area kept"),
    "jpeg": (_jpeg, (75, 50, 30), "JPEG quality"),
}


def apply_shift(x: torch.Tensor, name: str, param: float, seed: int = 0) -> torch.Tensor:
    """Apply one named shift with parameter `param` to a float batch in [0, 1]."""
    return SHIFTS[name][0](x, param, seed)


def robustness_suite(
    predict,
    images: torch.Tensor,
    targets: np.ndarray,
    threshold: float,
    n_bins: int = 15,
    seed: int = 0,
) -> list[dict]:
    """Metrics of `predict(float images) -> logits (np.float64)` under every shift/severity.

    `threshold` is an operating point on the logit chosen on validation; each row holds the
    absolute metrics and their change from the clean test images.
    """

    def measure(z: np.ndarray) -> dict:
        p = sigmoid(z)
        op = rates_at(targets, z, threshold)
        return {
            "auroc": auroc(targets, z),
            "accuracy": accuracy(targets, p),
            "ece": expected_calibration_error(targets, p, n_bins),
            "sensitivity": op["sensitivity"],
            "specificity": op["specificity"],
        }

    clean = measure(predict(images))
    rows = [{"shift": "none", "severity": 0, "param": None, **clean}]
    for name, (_, params, _) in SHIFTS.items():
        for severity, param in enumerate(params, start=1):
            m = measure(predict(apply_shift(images, name, param, seed)))
            rows.append(
                {
                    "shift": name,
                    "severity": severity,
                    "param": param,
                    **m,
                    **{f"delta_{k}": m[k] - clean[k] for k in clean},
                }
            )
    return rows
