"""DICOM files to 8-bit grey images, as the standard says (pydicom reads and decodes).

Stored pixels -> Modality LUT (Rescale Slope/Intercept or the Modality LUT Sequence, PS3.3
C.11.1) -> VOI: `--window C,W` if given, else the file's VOI LUT Sequence, else its first Window
Center/Width with its VOI LUT Function (PS3.3 C.11.2.1.2, `window_linear`), else a
linear map of the image's own min-max (logged: give --window for CT) -> MONOCHROME1 inverted
-> uint8. RGB / YBR files become grey by ITU-R 601 luma (logged). Refused in one line:
multi-frame files, missing pixel data, palette colour and other photometric interpretations, and
compressed files whose decoder is not installed (the line names the package).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medssl.errors import MedsslError

DECODERS = "pip install 'medssl[dicom]' (pylibjpeg with its libjpeg, openjpeg and rle plugins)"
_GREY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")


def window_linear(x: np.ndarray, centre: float, width: float, function: str = "LINEAR"):
    """DICOM VOI window to [0, 255] (PS3.3 C.11.2.1.2.1 LINEAR, C.11.2.1.3.2 LINEAR_EXACT,
    C.11.2.1.3.1 SIGMOID); docs/math.md §19. float64 in, float64 out (not rounded)."""
    x = np.asarray(x, np.float64)
    c, w = float(centre), float(width)
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if function == "LINEAR_EXACT":
        y = ((x - c) / w + 0.5) * 255.0
        return np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 255.0, y))
    y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0 if w > 1 else np.zeros_like(x)
    lo, hi = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    return np.where(x <= lo, 0.0, np.where(x > hi, 255.0, y))


def dataset(path: Path, pixels: bool = True):
    """The pydicom Dataset of `path` (with `pixels=False`, the header only), or one line."""
    import pydicom  # lazy: only DICOM sources need it
    from pydicom.errors import InvalidDicomError  # lazy: with pydicom above

    try:
        return pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError:
        raise MedsslError(f"{path}: not a DICOM file (no DICM preamble)") from None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as exc:
        msg = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise MedsslError(f"{path}: corrupt DICOM file ({msg})") from None


def patient_id(path: Path) -> str | None:
    """PatientID of a DICOM file's header, blank -> None."""
    value = str(dataset(path, pixels=False).get("PatientID", "") or "").strip()
    return value or None


def _pixels(ds, path: Path) -> np.ndarray:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise MedsslError(f"{path}: multi-frame DICOM ({frames} frames); save one frame per file")
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError) as exc:
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        if "plugin" in str(exc).lower() or "decod" in str(exc).lower():
            raise MedsslError(f"{path}: no decoder for {name} here; {DECODERS}") from None
        raise MedsslError(f"{path}: pixel data cannot be decoded ({name})") from None
    except (ValueError, OSError, EOFError, AttributeError, KeyError, TypeError) as exc:
        msg = " ".join(str(exc).split())[:100] or type(exc).__name__
        raise MedsslError(f"{path}: corrupt pixel data ({msg})") from None


def _voi(x: np.ndarray, ds, window, tags: list[str]) -> np.ndarray:
    """Modality-LUT values to [0, 255] floats by the window given, the file's VOI, or the range."""
    from pydicom.pixels import apply_voi  # lazy: pydicom for DICOM only

    if window is not None:
        tags.append(f"DICOM window {window[0]:g},{window[1]:g} (--window)")
        return window_linear(x, *window)
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        item = ds.VOILUTSequence[0]
        lut_bits = int(item.LUTDescriptor[2])
        tags.append("DICOM VOI LUT")
        return apply_voi(x, ds).astype(np.float64) * 255.0 / (2.0**lut_bits - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        c, w = (
            float(v[0]) if hasattr(v, "__len__") else float(v)
            for v in (ds.WindowCenter, ds.WindowWidth)
        )
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if w < 1 or function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
            raise MedsslError(f"window {c:g},{w:g} ({function}) is not valid; give --window C,W")
        tags.append("DICOM window from the file")
        return window_linear(x, c, w, function)
    lo, hi = float(x.min()), float(x.max())  # the stored range would flatten 16-bit CT
    tags.append("DICOM without window: this image's min-max, linear")
    return (x - lo) * 255.0 / (hi - lo) if hi > lo else np.zeros_like(x)


def read(path: Path, window: tuple[float, float] | None, tags: list[str]) -> np.ndarray:
    """A DICOM file as a grey (H, W) uint8 image at its own size (see the module docstring)."""
    from pydicom.pixels import apply_modality_lut  # lazy: pydicom for DICOM only

    ds = dataset(path)
    if "PixelData" not in ds:
        kind = "float pixel data" if "FloatPixelData" in ds else "no pixel data"
        raise MedsslError(f"{path}: {kind}; not an image medssl reads")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    if photometric not in _GREY + _COLOUR:
        raise MedsslError(
            f"{path}: photometric interpretation {photometric or 'missing'} is not "
            "supported (MONOCHROME1/2, RGB, YBR)"
        )
    arr = _pixels(ds, path)
    if photometric in _COLOUR:
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise MedsslError(f"{path}: colour DICOM of shape {arr.shape}; expected (H, W, 3)")
        tags.append("DICOM RGB to grey")
        rgb = arr.astype(np.float64)
        if arr.dtype != np.uint8:
            rgb *= 255.0 / (2.0 ** int(ds.get("BitsStored", 16)) - 1)
        return np.clip(np.rint(rgb @ np.array([0.299, 0.587, 0.114])), 0, 255).astype(np.uint8)
    if arr.ndim != 2:
        raise MedsslError(f"{path}: pixel array of shape {arr.shape}; expected one grey frame")
    try:
        x = np.asarray(apply_modality_lut(arr, ds), np.float64)
        y = _voi(x, ds, window, tags)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:100] or type(exc).__name__
        raise MedsslError(f"{path}: bad Modality or VOI LUT attributes ({msg})") from None
    if photometric == "MONOCHROME1":
        tags.append("MONOCHROME1 inverted")
        y = 255.0 - y
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)
