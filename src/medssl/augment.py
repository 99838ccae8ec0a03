"""The augmentation family (docs/math.md §11) as batched, per-sample transforms.

The parameter ranges (`AugmentConfig`) and the named presets are vocabulary: `medssl.catalog`.

Each call draws independent parameters for every image of the batch from a `torch.Generator`
and applies all geometric parts (random resized crop, aspect ratio, rotation, flips,
translation) as ONE affine `grid_sample`, then the intensity parts (brightness, contrast, gamma,
Gaussian noise, Gaussian blur) as vectorised tensor ops. No Python loop runs over samples; the
blur loops over a few discrete kernel widths only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from medssl.catalog import AugmentConfig


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (hi - lo) + lo


def sample_affine(
    cfg: AugmentConfig, n: int, gen: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Draw per-sample affine matrices (n, 2, 3) mapping output to input coordinates in [-1, 1].

    Crop of relative width w = sqrt(a r), height h = sqrt(a / r) (area a, ratio r, both clipped
    to the image), rotated by the angle, mirrored by the flips, centred at a random position that
    keeps the crop inside the image, plus a random translation.
    """
    area = _uniform(n, *cfg.crop_area, gen, device)
    log_r = _uniform(n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), gen, device)
    ratio = log_r.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (1 - w) * _uniform(n, -1, 1, gen, device)
    cy = (1 - h) * _uniform(n, -1, 1, gen, device)
    cx = cx + 2 * cfg.translate * _uniform(n, -1, 1, gen, device)
    cy = cy + 2 * cfg.translate * _uniform(n, -1, 1, gen, device)
    angle = torch.deg2rad(_uniform(n, -cfg.rotation, cfg.rotation, gen, device))
    sx = torch.where(torch.rand(n, generator=gen, device=device) < cfg.hflip, -w, w)
    sy = torch.where(torch.rand(n, generator=gen, device=device) < cfg.vflip, -h, h)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [
            torch.stack([cos * sx, -sin * sy, cx], dim=1),
            torch.stack([sin * sx, cos * sy, cy], dim=1),
        ],
        dim=1,
    )
    return theta  # (n, 2, 3)


def apply_affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample a batch (B, C, H, W) with per-sample affine matrices; identity returns x."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gaussian_blur(
    x: torch.Tensor, sigma: torch.Tensor, apply: torch.Tensor, sigma_range: tuple[float, float]
) -> torch.Tensor:
    """Blur the samples where `apply`, per-sample sigma quantised to 4 levels spanning
    `sigma_range`. Every level blurs the whole batch and a mask picks the result: no value is
    read back to the host, so a CUDA step never waits on the GPU here."""
    levels = torch.linspace(*sigma_range, 4).tolist()  # from the config: host floats
    edges = torch.tensor([(a + b) / 2 for a, b in zip(levels[:-1], levels[1:], strict=True)])
    edges = edges.to(x.device)
    level = torch.bucketize(sigma, edges)
    c, out = x.shape[1], x
    for j, s in enumerate(levels):
        radius = max(1, math.ceil(3 * s))
        k = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (k / max(s, 1e-3)) ** 2)
        k = k / k.sum()
        xs = F.pad(x, (radius,) * 4, mode="replicate")
        xs = F.conv2d(xs, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        xs = F.conv2d(xs, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        out = torch.where((apply & (level == j)).view(-1, 1, 1, 1), xs, out)
    return out


def two_views(
    x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two conditionally independent views t1(x), t2(x), t1, t2 i.i.d. ~ p (docs/math.md §11),
    drawn in one batched pass over the stacked batch (2B, C, H, W)."""
    views = augment(torch.cat([x, x]), cfg, gen)
    return views[: len(x)], views[len(x) :]


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Apply one i.i.d. draw t ~ p(t) of the family to every image of a float batch in [0, 1].

    Args:
        x: (B, C, H, W) float images in [0, 1], on the generator's device.
        cfg: parameter ranges.
        gen: random generator (seeded by the caller for reproducibility).
    Returns:
        (B, C, H, W) augmented images in [0, 1].
    """
    n, device = x.shape[0], x.device
    if cfg == AugmentConfig():  # the identity (preset `none`)
        return x
    x = apply_affine(x, sample_affine(cfg, n, gen, device))
    shape = (n, 1, 1, 1)
    if cfg.brightness > 0:
        x = x * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, gen, device).view(shape)
    if cfg.contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        factor = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, gen, device).view(shape)
        x = (x - mean) * factor + mean
    if cfg.gamma > 0:
        g = math.log1p(cfg.gamma)
        x = x.clamp(0, 1) ** _uniform(n, -g, g, gen, device).exp().view(shape)
    if cfg.noise > 0:
        std = _uniform(n, 0, cfg.noise, gen, device).view(shape)
        x = x + std * torch.randn(x.shape, generator=gen, device=device)
    if cfg.blur_prob > 0:
        apply = torch.rand(n, generator=gen, device=device) < cfg.blur_prob
        sigma = _uniform(n, *cfg.blur_sigma, gen, device)
        x = _gaussian_blur(x, sigma, apply, cfg.blur_sigma)
    return x.clamp(0, 1)
