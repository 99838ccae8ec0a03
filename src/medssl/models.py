"""ResNet-18 encoder for 1-channel small images, linear head, and weight loading.

Vocabulary follows timm: `forward_features` gives the pooled feature h (docs/math.md §1,
§7: h = h_phi(x) in R^512), `forward_head` the logit z = w^T h + b, `num_features` = 512.

Stems (the first layers, which decide the spatial size the residual stages see):
- ``imagenet``: 7x7 conv stride 2 + 3x3 max-pool (torchvision's), 28 px -> 7x7 in layer1.
- ``cifar``: 3x3 conv stride 1, no max-pool, 28 px -> 28x28 in layer1 (16x the FLOPs).
- ``compact``: 3x3 conv stride 1 + 3x3 max-pool stride 2, 28 px -> 14x14 in layer1.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file

from medssl.catalog import STEMS
from medssl.errors import MedsslError
from medssl.io.artifacts import atomic_path, read_safetensors, reading, write_text

ARCH = "resnet18"
# Grey input is normalised with the mean/std of ImageNet's three channels averaged, so that
# ImageNet conv1 kernels summed over RGB see inputs on the scale they were trained on.
INPUT_MEAN, INPUT_STD = 0.449, 0.226
IMAGENET_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1


class CroppedConv2d(nn.Conv2d):
    """nn.Conv2d that, where its output is a single position, skips the kernel taps that only
    ever meet zero padding: output = conv(x[..., :h, :w], W[..., p:p+h, p:p+w]), no padding.

    The dropped terms are products with padding zeros, so value and gradients are the same
    (their weights' gradient is exactly 0 either way). Why: with the imagenet stem at 28 px,
    layer4 runs at 1x1, where a 3x3 conv does 9x the work it needs and oneDNN's backward of it
    is slow; cropping made the SSL methods' bf16 step on CPU a median 1.24x as fast
    (benchmarks/methods.py). Parameters and state-dict keys are nn.Conv2d's.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
        (kh, kw), (ph, pw), (sh, sw) = self.kernel_size, self.padding, self.stride
        H, W = x.shape[-2:]
        single = (H + 2 * ph - kh) // sh == 0 and (W + 2 * pw - kw) // sw == 0
        if (
            single
            and kh * kw > 1
            and ph < kh
            and pw < kw
            and self.groups == 1
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
        ):
            h, w = min(kh - ph, H), min(kw - pw, W)
            return F.conv2d(x[..., :h, :w], weight[..., ph : ph + h, pw : pw + w], bias)
        return super()._conv_forward(x, weight, bias)


def crop_convs(module: nn.Module) -> nn.Module:
    """Make every plain nn.Conv2d in `module` a CroppedConv2d, in place (same parameters,
    same RNG use: the modules are re-classed, not rebuilt)."""
    for m in module.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = CroppedConv2d
    return module


class Encoder(nn.Module):
    """f_theta: ResNet-18 trunk up to global average pooling; input float (B, C, H, W) in [0, 1]."""

    num_features = 512

    def __init__(self, stem: str = "imagenet", in_channels: int = 1) -> None:
        super().__init__()
        if stem not in STEMS:
            raise MedsslError(f"unknown stem {stem!r}; choose from {', '.join(STEMS)}")
        self.stem, self.in_channels = stem, in_channels
        net = torchvision.models.resnet18(weights=None)
        if stem == "imagenet":
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        else:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        if stem == "cifar":
            net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        crop_convs(self)
        self.register_buffer("input_mean", torch.tensor(INPUT_MEAN), persistent=False)
        self.register_buffer("input_std", torch.tensor(INPUT_STD), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, 512) pooled features."""
        x = (x - self.input_mean) / self.input_std
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(x.mean(dim=(2, 3)), 1)


class Classifier(nn.Module):
    """Encoder + linear head producing ONE logit z (docs/math.md §1, §7)."""

    def __init__(self, stem: str = "imagenet", in_channels: int = 1) -> None:
        super().__init__()
        self.encoder = Encoder(stem, in_channels)
        self.head = nn.Linear(self.encoder.num_features, 1)

    @property
    def num_features(self) -> int:
        return self.encoder.num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward_head(self, h: torch.Tensor) -> torch.Tensor:
        """z = w^T h + b, shape (B,)."""
        return self.head(h).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B,) in float32: under autocast only the trunk runs in reduced precision."""
        h = self.forward_features(x)
        with torch.autocast(h.device.type, enabled=False):
            return self.forward_head(h.float())

    def freeze_encoder(self) -> None:
        """Head-only mode: no gradients into the trunk and BatchNorm statistics frozen."""
        self.encoder.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if mode and not any(p.requires_grad for p in self.encoder.parameters()):
            self.encoder.eval()  # keep BN running stats fixed in head-only mode
        return self


class ProjectionHead(nn.Module):
    """g_phi: MLP h (d) -> z (k), Linear-BN-ReLU between layers (docs/math.md §12).

    `dims` = (d, hidden..., k), default (512, 512, 128) as in SimCLR. The other methods' heads
    vary it: `batchnorm=False` (MoCo v2's Linear-ReLU-Linear), `last_bn` (SimSiam's projector
    ends with BatchNorm), `last_bias=False` (Barlow Twins).
    """

    def __init__(
        self,
        dims: tuple[int, ...] = (512, 512, 128),
        batchnorm: bool = True,
        last_bn: bool = False,
        last_bias: bool = True,
    ) -> None:
        super().__init__()
        if len(dims) < 2 or any(d <= 0 for d in dims):
            raise MedsslError(f"projection dims must be >= 2 positive sizes, got {dims}")
        self.dims = tuple(dims)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = i == len(dims) - 2
            if not last:
                layers.append(nn.Linear(a, b, bias=not batchnorm))
                layers += [nn.BatchNorm1d(b)] if batchnorm else []
                layers.append(nn.ReLU(inplace=True))
            else:
                layers.append(nn.Linear(a, b, bias=last_bias and not last_bn))
                layers += [nn.BatchNorm1d(b)] if last_bn else []
        self.net = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(N, d) -> (N, k) unnormalised projections z (the loss normalises them)."""
        return self.net(h)


def metadata(kind: str, model: Encoder, **extra: str) -> dict[str, str]:
    """The JSON-able metadata stored with every medssl model file."""
    meta = {
        "format": "medssl",
        "kind": kind,
        "arch": ARCH,
        "stem": model.stem,
        "in_channels": str(model.in_channels),
    }
    meta.update({k: str(v) for k, v in extra.items()})
    return meta


def save_model(module: nn.Module, path: Path, meta: dict[str, str]) -> None:
    """Write weights as safetensors with `meta` in the header (and a .json copy), atomically."""
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    write_text(Path(path).with_suffix(".json"), json.dumps(meta, indent=2) + "\n")


def read_model(
    path: Path | str, kind: str | tuple[str, ...] | None = None, **expect: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a medssl safetensors file: (state dict, metadata). Never unpickles.

    `kind` (one or several) and `expect` (metadata key -> value, e.g. dataset=..., stem=...)
    are checked, so a file of another kind, model or dataset is refused in one line.
    """
    state, meta = read_safetensors(path)
    if meta.get("format") != "medssl":
        raise MedsslError(f"{path}: safetensors file without medssl metadata")
    _check_metadata(path, meta)
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds and meta.get("kind") not in kinds:
        raise MedsslError(
            f"{path}: kind {meta.get('kind')!r}, expected {' or '.join(kinds)} (another kind of "
            f"model file)"
        )
    for key, value in expect.items():
        if str(meta.get(key)) != str(value):
            raise MedsslError(
                f"{path}: made for {key} {meta.get(key)!r}, but this run has {value!r} "
                f"(a file of another run?)"
            )
    return state, meta


def _check_metadata(path: Path | str, meta: dict[str, str]) -> None:
    """The header of a medssl file, field by field: a damaged or hand-edited one is refused in
    one line rather than building a model it does not describe."""
    bad = []
    if not re.fullmatch(r"[a-z][a-z_]*", meta.get("kind", "")):  # encoder, classifier, a head
        bad.append("kind")
    if meta.get("arch") != ARCH:
        bad.append("arch")
    if meta.get("stem") not in STEMS:
        bad.append("stem")
    if meta.get("in_channels", "1") != "1":
        bad.append("in_channels")
    if meta.get("positive_label", "0") not in ("0", "1"):
        bad.append("positive_label")
    for key, kind in (("epoch", int), ("val_auroc", float)):
        try:
            if key in meta and not math.isfinite(kind(meta[key])):
                bad.append(key)
        except ValueError:
            bad.append(key)
    if bad:
        shown = {k: meta.get(k) for k in bad}
        raise MedsslError(f"{path}: damaged medssl metadata {shown}; not a file medssl wrote")


def load_state(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    source: Path | str,
    keep_random: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Load `state` into `module` after checking every key, shape and dtype (one line
    otherwise); the keys `keep_random` may be absent and keep their initialisation."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and k not in keep_random]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise MedsslError(
            f"{source}: weights do not match the model ({len(missing)} missing, e.g. "
            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != own[k].shape or v.dtype != own[k].dtype:
            got = f"{tuple(v.shape)} {v.dtype}" if isinstance(v, torch.Tensor) else type(v).__name__
            raise MedsslError(
                f"{source}: {k} has shape {got}, expected {tuple(own[k].shape)} {own[k].dtype}"
            )
    module.load_state_dict(state, strict=not keep_random)


def _fold_to_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fold RGB conv1 kernels (64, 3, k, k) to `in_channels` by summing over colour (timm)."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    raise MedsslError(f"cannot adapt conv1 from {weight.shape[1]} to {in_channels} channels")


def imagenet_state_dict(path: Path | str | None = None) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet ResNet-18 weights from `path`, the torch hub cache, or a download.

    Loaded with ``weights_only=True``. Raises MedsslError with the offline fix when neither a
    file nor the network is available.
    """
    if path is None:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILE
        if not cache.is_file():
            try:
                weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
                return weights.get_state_dict(progress=False, check_hash=True)
            except Exception as exc:
                raise MedsslError(
                    f"ImageNet weights not in the torch cache ({cache}) and not downloadable "
                    f"({type(exc).__name__}); copy {IMAGENET_FILE} there or pass --init PATH"
                ) from None
        path = cache
    with reading(path, "weights-only torch file"):
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise MedsslError(f"{path}: not a torchvision ResNet-18 state dict (no conv1.weight)")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad or state["conv1.weight"].ndim != 4:
        raise MedsslError(
            f"{path}: not a ResNet-18 state dict ({bad[:2] or 'conv1.weight'} malformed)"
        )
    return state


def load_encoder_weights(encoder: Encoder, source: str | Path) -> list[str]:
    """Initialise `encoder` from 'imagenet', a torchvision .pth file, or a medssl model file.

    Checks every key and shape; folds RGB conv1 to the input channels; drops torchvision's fc
    and, for a stem other than `imagenet`, the 7x7 conv1. Returns the changes made, one line each.
    Anything else unexpected raises MedsslError.
    """
    changes: list[str] = []
    keep_random: set[str] = set()
    source_str = str(source)
    if source_str.endswith(".safetensors"):
        state, meta = read_model(source)
        if meta.get("arch") != ARCH:
            raise MedsslError(f"{source}: architecture {meta.get('arch')!r}, expected {ARCH}")
        if meta.get("stem") != encoder.stem:
            raise MedsslError(
                f"{source}: encoder has stem {meta.get('stem')!r} but this run uses "
                f"{encoder.stem!r}; pass --stem {meta.get('stem')}"
            )
        if meta.get("kind") == "classifier":
            state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
            changes.append("took the encoder of a classifier file; its head was dropped")
        elif meta.get("kind") != "encoder":
            raise MedsslError(f"{source}: model kind {meta.get('kind')!r} has no encoder")
    else:
        state = imagenet_state_dict(None if source_str == "imagenet" else source)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        changes.append("dropped the ImageNet fc layer (1000 classes)")
        if encoder.stem == "imagenet":
            state["conv1.weight"] = _fold_to_channels(state["conv1.weight"], encoder.in_channels)
            changes.append(f"folded conv1 RGB kernels to {encoder.in_channels} channel(s) by sum")
        else:
            del state["conv1.weight"]
            keep_random.add("conv1.weight")
            changes.append(f"conv1 kept at random init: the {encoder.stem} stem has 3x3 kernels")
    load_state(encoder, state, source, keep_random)
    return changes
