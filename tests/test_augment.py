"""The batched augmentation family: identity, parameter ranges, determinism, presets."""

import math

import pytest
import torch

from medssl.augment import apply_affine, augment, sample_affine
from medssl.catalog import PRESETS, AugmentConfig, preset
from medssl.errors import MedsslError
from medssl.options import augment_config as resolve
from medssl.runtime import to_float


def _images(n=16, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, size, size, generator=g)


def test_identity_parameters_return_input():
    x = _images()
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(len(x), 2, 3)
    torch.testing.assert_close(
        apply_affine(x, theta), x, atol=1e-5, rtol=0
    )  # float32 grid rounding
    assert augment(x, AugmentConfig(), torch.Generator()) is x


def test_hflip_only_mirrors_exactly():
    x = _images(8)
    out = augment(x, AugmentConfig(hflip=1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x.flip(-1), atol=1e-5, rtol=0)  # float32 grid rounding
    out = augment(x, AugmentConfig(vflip=1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x.flip(-2), atol=1e-5, rtol=0)  # float32 grid rounding


def test_parameter_distributions_match_ranges():
    cfg = AugmentConfig(crop_area=(0.5, 0.9), rotation=15.0, hflip=0.3)
    n = 20000
    theta = sample_affine(cfg, n, torch.Generator().manual_seed(0))
    a = theta[:, :, :2]
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]  # = +-(w h) = +-area for ratio 1
    area = det.abs()
    assert area.min() >= 0.5 - 1e-5 and area.max() <= 0.9 + 1e-5
    assert area.mean().item() == pytest.approx(0.7, abs=0.01)  # uniform on [0.5, 0.9]
    flip_rate = (det < 0).float().mean().item()
    assert flip_rate == pytest.approx(0.3, abs=0.015)
    # Rotation angle from the matrix: atan2 of the second row's first column over the first.
    scale_x = a[:, :, 0].norm(dim=1)
    angle = torch.rad2deg(torch.atan2(a[:, 1, 0] / scale_x, a[:, 0, 0] / scale_x).abs())
    angle = torch.where(det < 0, 180 - angle, angle)  # a mirrored x column flips the angle
    assert angle.max() <= 15.0 + 1e-3
    assert angle.mean().item() == pytest.approx(7.5, abs=0.2)  # |uniform(-15, 15)|


def test_crop_stays_inside_image():
    cfg = AugmentConfig(crop_area=(0.2, 1.0), crop_ratio=(0.75, 1.333))
    theta = sample_affine(cfg, 5000, torch.Generator().manual_seed(3))
    # Corners of the output grid (+-1, +-1) must map inside [-1, 1] (no rotation here).
    for sx in (-1, 1):
        for sy in (-1, 1):
            corner = theta[:, :, 0] * sx + theta[:, :, 1] * sy + theta[:, :, 2]
            assert corner.abs().max() <= 1 + 1e-5


def test_seeded_and_per_sample():
    x = _images(1).expand(32, 1, 28, 28).contiguous()
    cfg = preset("light")
    a = augment(x, cfg, torch.Generator().manual_seed(5))
    b = augment(x, cfg, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, atol=0, rtol=0)  # same seed -> same views
    # Every copy of the same image got its own parameters.
    diffs = (a[1:] - a[:1]).abs().flatten(1).amax(1)
    assert (diffs > 1e-3).all()
    assert a.min() >= 0 and a.max() <= 1


def test_intensity_ops_in_range_and_noise_blur():
    x = _images(64)
    cfg = AugmentConfig(brightness=0.3, contrast=0.3, gamma=0.5, noise=0.1, blur_prob=0.5)
    out = augment(x, cfg, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_to_float_and_resize():
    u8 = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    x = to_float(u8)
    assert x.dtype == torch.float32 and x.max() <= 1
    torch.testing.assert_close(x * 255, u8.float())
    assert to_float(u8, 64).shape == (4, 1, 64, 64)


def test_bad_configs_raise():
    with pytest.raises(MedsslError):
        AugmentConfig(crop_area=(0.0, 1.0))
    with pytest.raises(MedsslError):
        AugmentConfig(hflip=1.5)
    with pytest.raises(MedsslError):
        preset("nope")
    with pytest.raises(MedsslError):
        AugmentConfig.from_dict({"rotate": 3})
    assert set(PRESETS) >= {"none", "light"}
    assert math.isfinite(PRESETS["light"].rotation)


def test_resolve_replaces_only_the_named_fields():
    light = preset("light")
    assert resolve("light") == light and resolve("light", None) == light
    got = resolve("light", {"rotation": 0.0, "hflip": 0.0})
    assert (got.rotation, got.hflip) == (0.0, 0.0)
    assert got.crop_area == light.crop_area and got.brightness == light.brightness
    with pytest.raises(MedsslError, match="unknown"):
        resolve("light", {"rotate": 3})
    with pytest.raises(MedsslError, match="must be a mapping"):
        resolve("light", ["rotation"])


def test_gaussian_blur_masks_and_matches_the_kernel():
    import torch.nn.functional as F

    from medssl.augment import _gaussian_blur

    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.5, 1.0, 1.0])
    apply = torch.tensor([True, True, False])
    out = _gaussian_blur(x, sigma, apply, (0.5, 1.0))
    assert torch.equal(out[2], x[2])  # not applied: untouched
    for i, s in ((0, 0.5), (1, 1.0)):  # the range's ends are exact levels
        r = math.ceil(3 * s)
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1.0) / s) ** 2)
        k2d = torch.outer(k, k) / k.sum() ** 2
        ref = F.conv2d(F.pad(x[i : i + 1], (r,) * 4, mode="replicate"), k2d[None, None])
        assert torch.allclose(out[i : i + 1], ref, atol=1e-6)
