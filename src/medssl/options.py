"""Every command's options, declared once: name, type, default, allowed values or range, help.

The CLI parser (`medssl.cli`), `--config` YAML files, `--print-config`, the `config.yaml` saved in
every run folder and the option tables in docs/commands all derive from these classes (a test
fails when the docs and the declarations disagree). Values from the command line (strings) and
from YAML files go through the same validation: pydantic v2 in lax mode (so `"3"` and `3` are an
int, `1e-3` a float) with three refusals on top: no booleans where numbers are expected, no
fractional numbers for integers, no NaN or infinity. Why pydantic: docs/design.md.

Declarations only: each value is checked on its own or against the vocabulary of
`medssl.catalog` (dataset names, presets, methods, the tune space), and defaults that depend on
another option (a dataset's recipe, a method's recipe, a modality's preset) are filled from the
catalog. Checks that need the data or model files (the positive class of a user's source, the
stem an `--init` file brings) belong to the commands (`medssl.commands.*.resolve`). This module
imports no torch and no other medssl module than `catalog` and `errors`: `medssl --help` stays
fast and nothing below it can import it back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from medssl import catalog
from medssl.catalog import METHOD_NAMES, SIZES, TUNE_RANGES, TUNE_SPACE, AugmentConfig
from medssl.errors import MedsslError

DATASETS = tuple(catalog.DATASETS)


def opt(default: Any, help: str, *, shown: str | None = None, **kw: Any) -> Any:
    """A declared option: its default, its help (Markdown: `code`, shown plain in --help) and
    pydantic constraints (ge, le, ...). `shown` replaces the default in --help and the docs."""
    return Field(
        default, description=help, json_schema_extra={"shown": shown} if shown else None, **kw
    )


# ---- value checks shared by several commands ----


def _comma_list(value: Any) -> Any:
    """'0.1,0.2' -> ['0.1', '0.2']; one number -> [number]; lists pass through."""
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [value]
    return value


def _methods(value: Any) -> Any:
    """'all' -> every method; 'simclr,byol' -> a list; duplicates dropped, order kept."""
    items = _comma_list(value)
    if items == ["all"]:
        return list(METHOD_NAMES)
    return list(dict.fromkeys(items)) if isinstance(items, list) else items


def _dataset(name: str) -> str:
    """A MedMNIST name, or a user's folder / .csv / .npz (kept as an absolute path, so a saved
    config.yaml names the same data from anywhere)."""
    if name in DATASETS:
        return name
    _path(name)
    path = Path(name).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() in (".csv", ".npz")):
        return str(path.resolve())
    raise ValueError(
        f"unknown dataset {name!r}: not {' or '.join(DATASETS)}, nor an existing folder, .csv or "
        ".npz file"
    )


def _pool_sources(value: Any) -> Any:
    """Unlabeled pool sources: MedMNIST names, image folders or .npz/.npy arrays."""
    items = _comma_list(value)
    if items is None or not isinstance(items, list):
        return items
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a dataset name or path")
        if item in DATASETS:
            out.append(item)
            continue
        _path(item)
        path = Path(item).expanduser()
        if not (path.is_dir() or (path.is_file() and path.suffix.lower() in (".npz", ".npy"))):
            raise ValueError(
                f"{item!r}: not {' or '.join(DATASETS)}, nor an existing folder, .npz or .npy file"
            )
        out.append(str(path.resolve()))
    if not out:
        raise ValueError("name at least one source")
    return list(dict.fromkeys(out))


PoolSources = Annotated[list[str] | None, BeforeValidator(_pool_sources)]


def _external_sources(value: Any) -> Any:
    """Labelled external sets: MedMNIST names or folders / .csv / .npz, each once."""
    items = _comma_list(value)
    if items is None or not isinstance(items, list):
        return items
    out = [_dataset(str(item)) for item in items]
    if not out:
        raise ValueError("name at least one labelled set")
    return list(dict.fromkeys(out))


ExternalSources = Annotated[list[str] | None, BeforeValidator(_external_sources)]


def _size(size: int) -> int:
    if size not in SIZES:
        raise ValueError(f"must be one of {', '.join(map(str, SIZES))}")
    return size


def _device(name: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ValueError("must be auto, cpu, cuda or cuda:N")
    return name


def _not_blank(path: str) -> str:
    if not path.strip():
        raise ValueError("must name a folder or file, not an empty string")
    return _path(path)


def _path(path: str | None) -> str | None:
    """A value that names a file or folder: no NUL, and a ~user that exists."""
    if path is None:
        return None
    if "\0" in path:
        raise ValueError("a path cannot hold a NUL character")
    try:
        Path(path).expanduser()
    except RuntimeError as exc:
        raise ValueError(f"{path}: {str(exc).rstrip('.').lower()}") from None
    return path


def _to_str(value: Any) -> Any:
    """A label given as a YAML number (positive_class: 0) is the string '0'."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Dataset = Annotated[
    str,
    Field(
        description="`breastmnist` \\| `pneumoniamnist` \\| your data: a folder, .csv or .npz "
        "(docs/own-data.md)"
    ),
    AfterValidator(_dataset),
]
DataRoot = Annotated[
    str | None,
    AfterValidator(_path),
    Field(
        description="folder with the medmnist npz files (unset: `$MEDSSL_DATA_ROOT`, else "
        "`~/.medmnist`)"
    ),
]
# an optional file or folder option: unset, or a path that is not blank
MaybePath = Annotated[str | None, AfterValidator(lambda v: v if v is None else _not_blank(v))]
OutDir = Annotated[str, Field(description="run folder to create"), AfterValidator(_not_blank)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Size = Annotated[
    int,
    Field(description="official image size of the npz file: 28 \\| 64 \\| 128 \\| 224"),
    AfterValidator(_size),
]
Resize = Annotated[
    int | None,
    Field(ge=8, le=1024, description="resize images on the device to this many pixels (8-1024)"),
]


def _window(value: Any) -> Any:
    """'40,400' (or [40, 400]) -> (40.0, 400.0): a VOI window, width >= 1 (DICOM PS3.3)."""
    if value is None:
        return None
    parts = value.split(",") if isinstance(value, str) else value
    try:
        c, w = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not CENTRE,WIDTH (two numbers)") from None
    if not (math.isfinite(c) and math.isfinite(w)):
        raise ValueError("centre and width must be finite numbers")
    if w < 1:
        raise ValueError(f"width {w:g} must be >= 1 (DICOM PS3.3 C.11.2.1.2)")
    return [c, w]


Intensity = Annotated[
    Literal[catalog.INTENSITIES],
    Field(
        description="16-bit images to 8 bits: `bits` (top 8 of the bits the training images "
        "use) \\| `range` (dtype range) \\| `percentile` (per image 0.5-99.5) \\| `window` "
        "(--window); docs/own-data.md"
    ),
]
Window = Annotated[
    list[float] | None,
    BeforeValidator(_window),
    Field(
        description="VOI window CENTRE,WIDTH for DICOM (instead of the file's) and for "
        "`--intensity window`"
    ),
]
Aspect = Annotated[
    Literal[catalog.ASPECTS],
    Field(
        description="non-square images: `pad` (to square, black) \\| `crop` (centre) \\| `stretch`"
    ),
]
Device = Annotated[
    str, Field(description="`auto` \\| `cpu` \\| `cuda` \\| `cuda:N`"), AfterValidator(_device)
]
Precision = Annotated[
    Literal["auto", "fp32", "bf16"],
    Field(description="`auto` (bf16 where the hardware has it) \\| `fp32` \\| `bf16`"),
]
Stem = Annotated[Literal[catalog.STEMS], Field(description="ResNet-18 stem")]
Schedule = Annotated[
    Literal["cosine", "exp", "constant"],
    Field(description="`cosine` \\| `exp` \\| `constant` (per epoch, after warm-up)"),
]
EvalBatch = Annotated[
    int,
    Field(ge=1, le=65536, description="batch size for evaluation and feature extraction"),
]
NBins = Annotated[int, Field(ge=1, le=1000, description="equal-width bins of the ECE")]
PositiveClass = Annotated[
    str | None,
    BeforeValidator(_to_str),
    Field(
        description="label (0/1) or name counted as positive (unset: malignant for "
        "BreastMNIST, pneumonia for PneumoniaMNIST; required for your own data)"
    ),
]
Mlflow = Annotated[
    str | None,
    Field(
        description="also log to MLflow: a tracking URI, or a folder for a local file store "
        "(`pip install 'medssl[mlflow]'`)"
    ),
]
Progress = Annotated[bool, Field(description="no progress bar (config: `progress: false`)")]
Tensorboard = Annotated[
    bool,
    Field(
        description="write no TensorBoard events (default: `RUN_DIR/tensorboard`; config: "
        "`tensorboard: false`)"
    ),
]
Download = Annotated[
    bool, Field(description="download the dataset with medmnist if missing (needs network)")
]
VerifyMd5 = Annotated[bool, Field(description="check the npz file against the official MD5")]


# ---- the base class: parsing, messages, saving ----


def _field_type_is_bool(annotation: Any) -> bool:
    return annotation is bool or getattr(annotation, "__args__", None) in ((bool, type(None)),)


class Options(BaseModel):
    """A command's options. Build with `parse` (messages name where a value came from) or with
    keywords (messages name the `--option`); both raise MedsslError with one line."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_default=False)
    command: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line, for `medssl --help`
    description: ClassVar[str] = ""  # a paragraph, for `medssl COMMAND --help`
    flags: ClassVar[tuple[str, ...]] = ("config", "print_config", "debug")  # not saved options
    positionals: ClassVar[dict[str, str | None]] = {}  # name -> argparse nargs

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise MedsslError(validation_message(exc, type(self).command, _WHERE.get())) from None

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        """YAML `epochs: true` is not the number 1: booleans only where a bool is declared."""
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key)
                if isinstance(value, bool) and field and not _field_type_is_bool(field.annotation):
                    data = {**data, key: str(value).lower()}
        return data

    @model_validator(mode="after")
    def _window_given(self) -> Options:
        if getattr(self, "intensity", None) == "window" and getattr(self, "window", 1) is None:
            raise ValueError("--intensity window needs --window CENTRE,WIDTH")
        return self

    @classmethod
    def parse(
        cls,
        data: dict,
        where: Callable[[str], str] | None = None,
        files_later: bool = False,
    ) -> Options:
        """Validate `data`; `where(key)` names the source of a key in messages. `files_later`:
        files named by options (--init, --encoder) are checked when used, not here (a saved
        config whose files have moved, a study step whose encoder a later step makes)."""
        tokens = _WHERE.set(where), _FILES_LATER.set(files_later)
        try:
            return cls(**data)
        finally:
            _WHERE.reset(tokens[0])
            _FILES_LATER.reset(tokens[1])

    @classmethod
    def from_dict(cls, d: dict, saved: bool = False) -> Options:
        """From a config mapping (a --config file, a saved config.yaml); an optional `command`
        key must name this command. `saved`: a run's own config.yaml, whose files (--init,
        --encoder) may have moved since; they are checked when used."""
        if not isinstance(d, dict):
            raise MedsslError(
                f"expected a mapping of {cls.command} options, got {type(d).__name__}"
            )
        d = dict(d)
        named = d.pop("command", cls.command)
        if named != cls.command:
            raise MedsslError(f"this is a `{named}` config, not a `{cls.command}` one")
        return cls.parse(d, files_later=saved)

    def to_dict(self) -> dict:
        """The options as plain YAML/JSON values (lists, not tuples), positionals included."""
        return self.model_dump(mode="json")

    def saved_config(self) -> dict:
        """What a run folder's config.yaml holds: `command` first, then every option."""
        return {"command": self.command} | self.to_dict()


