"""One preprocessing, recorded and replayed: what turns a file or an array into the model's input.

`Preprocessing` is the typed description (intensity mapping, window, aspect policy, size, the
bit depth found in the training images); `prepare` is the one function that applies it to a
decoded image, and `read_file` decodes a file (PNG/JPEG/TIFF/... through Pillow, DICOM through
`medssl.data.dicom`) and prepares it. train, probe, pretrain, evaluate and predict all call these
with the record saved in the run folder (data.json `preprocessing`), so the same file always
becomes the same tensor. docs/own-data.md "Clinical images" shows each mapping on one image.

Order: decode -> intensity to 8 bits (below) -> grey -> aspect (pad | crop | stretch) -> resize
to `size` x `size` with Lanczos (Pillow, antialiased), the one interpolation used everywhere.

Intensity of 16-bit images (8-bit images pass unchanged under `bits` and `range`):
- `bits` (default): keep the top 8 of the bits the training images use: x >> (bits - 8), bits =
  the bit length of the largest training pixel (12-bit data stored in 16 bits keeps its 256
  levels; 8-bit values x 257 or x 16 come back exactly). A run trained on 8-bit images records
  bits = 8; predict and evaluate --dataset then find the bits of the 16-bit files they are given
  (`sources.bits_for_inputs`), and a lone file read with bits 8 uses all 16;
- `range`: linear over the dtype's range, round(x * 255 / 65535);
- `percentile`: per image, linear from its 0.5th to its 99.5th percentile;
- `window`: the fixed window `--window C,W` (DICOM PS3.3 C.11.2.1.2.1, linear).
DICOM files carry their own mapping (`medssl.data.dicom`): Modality LUT, then `--window` or the
file's VOI LUT / window.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medssl.catalog import ASPECTS, INTENSITIES
from medssl.data import dicom
from medssl.data.dicom import window_linear
from medssl.errors import MedsslError
from medssl.io.artifacts import MAX_IMAGE_PIXELS

PERCENTILES = (0.5, 99.5)
DICOM_SUFFIXES = {".dcm", ".dicom"}
_GREY_MODES = ("L", "I", "I;16", "I;16B", "I;16L", "I;16N")


@dataclass(frozen=True)
class Preprocessing:
    """How a decoded image becomes the model's (size, size) uint8 input; saved in data.json."""

    size: int = 28
    intensity: str = "bits"  # bits | range | percentile | window
    window: tuple[float, float] | None = None  # (centre, width): --window, also for DICOM
    aspect: str = "pad"  # pad (to square, black) | crop (centre square) | stretch
    bits: int | None = None  # bits used by the training images (found once, then replayed)
    interpolation: str = "lanczos"

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITIES:
            raise MedsslError(f"intensity {self.intensity!r}: one of {', '.join(INTENSITIES)}")
        if self.aspect not in ASPECTS:
            raise MedsslError(f"aspect {self.aspect!r}: one of {', '.join(ASPECTS)}")
        if self.intensity == "window" and self.window is None:
            raise MedsslError("--intensity window needs --window CENTRE,WIDTH")
        if self.window is not None:
            check_window(*self.window)
        if self.bits is not None and not 8 <= self.bits <= 16:
            raise MedsslError(f"bits {self.bits}: expected 8-16")
        if self.interpolation != "lanczos":
            raise MedsslError(f"interpolation {self.interpolation!r}: medssl resizes with lanczos")

    def record(self) -> dict:
        d = asdict(self)
        d["window"] = list(self.window) if self.window else None
        return d

    @classmethod
    def from_record(cls, d: object, where: str) -> Preprocessing:
        """The record of a run folder's data.json, checked (a foreign file is one line)."""
        try:
            if not isinstance(d, dict):
                raise TypeError
            window = d.get("window")
            fields = dict(d, window=tuple(float(v) for v in window) if window else None)
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise MedsslError(f"{where}: malformed preprocessing record ({exc})") from None
        except MedsslError as exc:
            raise MedsslError(f"{where}: preprocessing record: {exc}") from None

    def with_bits(self, bits: int) -> Preprocessing:
        return replace(self, bits=bits)

    def key(self) -> str:
        """What the decoded cache depends on."""
        w = ",".join(f"{v:g}" for v in self.window) if self.window else "-"
        return f"{self.size}-{self.intensity}-{w}-{self.aspect}-{self.bits}-{self.interpolation}"


def parse_window(value: str | None) -> tuple[float, float] | None:
    """'40,400' -> (40.0, 400.0); None stays None."""
    if value is None:
        return None
    parts = [p.strip() for p in str(value).split(",")]
    try:
        c, w = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{value!r} is not CENTRE,WIDTH (two numbers)") from None
    check_window(c, w)
    return c, w


def check_window(centre: float, width: float) -> None:
    if not (math.isfinite(centre) and math.isfinite(width)):
        raise ValueError("window centre and width must be finite numbers")
    if width < 1:  # PS3.3 C.11.2.1.2.1: the linear function needs width >= 1
        raise ValueError(f"window width {width:g} must be >= 1 (DICOM PS3.3 C.11.2.1.2)")


