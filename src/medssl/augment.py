"""The augmentation family (contrastive-ssl-theory.md §1) as batched, per-sample transforms.

Each call draws independent parameters for every image of the batch from a `torch.Generator`
and applies all geometric parts (random resized crop, aspect ratio, rotation, flips,
translation) as ONE affine `grid_sample`, then the intensity parts (brightness, contrast, gamma,
Gaussian noise, Gaussian blur) as vectorised tensor ops. No Python loop runs over samples; the
blur loops over a few discrete kernel widths only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from medssl.errors import MedsslError
from medssl.options import PRESETS as OPTION_PRESETS


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the per-sample augmentation parameters. Identity values disable a part."""

    crop_area: tuple[float, float] = (1.0, 1.0)  # fraction of the image area kept by the crop
    crop_ratio: tuple[float, float] = (1.0, 1.0)  # crop aspect ratio w/h, drawn log-uniformly
    translate: float = 0.0  # max shift as a fraction of the image side
    rotation: float = 0.0  # max |angle| in degrees
    hflip: float = 0.0  # probability
    vflip: float = 0.0  # probability
    brightness: float = 0.0  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.0  # factor drawn from [1 - c, 1 + c], around each image's mean
    gamma: float = 0.0  # exponent drawn log-uniformly from [1/(1+g), 1+g]
    noise: float = 0.0  # max std of additive Gaussian noise (std drawn from [0, noise])
    blur_prob: float = 0.0  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # blur sigma range in pixels

    def __post_init__(self) -> None:
        values = [v for x in asdict(self).values() for v in (x if isinstance(x, tuple) else (x,))]
        if not all(math.isfinite(v) for v in values):
            raise MedsslError(f"augmentation values must be finite numbers, got {self.to_dict()}")
        lo, hi = self.crop_area
        if not 0 < lo <= hi <= 1:
            raise MedsslError(f"crop_area must satisfy 0 < min <= max <= 1, got {self.crop_area}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise MedsslError(f"crop_ratio must satisfy 0 < min <= max, got {self.crop_ratio}")
        for name in ("hflip", "vflip", "blur_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise MedsslError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("translate", "rotation", "brightness", "contrast", "gamma", "noise"):
            if getattr(self, name) < 0:
                raise MedsslError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.brightness >= 1 or self.contrast >= 1:
            raise MedsslError("brightness and contrast must be < 1 (factors stay positive)")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> AugmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise MedsslError(
                f"unknown augmentation keys {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    # Supervised fine-tuning: mild, label-preserving for both modalities.
    "light": AugmentConfig(
        crop_area=(0.85, 1.0),
        crop_ratio=(0.9, 1.1),
        translate=0.05,
        rotation=10.0,
        hflip=0.5,
        brightness=0.1,
        contrast=0.1,
    ),
    # SimCLR views for chest X-rays: strong crops, no vertical flip (anatomy has an up),
    # rotations within 10 degrees, brightness/contrast/gamma as exposure varies, light blur.
    "simclr-xray": AugmentConfig(
        crop_area=(0.35, 1.0),
        crop_ratio=(0.75, 1.333),
        rotation=10.0,
        hflip=0.5,
        brightness=0.2,
        contrast=0.3,
        gamma=0.2,
        noise=0.02,
        blur_prob=0.2,
        blur_sigma=(0.1, 0.7),
    ),
    # SimCLR views for breast ultrasound: no vertical flip (the transducer is at the top),
    # milder contrast (echogenicity carries the diagnosis), speckle-like noise.
    "simclr-ultrasound": AugmentConfig(
        crop_area=(0.35, 1.0),
        crop_ratio=(0.75, 1.333),
        rotation=15.0,
        hflip=0.5,
        brightness=0.2,
        contrast=0.2,
        gamma=0.15,
        noise=0.04,
        blur_prob=0.2,
        blur_sigma=(0.1, 0.7),
    ),
}

# a user's own data ("unknown"): the X-ray views, the milder of the two SimCLR presets
MODALITY_PRESETS = {
    "chest-xray": "simclr-xray",
    "ultrasound": "simclr-ultrasound",
    "unknown": "simclr-xray",
}
assert tuple(PRESETS) == OPTION_PRESETS, "declare new presets in medssl.options.PRESETS too"


def preset(name: str) -> AugmentConfig:
    """Return a named augmentation preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise MedsslError(
            f"unknown augmentation preset {name!r}; known: {sorted(PRESETS)}"
        ) from None


def resolve(name: str, overrides: dict | None = None) -> AugmentConfig:
    """A named preset with some of its fields replaced, each override checked against the
    field's type (pydantic, as every option) and range (unknown fields are a clear error)."""
    from pydantic import TypeAdapter, ValidationError

    from medssl.options import validation_message

    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        raise MedsslError(f"augment_overrides must be a mapping of fields, got {overrides!r}")
    known = {f.name for f in fields(AugmentConfig)}
    unknown = sorted(str(k) for k in overrides if k not in known)
    if unknown:
        raise MedsslError(f"unknown augment_overrides {unknown}; known: {sorted(known)}")
    try:
        return TypeAdapter(AugmentConfig).validate_python(preset(name).to_dict() | overrides)
    except ValidationError as exc:
        msg = validation_message(exc, "augment", lambda k: f"augment_overrides.{k}")
        raise MedsslError(msg) from None


def to_float(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 in [0, 1], optionally resized on the device to `size`."""
    x = images.float().div_(255.0)
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1]
        )
    return x


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
    """Two conditionally independent views t1(x), t2(x), t1, t2 i.i.d. ~ p (ssl theory §1),
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
    if cfg == PRESETS["none"]:
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


def preview(cfg) -> str:
    """`medssl augment-preview`: a PNG grid of `cfg.views` views of `cfg.images` training
    images under preset `cfg.augment`; returns the path written."""
    from medssl import data as D
    from medssl import plots
    from medssl.rundir import check_output_file

    out = check_output_file(cfg.out, plots.written_by("augment-preview"), "PNG image")
    train = D.load_splits(cfg.dataset, cfg.data_root, positive=1)["train"]  # labels unused
    gen = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(train), generator=gen)[: cfg.images]
    x = to_float(train.images[idx])
    views = augment(x.repeat_interleave(cfg.views, 0), preset(cfg.augment), gen)
    views = views.view(len(idx), cfg.views, *x.shape[-2:]).numpy()
    title = f"{cfg.dataset}: preset {cfg.augment}"
    grid = plots.plot_augmentation_grid(x[:, 0].numpy(), views, out, title=title)
    return str(grid)