def validation_message(
    exc: ValidationError, command: str, where: Callable[[str], str] | None = None
) -> str:
    """One line from a pydantic error: each problem named by its option and what was given."""
    where = where or (lambda key: "--" + key.replace("_", "-"))
    unknown = sorted(str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden")
    parts = []
    if unknown:
        source = where(unknown[0]).split(": ")[0] if ": " in where(unknown[0]) else ""
        parts.append(f"{source + ': ' if source else ''}unknown {command} options {unknown}")
    for e in exc.errors():
        if e["type"] == "extra_forbidden":
            continue
        loc = [str(x) for x in e["loc"]]
        label = where(loc[0]) + "".join(f"[{x}]" for x in loc[1:]) if loc else command
        msg = e["msg"].removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        got = e.get("input")
        shown = "" if e["type"] == "value_error" or isinstance(got, dict) else f" (got {got!r})"
        parts.append(f"{label}: {msg}{shown}")
    return "; ".join(parts)


_WHERE: ContextVar[Callable[[str], str] | None] = ContextVar("where", default=None)
_FILES_LATER: ContextVar[bool] = ContextVar("files_later", default=False)


def _check_file_option(value: str, name: str, keywords: tuple[str, ...]) -> None:
    if value in keywords:
        return
    try:
        _path(value)
    except ValueError as exc:
        raise MedsslError(f"--{name} {value!r}: {exc}") from None
    if _FILES_LATER.get():
        return
    if not Path(value).is_file():
        raise MedsslError(f"--{name} {value}: no such file (or use {' / '.join(keywords)})")


def augment_config(name: str, overrides: dict | None = None) -> AugmentConfig:
    """A named preset (`medssl.catalog.PRESETS`) with some of its fields replaced, each override
    checked against the field's type (pydantic, as every option) and range (unknown fields are a
    clear error)."""
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        raise MedsslError(f"augment_overrides must be a mapping of fields, got {overrides!r}")
    known = catalog.field_names()
    unknown = sorted(str(k) for k in overrides if k not in known)
    if unknown:
        raise MedsslError(f"unknown augment_overrides {unknown}; known: {sorted(known)}")
    try:
        return TypeAdapter(AugmentConfig).validate_python(
            catalog.preset(name).to_dict() | overrides
        )
    except ValidationError as exc:
        msg = validation_message(exc, "augment", lambda k: f"augment_overrides.{k}")
        raise MedsslError(msg) from None


# ---- the commands ----


class TrainConfig(Options):
    command: ClassVar[str] = "train"
    summary: ClassVar[str] = "fine-tune a ResNet-18 classifier (head-only or all layers)"
    description: ClassVar[str] = (
        "Fine-tune a ResNet-18 on a binary MedMNIST dataset; choose the model on validation "
        "AUROC; write config, history, checkpoint, metrics, predictions and plots to --out."
    )
    flags: ClassVar[tuple[str, ...]] = Options.flags + ("resume",)

    dataset: Dataset = "breastmnist"
    data_root: DataRoot = None
    out: OutDir = "runs/train"
    mode: Literal["all", "head"] = opt(
        "all", "`all`: fine-tune everything; `head`: frozen encoder and BN statistics"
    )
    init: str = opt(
        "scratch",
        "`scratch` \\| `imagenet` (torchvision weights from the torch cache or a download) \\| "
        "PATH: a torchvision ResNet-18 `.pth` or a medssl `.safetensors` encoder/classifier",
    )
    loss: Literal["bce", "weighted-bce"] = opt(
        "bce",
        "`bce` \\| `weighted-bce` (w_c = N / (2 N_c), proportional to 1/N_c; unset: the "
        "dataset's recipe)",
        shown="per dataset",
    )
    lr: float = opt(
        1e-3, "peak learning rate (unset: the dataset's recipe)", shown="per dataset", gt=0, le=10
    )
    encoder_lr_scale: float = opt(
        1.0, "encoder LR = lr × this (e.g. 0.1 from an SSL encoder)", ge=0, le=100
    )
    weight_decay: float = opt(
        1e-4,
        "lambda on conv/linear weights (unset: the dataset's recipe)",
        shown="per dataset",
        ge=0,
        le=10,
    )
    decay: Literal["decoupled", "l2"] = opt(
        "decoupled", "`decoupled` (AdamW) \\| `l2` (Adam, lambda/2 ‖w‖² added to the loss)"
    )
    lr_schedule: Schedule = opt(
        "cosine",
        "`cosine` \\| `exp` \\| `constant` (per epoch, after warm-up; unset: the dataset's recipe)",
        shown="per dataset",
    )
    gamma: float = opt(0.9, "exp schedule factor: lr_t = lr × gamma^t", gt=0, le=1)
    warmup_epochs: int = opt(0, "linear warm-up epochs", ge=0, le=100000)
    epochs: int | None = opt(
        None,
        "training epochs (unset: the dataset's recipe; BreastMNIST 20, PneumoniaMNIST 20)",
        shown="per dataset",
        ge=1,
        le=100000,
    )
    batch_size: int = opt(
        128,
        "batch size (images per step, >= 2 for BatchNorm; unset: the dataset's recipe)",
        shown="per dataset",
        ge=2,
        le=65536,
    )
    seed: Seed = opt(0, "seed of init, shuffling, augmentation and label subsampling")
    label_fraction: float = opt(
        1.0, "stratified seeded fraction of the training labels, in (0, 1]", gt=0, le=1
    )
    positive_class: PositiveClass = None
    stem: Stem | None = opt(
        None,
        "`imagenet` \\| `compact` \\| `cifar`; unset = the dataset's default: BreastMNIST "
        "`compact`, PneumoniaMNIST `imagenet`; an `--init` `.safetensors` file brings its own stem",
        shown="per dataset",
    )
    size: Size = 28
    resize: Resize = None
    intensity: Intensity = "bits"
    window: Window = None
    aspect: Aspect = "pad"
    augment: str = opt(
        "light",
        "augmentation preset: `none` \\| `light` \\| `simclr-xray` \\| `simclr-ultrasound` "
        "(unset: the dataset's recipe)",
        shown="per dataset",
    )
    augment_overrides: dict = opt(
        {}, "config files only: preset fields to replace, e.g. `{rotation: 5}`", shown="{}"
    )
    precision: Precision = opt(
        "auto",
        "`auto` (bf16 where the hardware has it) \\| `fp32` \\| `bf16` (unset: the dataset's "
        "recipe)",
        shown="per dataset",
    )
    device: Device = "auto"
    eval_batch_size: EvalBatch = 512
    n_bins: NBins = 15
    download: Download = False
    verify_md5: VerifyMd5 = False
    progress: Progress = True
    tensorboard: Tensorboard = True
    mlflow: Mlflow = None

    _stem_from_init: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _resolve(self) -> TrainConfig:
        _check_file_option(self.init, "init", ("scratch", "imagenet"))
        # an `--init` encoder file brings its own stem: commands.train.resolve reads it
        self._stem_from_init = self.stem is None and self.init.endswith(".safetensors")
        for key, value in catalog.recipe(self.dataset).items():  # the recipe fills what is unset
            if getattr(self, key) is None or key not in self.model_fields_set:
                setattr(self, key, value)
        self.augment_config()  # validates preset and overrides
        return self

    def augment_config(self) -> AugmentConfig:
        return augment_config(self.augment, self.augment_overrides)


class PretrainConfig(Options):
    command: ClassVar[str] = "pretrain"
    summary: ClassVar[str] = (
        "self-supervised pretraining (SimCLR, MoCo, BYOL, ...) on unlabeled images"
    )
    description: ClassVar[str] = (
        "Pretrain the ResNet-18 encoder on the training images (labels unused) with a "
        "self-supervised method (SimCLR by default; MoCo v2, BYOL, SimSiam, Barlow Twins, "
        "VICReg, DINO); a kNN monitor on validation shows progress. Writes encoder.safetensors "
        "for `medssl train --init` and `medssl probe --encoder`. Multi-GPU/-node: launch with "
        "torchrun."
    )
    flags: ClassVar[tuple[str, ...]] = Options.flags + ("resume",)

    dataset: Dataset = "breastmnist"
    data_root: DataRoot = None
    out: OutDir = "runs/pretrain"
    unlabeled: PoolSources = opt(
        None,
        "comma-separated images to pretrain on instead of the dataset's training split: "
        "MedMNIST names (their training split), image folders (any depth), .npz/.npy arrays; "
        "the kNN monitor still uses the dataset's labels",
        shown="the dataset's train split",
    )
    method: Literal[METHOD_NAMES] = opt(
        "simclr",
        "`simclr` \\| `moco` (v2) \\| `byol` \\| `simsiam` \\| `barlow` (Barlow Twins) "
        "\\| `vicreg` \\| `dino`; each method's recipe: docs/methods.md",
    )
    epochs: int = opt(100, "pretraining epochs", ge=1, le=100000)
    batch_size: int = opt(
        256, "images per step (2 views each; >= 2: the losses compare samples)", ge=2, le=65536
    )
    lr: float | None = opt(
        None, "AdamW peak learning rate (unset: the method's)", shown="by method", gt=0, le=10
    )
    weight_decay: float | None = opt(
        None, "lambda on conv/linear weights (unset: the method's)", shown="by method", ge=0, le=10
    )
    temperature: float | None = opt(
        None,
        "temperature tau > 0 of NT-Xent (SimCLR) and InfoNCE (MoCo); DINO's student "
        "temperature (unset: the method's)",
        shown="by method",
        gt=0,
        le=100,
    )
    momentum: float | None = opt(
        None,
        "base momentum of the EMA teacher (MoCo, BYOL, DINO; BYOL and DINO raise it to 1 on a "
        "cosine; unset: the method's)",
        shown="by method",
        ge=0,
        lt=1,
    )
    queue_size: int | None = opt(
        None,
        "MoCo's queue of negatives (at most the training images; unset: the method's)",
        shown="by method",
        ge=0,
        le=10**6,
    )
    lr_schedule: Schedule = "cosine"
    gamma: float = opt(0.98, "exp schedule factor: lr_t = lr × gamma^t", gt=0, le=1)
    warmup_epochs: int = opt(5, "linear warm-up epochs", ge=0, le=100000)
    stem: Stem = "imagenet"
    proj_dims: (
        Annotated[list[Annotated[int, Field(ge=1, le=65536)]], BeforeValidator(_comma_list)] | None
    ) = opt(
        None,
        "projection MLP sizes d,hidden...,k (d = 512; unset: the method's)",
        shown="by method",
    )
    sync_bn: bool = opt(False, "SyncBatchNorm across torchrun processes")
    augment: str | None = opt(
        None,
        "augmentation preset (unset: the modality's SimCLR preset, `simclr-ultrasound` or "
        "`simclr-xray`)",
        shown="by modality",
    )
    augment_overrides: dict = opt(
        {}, "config files only: preset fields to replace, e.g. `{rotation: 5}`", shown="{}"
    )
    seed: Seed = opt(0, "seed of init, shuffling and augmentation")
    size: Size = 28
    resize: Resize = None
    intensity: Intensity = "bits"
    window: Window = None
    aspect: Aspect = "pad"
    precision: Precision = "auto"
    device: Device = "auto"
    knn_k: int = opt(20, "neighbours of the kNN monitor", ge=1, le=10000)
    knn_every: int = opt(1, "epochs between kNN monitor evaluations (0: never)", ge=0, le=100000)
    knn_labels: int = opt(
        50,
        "labelled training images in the few-label kNN monitor's bank (stratified, mean of 3 "
        "subsets; 0: off)",
        ge=0,
        le=10**7,
    )
    eval_batch_size: EvalBatch = 512
    download: Download = False
    verify_md5: VerifyMd5 = False
    progress: Progress = True
    tensorboard: Tensorboard = True
    mlflow: Mlflow = None

    @field_validator("proj_dims")
    @classmethod
    def _proj_dims(cls, dims: list[int] | None) -> list[int] | None:
        if dims is not None and (len(dims) < 2 or dims[0] != 512):
            raise ValueError("must start with 512 (the encoder's features) and have >= 2 sizes")
        return dims

    @model_validator(mode="after")
    def _resolve(self) -> PretrainConfig:
        if self.augment is None:
            self.augment = catalog.MODALITY_PRESETS[catalog.modality(self.dataset)]
        self.augment_config()
        for key, value in catalog.METHODS[self.method].recipe.items():  # fills what is unset
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self

    def projection_dims(self) -> tuple[int, ...]:
        return tuple(self.proj_dims)

    def augment_config(self) -> AugmentConfig:
        return augment_config(self.augment, self.augment_overrides)


def _finite_positive(values: list[float]) -> list[float]:
    if any(not (math.isfinite(v) and 1e-8 <= v <= 1e8) for v in values):
        raise ValueError(f"must be numbers from 1e-8 to 1e8, got {values}")
    return values


class ProbeConfig(Options):
    command: ClassVar[str] = "probe"
    summary: ClassVar[str] = "linear probes on frozen features at several label fractions"
    description: ClassVar[str] = (
        "Extract frozen features once, then fit L2 logistic regressions on stratified label "
        "subsets (C chosen on validation AUROC) and report test AUROC, balanced accuracy and "
        "ECE, mean ± std over seeds."
    )
    flags: ClassVar[tuple[str, ...]] = Options.flags + ("resume",)

    encoder: str = opt(
        "random",
        "`random` \\| `imagenet` \\| PATH (medssl `.safetensors` encoder or classifier, or a "
        "torchvision `.pth`)",
    )
    dataset: Dataset = "breastmnist"
    data_root: DataRoot = None
    out: OutDir = "runs/probe"
    label_fractions: Annotated[
        list[Annotated[float, Field(gt=0, le=1)]],
        BeforeValidator(_comma_list),
        Field(min_length=1, max_length=100),
    ] = opt(
        [0.01, 0.05, 0.1, 0.2, 1.0],
        "comma-separated label fractions in (0, 1]",
        shown="0.01,0.05,0.1,0.2,1",
    )
    seeds: Annotated[
        list[Seed], BeforeValidator(_comma_list), Field(min_length=1, max_length=1000)
    ] = opt([0, 1, 2], "comma-separated seeds of the label subsets", shown="0,1,2")
    c_grid: Annotated[
        list[float],
        BeforeValidator(_comma_list),
        AfterValidator(_finite_positive),
        Field(min_length=1, max_length=100),
    ] = opt(
        [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0],
        "comma-separated inverse L2 strengths C tried, chosen on val AUROC",
        shown="0.0001,0.001,0.01,0.1,1,10,100",
    )
    max_iter: int = opt(2000, "max iterations of each logistic regression", ge=1, le=10**6)
    stem: Stem = opt("imagenet", "stem of `random`/`imagenet` encoders (files bring their own)")
    positive_class: PositiveClass = None
    size: Size = 28
    resize: Resize = None
    intensity: Intensity = "bits"
    window: Window = None
    aspect: Aspect = "pad"
    precision: Precision = "auto"
    device: Device = "auto"
    eval_batch_size: EvalBatch = 512
    n_bins: NBins = 15
    embedding: bool = opt(True, "no t-SNE map of the test features (config: `embedding: false`)")
    progress: Progress = True
    tensorboard: Tensorboard = True

    @model_validator(mode="after")
    def _check(self) -> ProbeConfig:
        _check_file_option(self.encoder, "encoder", ("random", "imagenet"))
        return self

    def fractions(self) -> list[float]:
        return list(self.label_fractions)

    def seed_list(self) -> list[int]:
        return list(self.seeds)

    def cs(self) -> list[float]:
        return sorted(self.c_grid)


class StudyConfig(Options):
    command: ClassVar[str] = "study"
    summary: ClassVar[str] = "the whole comparison on one dataset, resumable, with an HTML report"
    description: ClassVar[str] = (
        "Supervised head-only / fine-tune-all / weighted BCE, SimCLR pretraining, SSL and "
        "random-encoder probes and SSL / scratch fine-tuning at the label fractions, evaluation "
        "of the best models; writes report.html (self-contained), report.md and summary.json. "
        "After an interruption, add --resume to continue. Budgets: quick (minutes on a 2-core "
        "CPU, 1 seed, fractions 0.1 and 1), standard (3 seeds, 5 fractions, default recipes), "
        "full."
    )
    flags: ClassVar[tuple[str, ...]] = Options.flags + ("resume",)

    dataset: Dataset = "breastmnist"
    data_root: DataRoot = None
    out: OutDir = "runs/study"
    budget: Literal["quick", "standard", "full", "smoke"] = opt(
        "quick", "`quick` \\| `standard` \\| `full` \\| `smoke` (see the budgets below)"
    )
    methods: Annotated[
        list[Literal[METHOD_NAMES]],
        BeforeValidator(_methods),
        Field(min_length=1),
    ] = opt(
        ["simclr"],
        "comma-separated SSL methods to pretrain and compare (`all`: the seven), e.g. "
        "`simclr,byol`",
        shown="simclr",
    )
    positive_class: PositiveClass = None
    pretrain_on: PoolSources = opt(
        None,
        "pretrain on these sources instead of the dataset's training split (as `pretrain "
        "--unlabeled`): cross-dataset transfer",
        shown="the dataset's train split",
    )
    intensity: Intensity = "bits"
    window: Window = None
    aspect: Aspect = "pad"
    external: ExternalSources = opt(
        None,
        "comma-separated labelled sets to validate the best models on (as `evaluate RUN "
        "--dataset`): MedMNIST names (their test split), folders, .csv or .npz files",
        shown="none",
    )
    device: Device = "auto"
    mlflow: Mlflow = None
    progress: Progress = True


def _space(value: Any) -> Any:
    """'stem=imagenet,compact; lr=1e-3,1e-2' -> {'stem': ['imagenet', 'compact'], 'lr': [...]}."""
    if isinstance(value, dict):  # from a YAML config: scalars or lists
        return {str(k).replace("-", "_"): _comma_list(v) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    out = {}
    for part in filter(str.strip, value.split(";")):
        key, sep, choices = part.partition("=")
        if not sep:
            raise ValueError(f"{part.strip()!r} is not KEY=VALUE[,VALUE...]")
        out[key.strip().replace("-", "_")] = _comma_list(choices)
    return out


def _check_space(space: dict[str, list] | None) -> dict[str, list] | None:
    """Each key a searched recipe field; choices from its own list; rates: one or two bounds."""
    for key, values in (space or {}).items():
        if key not in TUNE_SPACE:
            raise ValueError(f"{key!r} is not searched; keys: {', '.join(TUNE_SPACE)}")
        if not values:
            raise ValueError(f"{key}: give at least one value")
        if key in TUNE_RANGES:
            try:
                bounds = sorted(float(v) for v in values)
            except (TypeError, ValueError):
                raise ValueError(f"{key}: bounds must be numbers, got {values}") from None
            if len(bounds) > 2 or not all(math.isfinite(b) and 0 < b <= 10 for b in bounds):
                raise ValueError(f"{key}: one value or two bounds in (0, 10], got {values}")
            space[key] = bounds
            continue
        kind = type(TUNE_SPACE[key][0])
        try:
            chosen = {kind(v) for v in values}
        except (TypeError, ValueError):
            raise ValueError(f"{key}: {values} are not {kind.__name__}s") from None
        if key == "epochs":
            if min(chosen) < 1:
                raise ValueError("epochs must be >= 1")
            space[key] = sorted(chosen)
            continue
        if not chosen <= set(TUNE_SPACE[key]):
            raise ValueError(f"{key}: choose from {', '.join(map(str, TUNE_SPACE[key]))}")
        space[key] = [v for v in TUNE_SPACE[key] if v in chosen]
    return space


class TuneConfig(Options):
    command: ClassVar[str] = "tune"
    summary: ClassVar[str] = "search training recipes by cross-validation (Optuna), resumable"
    description: ClassVar[str] = (
        "Search supervised recipes (stem, epochs, LR, weight decay, schedule, augmentation, "
        "loss, batch size) with Optuna's TPE sampler. Each trial is scored by stratified k-fold "
        "cross-validation AUROC on train+val (the test split is never read), its epoch chosen "
        "on an inner validation slice; hopeless trials are pruned after a fold. Writes "
        "trials.csv, pareto.png (AUROC against training time) and recipe.yaml (the fastest "
        "recipe within one standard error of the best), which `medssl train --config` takes. "
        "Several processes (or machines) share one search through --storage."
    )
    flags: ClassVar[tuple[str, ...]] = Options.flags + ("resume",)

    dataset: Dataset = "breastmnist"
    data_root: DataRoot = None
    out: OutDir = "runs/tune"
    positive_class: PositiveClass = None
    trials: int = opt(30, "trials to finish (complete or pruned), all processes together", ge=1)
    folds: int = opt(5, "k of the stratified k-fold cross-validation", ge=2, le=20)
    repeats: int = opt(1, "repetitions of the k folds with other splits and seeds", ge=1, le=10)
    max_epochs: int = opt(50, "largest number of epochs a trial may use", ge=1, le=1000)
    space: Annotated[
        dict[str, list] | None, BeforeValidator(_space), AfterValidator(_check_space)
    ] = opt(
        None,
        "narrow the search: `KEY=V[,V...]` joined by `;`, e.g. `stem=imagenet,compact; "
        "epochs=5,10; lr=1e-3,1e-2` (choices for a key, or one value / two bounds for lr and "
        "weight_decay; unset keys search everything, docs/commands/tune.md)",
    )
    storage: MaybePath = opt(
        None,
        "Optuna storage shared by several processes: a journal file path or a database URL "
        "(unset: OUT/journal.log)",
        shown="OUT/journal.log",
    )
    study_name: str = opt("medssl-tune", "name of the search inside the storage")
    seed: Seed = opt(0, "seed of the sampler and of the folds")
    device: Device = "auto"
    progress: Progress = True

    @model_validator(mode="after")
    def _check(self) -> TuneConfig:
        epochs = (self.space or {}).get("epochs")
        if epochs and min(epochs) > self.max_epochs:
            raise ValueError(f"--space epochs: none of {epochs} is <= --max-epochs")
        return self


class AugmentPreviewConfig(Options):
    command: ClassVar[str] = "augment-preview"
    summary: ClassVar[str] = "save a grid of augmented views of real images"
    description: ClassVar[str] = (
        "Draw views of training images with an augmentation preset and save them as a PNG grid, "
        "to see what the family does."
    )

    dataset: Dataset = "breastmnist"
    data_root: DataRoot = None
    augment: str | None = opt(
        None, "preset (unset: the modality's SimCLR one)", shown="by modality"
    )
    images: int = opt(6, "images (rows), 1-64", ge=1, le=64)
    views: int = opt(7, "views per image, 1-32", ge=1, le=32)
    seed: Seed = opt(0, "seed of the image choice and the views")
    out: Annotated[str, AfterValidator(_not_blank)] = opt(
        "augment_preview.png", "PNG file to write"
    )

    @model_validator(mode="after")
    def _check(self) -> AugmentPreviewConfig:
        if self.augment is None:
            self.augment = catalog.MODALITY_PRESETS[catalog.modality(self.dataset)]
        catalog.preset(self.augment)
        return self


class DataConfig(Options):
    command: ClassVar[str] = "data"
    summary: ClassVar[str] = "list datasets, verify local files, download, export sample PNGs"
    description: ClassVar[str] = (
        "List the supported datasets with label meanings and the default positive class; with "
        "their files present, check the official MD5 and show the class balance per split. "
        "--download fetches missing files through medmnist (needs network); --export-samples "
        "DIR writes a few PNGs per class."
    )

    dataset: Annotated[str | None, AfterValidator(lambda v: v if v is None else _dataset(v))] = opt(
        None, "one dataset (unset: all)", shown="all"
    )
    data_root: DataRoot = None
    size: Size = 28
    download: bool = opt(False, "download missing files (needs network)")
    export_samples: MaybePath = opt(None, "folder for sample PNGs (new or empty)")
    export: MaybePath = opt(
        None,
        "write the dataset (one MedMNIST name) as a folder tree "
        "DIR/{train,val,test}/{class}/*.png plus DIR/labels.csv (a new or empty folder)",
    )


class EvaluateConfig(Options):
    command: ClassVar[str] = "evaluate"
    summary: ClassVar[str] = "calibration, CIs and operating points of a finished classifier run"
    description: ClassVar[str] = (
        "Temperature scaling fitted on validation (ECE equal-width and equal-mass, NLL, Brier "
        "before/after), AUROC and average precision with seeded bootstrap 95% CIs, and "
        "operating points chosen on validation, reported on test. Writes evaluation.json, "
        "evaluation.md, reliability_temperature.png, pr.png (and, with images, "
        "error_gallery.png, robustness.png). With --dataset SOURCE: external validation of "
        "another labelled set, written to RUN/external/NAME/."
    )
    positionals: ClassVar[dict[str, str | None]] = {"run_dir": None}

    run_dir: Annotated[str, AfterValidator(_not_blank)] = opt(
        "", "a finished `medssl train` run folder"
    )
    n_bootstrap: int = opt(1000, "bootstrap resamples, 1-100000", ge=1, le=100000)
    seed: Seed = opt(0, "bootstrap seed")
    target_sensitivity: float = opt(
        0.9, "sensitivity the val-chosen operating point must reach, in (0, 1]", gt=0, le=1
    )
    target_fpr: float = opt(
        0.1,
        "false-positive rate the val-chosen operating point may not exceed, in [0, 1)",
        ge=0,
        lt=1,
    )
    images: bool = opt(
        True,
        "skip the error gallery and robustness suite: predictions.csv only (config: "
        "`images: false`)",
    )
    gallery_k: int = opt(6, "false positives and false negatives shown, 0-50", ge=0, le=50)
    dataset: Annotated[str | None, AfterValidator(lambda v: v if v is None else _dataset(v))] = opt(
        None,
        "external validation: score this labelled set (a MedMNIST name: its test split; a "
        "folder, .csv or .npz with the run's classes) with the run's preprocessing, "
        "temperature and val-chosen thresholds; writes RUN/external/NAME/ only",
        shown="the run's own test split",
    )


class PredictConfig(Options):
    command: ClassVar[str] = "predict"
    summary: ClassVar[str] = "score new images with a trained classifier run"
    description: ClassVar[str] = (
        "Apply a finished `medssl train` run's best model to new images: image files (PNG, "
        "JPEG, BMP, TIFF, 16-bit, DICOM), folders of them, .npy arrays or .npz files "
        "(FILE.npz:KEY picks an array, e.g. pneumoniamnist.npz:test_images). Images go through "
        "the run's recorded preprocessing (the same as training's). Writes a CSV with the "
        "logit and "
        "probability of the positive class per image; after `medssl evaluate`, also the "
        "temperature-scaled probability and the decision at each operating point chosen on "
        "validation."
    )
    positionals: ClassVar[dict[str, str | None]] = {"run_dir": None, "inputs": "+"}

    run_dir: Annotated[str, AfterValidator(_not_blank)] = opt(
        "", "a finished `medssl train` run folder"
    )
    inputs: Annotated[list[Annotated[str, AfterValidator(_not_blank)]], Field(min_length=1)] = opt(
        [], "image files, folders, `.npy` or `.npz[:KEY]` files"
    )
    out: Annotated[str, AfterValidator(_not_blank)] = opt(
        "predictions-new.csv", "CSV file to write (a new file, or one predict wrote)"
    )
    device: Device = "auto"


class CompareConfig(Options):
    command: ClassVar[str] = "compare"
    summary: ClassVar[str] = "table of finished runs (mean ± std over seeds of one recipe)"
    description: ClassVar[str] = "Print a Markdown table of the metrics of finished train runs."
    positionals: ClassVar[dict[str, str | None]] = {"runs": "+"}

    runs: Annotated[list[Annotated[str, AfterValidator(_not_blank)]], Field(min_length=1)] = opt(
        [], "finished `medssl train` run folders"
    )
    split: Literal["val", "test"] = opt("test", "`val` \\| `test`")
    per_run: bool = opt(False, "one row per run, no aggregation over seeds")


class CompletionConfig(Options):
    command: ClassVar[str] = "completion"
    summary: ClassVar[str] = "print a shell completion script (bash, zsh or tcsh)"
    description: ClassVar[str] = (
        "Print a completion script for medssl's commands and options, made by shtab from this "
        "parser. bash: `medssl completion bash > ~/.local/share/bash-completion/completions/"
        'medssl`; zsh: `medssl completion zsh > "${fpath[1]}/_medssl"`.'
    )
    flags: ClassVar[tuple[str, ...]] = ("debug",)
    positionals: ClassVar[dict[str, str | None]] = {"shell": None}

    shell: Literal["bash", "zsh", "tcsh"] = opt("bash", "`bash` \\| `zsh` \\| `tcsh`")


COMMANDS: dict[str, type[Options]] = {
    c.command: c
    for c in (
        StudyConfig,
        TuneConfig,
        DataConfig,
        TrainConfig,
        PretrainConfig,
        ProbeConfig,
        AugmentPreviewConfig,
        EvaluateConfig,
        PredictConfig,
        CompareConfig,
        CompletionConfig,
    )
}

# Flags that are not options (never saved in config.yaml), with their help.
FLAG_HELP = {
    "config": "YAML file of options (command-line options override)",
    "print_config": "print the fully resolved options as YAML and exit (runs nothing)",
    "debug": "show tracebacks on errors",
    "resume": "continue this command's interrupted run in `--out`",
}
# Options whose value is a path: shell completion offers file names.
PATH_OPTIONS = {
    "data_root",
    "out",
    "init",
    "encoder",
    "run_dir",
    "inputs",
    "runs",
    "config",
    "export_samples",
}


# ---- what the parser and the docs show ----


def option_rows(cls: type[Options]) -> list[tuple[str, str, str]]:
    """(flag, shown default, help) of every option and flag of a command, in parser order;
    `medssl.cli` builds the parser from these rows and docs/commands shows them as a table.
    A default shown in backticks is a value; without, a description ('per dataset')."""
    rows = []
    for name, f in cls.model_fields.items():
        if name in cls.positionals or name == "augment_overrides":
            continue
        extra = f.json_schema_extra or {}
        flag = "--" + name.replace("_", "-")
        if f.annotation is bool:
            flag = flag if not f.default else "--no-" + name.replace("_", "-")
            rows.append((flag, "", f.description or ""))
            continue
        shown = extra.get("shown") or ("unset" if f.default is None else f"`{_shown(f.default)}`")
        rows.append((f"{flag} {name.upper()}", str(shown), f.description or ""))
    for flag in cls.flags:
        valued = " FILE" if flag == "config" else ""
        rows.append(("--" + flag.replace("_", "-") + valued, "", FLAG_HELP[flag]))
    return rows


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


TABLE_BEGIN = "<!-- options: generated from src/medssl/options.py by scripts/option_tables.py -->"
TABLE_END = "<!-- end of options -->"


def markdown_table(cls: type[Options]) -> str:
    """The option table of docs/commands/COMMAND.md, between its markers."""
    lines = [TABLE_BEGIN, "", "| option | default | meaning |", "|---|---|---|"]
    for name, nargs in cls.positionals.items():
        text = cls.model_fields[name].description or ""
        shown = name.upper() + (" ..." if nargs == "+" else "")
        lines.append(f"| `{shown}` (positional) | | {text} |")
    for flag, shown, text in option_rows(cls):
        lines.append(f"| `{flag}` | {shown} | {text} |")
    if "augment_overrides" in cls.model_fields:
        lines.append(
            "| `augment_overrides` | `{}` | config files only: a mapping of preset "
            "fields to replace, e.g. `{rotation: 5}` |"
        )
    lines += ["", TABLE_END]
    return "\n".join(lines)
