"""medssl's vocabulary, torch-free: datasets, image sizes, stems, augmentation presets, SSL
methods and the `tune` search space. Each list lives here once; options, commands, docs and
tests read it (and tests parametrize over it), so adding a dataset, a preset or a method is one
row here plus, for a method, its module in `medssl.methods`.

This module imports nothing of medssl but `errors`, and nothing heavier than the standard
library: `medssl --help` and option parsing stay fast.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from medssl.errors import MedsslError

# ---- datasets ----


@dataclass(frozen=True)
class DatasetInfo:
    """What a supported dataset is, and what its labels mean."""

    name: str  # medmnist flag
    modality: str
    label_names: dict[int, str]
    default_positive: int | None  # the clinically meaningful "positive" label (None: ask)
    # The default supervised recipe: `train` values for the options a user leaves unset (the
    # study and the SSL fine-tuning runs use it too); chosen by `medssl tune` (docs/results.md).
    recipe: dict[str, Any] = field(default_factory=dict)


DATASETS: dict[str, DatasetInfo] = {
    "breastmnist": DatasetInfo(
        name="breastmnist",
        modality="ultrasound",
        label_names={0: "malignant", 1: "normal/benign"},
        default_positive=0,
        recipe={  # `medssl tune`, 5-fold CV, trial 22 (docs/results.md)
            "stem": "compact",
            "epochs": 20,
            "lr": 2.67e-4,
            "weight_decay": 2.99e-5,
            "lr_schedule": "constant",
            "augment": "light",
            "loss": "weighted-bce",
            "batch_size": 64,
            "precision": "auto",  # tuned in bf16, where the machine has it natively
        },
    ),
    "pneumoniamnist": DatasetInfo(
        name="pneumoniamnist",
        modality="chest-xray",
        label_names={0: "normal", 1: "pneumonia"},
        default_positive=1,
        recipe={  # `medssl tune`, 3-fold CV, trial 11 (docs/results.md)
            "stem": "imagenet",
            "epochs": 20,
            "lr": 1.81e-2,
            "weight_decay": 2.34e-4,
            "lr_schedule": "constant",
            "augment": "light",
            "loss": "weighted-bce",
            "batch_size": 64,
            "precision": "fp32",
        },
    ),
}
# A user's own data (a folder, CSV or npz: medssl.data.sources): classes from the data, no
# default positive class, and the fast recipe (imagenet stem) until `medssl tune` says otherwise.
USER_MODALITY = "unknown"
USER_RECIPE = {"stem": "imagenet", "epochs": 30}
SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)  # the official MedMNIST(+) image sizes
INTENSITIES = ("bits", "range", "percentile", "window")  # 16-bit to 8-bit (data/preprocess.py)
ASPECTS = ("pad", "crop", "stretch")  # non-square images to square (data/preprocess.py)
DATA_ROOT_ENV = "MEDSSL_DATA_ROOT"


def modality(dataset: str) -> str:
    """The imaging modality of a MedMNIST name; a user's source is 'unknown'."""
    return DATASETS[dataset].modality if dataset in DATASETS else USER_MODALITY


def recipe(dataset: str) -> dict[str, Any]:
    """The default supervised recipe of a dataset name or a user's source."""
    return DATASETS[dataset].recipe if dataset in DATASETS else USER_RECIPE


# ---- models ----

STEMS = ("imagenet", "cifar", "compact")  # ResNet-18 stems (medssl.models.Encoder)


# ---- augmentation presets ----


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
        known = field_names()
        unknown = set(d) - known
        if unknown:
            raise MedsslError(
                f"unknown augmentation keys {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def field_names() -> set[str]:
    """The fields of AugmentConfig (the keys `augment_overrides` may replace)."""
    return {f.name for f in fields(AugmentConfig)}


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
# The SimCLR-style preset of each modality; a user's own data ("unknown") gets the X-ray views.
MODALITY_PRESETS = {
    "chest-xray": "simclr-xray",
    "ultrasound": "simclr-ultrasound",
    USER_MODALITY: "simclr-xray",
}


def preset(name: str) -> AugmentConfig:
    """Return a named augmentation preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise MedsslError(
            f"unknown augmentation preset {name!r}; known: {sorted(PRESETS)}"
        ) from None


# ---- self-supervised methods ----


@dataclass(frozen=True)
class Method:
    """A self-supervised method: its module `medssl.methods.<name>` holds the networks and the
    step; this row holds what options, the study and the docs need to know of it."""

    name: str
    title: str  # as shown in tables and reports
    loss: str  # the `medssl.losses` function it minimises; its TensorBoard tag is loss/<it>
    recipe: dict[str, Any]  # the pretraining options it fills when the user leaves them unset


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "simclr",
            "SimCLR",
            "nt_xent",
            {"lr": 2e-3, "weight_decay": 1e-4, "proj_dims": [512, 512, 128], "temperature": 0.2},
        ),
        Method(
            "moco",
            "MoCo v2",
            "info_nce",
            {
                "lr": 2e-3,
                "weight_decay": 1e-4,
                "proj_dims": [512, 512, 128],
                "temperature": 0.2,
                "momentum": 0.99,
                "queue_size": 4096,
            },
        ),
        Method(
            "byol",
            "BYOL",
            "negative_cosine",
            {"lr": 2e-3, "weight_decay": 1e-4, "proj_dims": [512, 1024, 256], "momentum": 0.99},
        ),
        Method(
            "simsiam",
            "SimSiam",
            "negative_cosine",
            {"lr": 2e-3, "weight_decay": 1e-4, "proj_dims": [512, 512, 512]},
        ),
        Method(
            "barlow",
            "Barlow Twins",
            "barlow_twins",
            {"lr": 2e-3, "weight_decay": 1e-4, "proj_dims": [512, 1024, 1024, 1024]},
        ),
        Method(
            "vicreg",
            "VICReg",
            "vicreg",
            {"lr": 2e-3, "weight_decay": 1e-4, "proj_dims": [512, 1024, 1024, 1024]},
        ),
        Method(
            "dino",
            "DINO",
            "dino",
            {
                "lr": 5e-4,
                "weight_decay": 0.04,
                "proj_dims": [512, 1024, 1024, 256],
                "temperature": 0.1,
                "momentum": 0.996,
            },
        ),
    )
}
METHOD_NAMES = tuple(METHODS)


# ---- the `tune` search space ----

# Categorical where the choices are few and discrete, log-uniform for rates.
TUNE_SPACE: dict[str, tuple] = {
    "stem": ("imagenet", "compact", "cifar"),
    "epochs": (5, 10, 20, 30, 50),
    "lr": (1e-4, 3e-2),
    "weight_decay": (1e-6, 1e-2),
    "lr_schedule": ("cosine", "constant"),
    "augment": ("none", "light"),
    "loss": ("bce", "weighted-bce"),
    "batch_size": (64, 128, 256),
    "precision": ("fp32", "bf16"),
}
TUNE_RANGES = ("lr", "weight_decay")  # searched log-uniformly between two bounds; the rest: choices
METHOD_TITLES = {m.name: m.title for m in METHODS.values()}