def to_8bit(a: np.ndarray, prep: Preprocessing, tags: list[str]) -> np.ndarray:
    """One decoded grey image (uint8 or unsigned up to 16 bits) to uint8 by `prep.intensity`
    (docs/math.md §19: bits, range, percentile, window)."""
    if prep.intensity == "window":
        tags.append(f"window {prep.window[0]:g},{prep.window[1]:g}")
        return _round8(window_linear(a, *prep.window))
    if prep.intensity == "percentile":
        lo, hi = np.percentile(a, PERCENTILES)
        tags.append("percentile 0.5-99.5")
        if hi <= lo:
            return np.zeros(a.shape, np.uint8)
        return _round8((a.astype(np.float64) - lo) * 255.0 / (hi - lo))
    if a.dtype == np.uint8:
        return a
    if a.size and int(a.max()) > 65535 or (a.size and int(a.min()) < 0):
        raise MedsslError(f"pixel values outside 0-65535 ({a.dtype}); save as 8 or 16-bit")
    a = a.astype(np.uint32)
    if prep.intensity == "range":
        tags.append("16-bit range to 8-bit")
        return ((a * 255 + 32767) // 65535).astype(np.uint8)
    if prep.bits is None:  # not recorded: this image's own bit length
        bits = max(8, int(a.max()).bit_length()) if a.size else 8
    else:  # a run trained on 8-bit images reads a 16-bit one over all 16 bits
        bits = prep.bits if prep.bits > 8 else 16
    tags.append(f"{bits}-bit to 8-bit (top 8 bits)")
    return np.minimum(a >> (bits - 8), 255).astype(np.uint8)


def _round8(y: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def fit_size(a: np.ndarray, prep: Preprocessing, tags: list[str]) -> np.ndarray:
    """A uint8 (H, W) image to (size, size): the aspect policy, then Lanczos."""
    h, w = a.shape
    if h != w and prep.aspect != "stretch":
        tags.append(f"{prep.aspect} {w}x{h} to square")
        side = max(h, w) if prep.aspect == "pad" else min(h, w)
        if prep.aspect == "pad":
            sq = np.zeros((side, side), np.uint8)
            top, left = (side - h) // 2, (side - w) // 2
            sq[top : top + h, left : left + w] = a
        else:
            top, left = (h - side) // 2, (w - side) // 2
            sq = a[top : top + side, left : left + side]
        a = sq
    if a.shape != (prep.size, prep.size):
        tags.append(f"resized from {a.shape[1]}x{a.shape[0]}")
        a = np.asarray(Image.fromarray(a).resize((prep.size, prep.size), Image.Resampling.LANCZOS))
    return np.ascontiguousarray(a)


def prepare(a: np.ndarray, prep: Preprocessing, tags: list[str] | None = None) -> np.ndarray:
    """A decoded grey image (H, W), uint8 or up to 16-bit, as the model's (size, size) uint8."""
    tags = [] if tags is None else tags
    if a.ndim != 2 or 0 in a.shape:
        raise MedsslError(f"unexpected image shape {a.shape}")
    return fit_size(to_8bit(a, prep, tags), prep, tags)


def is_dicom(path: Path) -> bool:
    """A .dcm/.dicom file, or an extension-less file with the DICM preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def decode_image(path: Path, tags: list[str]) -> np.ndarray:
    """A non-DICOM image file as a grey (H, W) array, uint8 or uint16 (not yet mapped)."""
    with _no_bombs(path), Image.open(path) as im:
        if im.width * im.height > MAX_IMAGE_PIXELS or 0 in im.size:
            raise MedsslError(f"{im.width}x{im.height} pixels: empty or too large to read")
        im.load()
        mode = im.mode
        if mode == "F":
            raise MedsslError("floating-point image; save it as 8 or 16-bit")
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
            tags.append(f"{mode} to grey (alpha dropped)")
            im = im.convert("RGBA").convert("L")
        elif mode not in _GREY_MODES:
            tags.append(f"{mode} to grey")
            im = im.convert("L")
        a = np.asarray(im)
    if a.dtype != np.uint8:
        if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
            raise MedsslError(f"image mode {mode} ({a.dtype}) is not supported; save as 8/16-bit")
        a = a.astype(np.uint16)
    return a


@contextlib.contextmanager
def _no_bombs(path: Path):
    """Pillow's decompression-bomb warning and error as one line (medssl reads <= 64 Mpx)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise MedsslError(
                f"{path}: image larger than the {MAX_IMAGE_PIXELS // 2**20} Mpx medssl reads "
                "(a decompression bomb?)"
            ) from None


def bit_depth(path: Path) -> int:
    """8 or 16: the sample depth of a non-DICOM image, from its header (nothing decoded)."""
    with _no_bombs(path), Image.open(path) as im:
        return 8 if im.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N") else 16


def read_file(path: Path, prep: Preprocessing, tags: list[str] | None = None) -> np.ndarray:
    """One image file as the model's (size, size) uint8, by `prep`; every failure one line."""
    tags = [] if tags is None else tags
    try:
        if is_dicom(path):
            return fit_size(dicom.read(path, prep.window, tags), prep, tags)
        return prepare(decode_image(path, tags), prep, tags)
    except MedsslError as exc:
        msg = str(exc)
        raise MedsslError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        msg = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise MedsslError(f"{path}: not a readable image ({msg})") from None
