"""Reading and writing the files of medssl: one writer and one reader per format.

Writers are atomic (a temp file in the same folder, then one `os.replace`) and respect the
user's umask. Readers turn every failure (missing, unreadable, truncated, not that format, not
UTF-8, wrong keys, columns or shapes, a decompression bomb, an empty image) into one MedsslError
line that names the file and what is wrong with it; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from medssl.errors import MedsslError

# Temp files of atomic writes end so; a run folder's stale ones (a killed writer) are removed,
# and nothing else is.
TEMP_SUFFIX = ".medssl-tmp"

# Larger images are refused before their pixels are decoded (a PNG header can claim
# 30000 x 30000 in a few bytes). 64 Mpx is ~45x a 1200 x 1200 radiograph.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def expand(path: str | os.PathLike) -> Path:
    """`path` with ~ expanded; a path that cannot be a file name is one MedsslError line."""
    text = os.fspath(path)
    if "\0" in text:
        raise MedsslError(f"{text!r}: a path cannot hold a NUL character")
    try:
        return Path(text).expanduser()
    except RuntimeError as exc:  # ~user of an unknown user
        raise MedsslError(f"{text}: {exc}") from None


# ---- writing ----


def _file_mode() -> int:
    """0o666 minus the process umask: what open() would have given the file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp (and some writers) make 0600: give the file the mode open() would have, so a
        # report copied to a shared folder or web server stays readable.
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def write_yaml(path: Path | str, obj: object) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False, allow_unicode=True))


def write_jsonl(path: Path | str, rows: list[dict]) -> None:
    """Rewrite a JSON-lines file atomically (histories: one row per epoch)."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def write_csv(path: Path | str, rows: list[dict]) -> None:
    """Write a list of flat dicts as CSV atomically (columns from the first row)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buf.getvalue())


# ---- reading ----


def short_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def reading(path: Path | str, what: str) -> Iterator[None]:
    """Turn any failure while reading `path` into one line: '{path}: {what} ...'."""
    try:
        yield
    except MedsslError:
        raise
    except FileNotFoundError:
        raise MedsslError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise MedsslError(f"{path}: is a folder, expected {what}") from None
    except PermissionError:
        raise MedsslError(f"{path}: permission denied reading {what}") from None
    except UnicodeDecodeError:
        raise MedsslError(f"{path}: {what} is not UTF-8 text") from None
    except MemoryError:
        raise MedsslError(f"{path}: {what} is too large to read") from None
    except Exception as exc:  # every parser has its own exception types; all mean "bad file"
        raise MedsslError(f"{path}: not a readable {what} ({short_error(exc)})") from None


def read_text(path: Path | str, what: str = "text file") -> str:
    with reading(path, what):
        return Path(path).read_text(encoding="utf-8")


class _SafeUniqueLoader(yaml.SafeLoader):
    """yaml's safe loader that refuses a key given twice in one mapping (the second would win
    silently)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.append(key)
    return loader.construct_mapping(node, deep)


_SafeUniqueLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: Path | str, what: str = "YAML file") -> dict:
    """A YAML mapping with string keys, read with the safe loader (no object construction, no
    duplicate keys)."""
    text = read_text(path, what)
    try:
        data = yaml.load(text, Loader=_SafeUniqueLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        short = short_error(exc).split(" in ")[0]
        raise MedsslError(f"{path}: cannot read YAML ({short})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise MedsslError(f"{path}: expected a YAML mapping of options (key: value lines)")
    return data


def read_json(path: Path | str, what: str = "JSON file", require: tuple[str, ...] = ()) -> dict:
    """A JSON object holding at least the keys `require`."""
    text = read_text(path, what)
    with reading(path, what):
        data = json.loads(text)
    return _mapping(path, what, data, require, "is not a JSON object")


def _mapping(path, what: str, data: Any, require: tuple[str, ...], not_dict: str) -> dict:
    if not isinstance(data, dict):
        raise MedsslError(f"{path}: {what} {not_dict}")
    missing = [k for k in require if k not in data]
    if missing:
        raise MedsslError(f"{path}: {what} lacks {missing} (another tool's file, or damaged)")
    return data


def read_jsonl(path: Path | str, what: str = "JSON-lines file") -> list[dict]:
    """One JSON object per non-empty line."""
    rows = []
    for i, line in enumerate(read_text(path, what).splitlines(), 1):
        if line.strip():
            with reading(f"{path}:{i}", what):
                row = json.loads(line)
            if not isinstance(row, dict):
                raise MedsslError(f"{path}:{i}: {what} line is not a JSON object")
            rows.append(row)
    return rows


def read_csv(path: Path | str, columns: dict[str, type], what: str = "CSV file") -> list[dict]:
    """Rows of a CSV file with at least `columns`, each converted to its type (float: finite)."""
    text = read_text(path, what)
    with reading(path, what):
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        raise MedsslError(f"{path}: {what} lacks the columns {missing} (has {header})")
    rows = []
    for i, raw in enumerate(reader, 2):
        row: dict[str, Any] = dict(raw)
        for name, cast in columns.items():
            try:
                row[name] = cast(raw[name])
            except (TypeError, ValueError):
                raise MedsslError(
                    f"{path}:{i}: column {name!r} holds {raw[name]!r}, not a {cast.__name__}"
                ) from None
            if cast is float and not math.isfinite(row[name]):
                raise MedsslError(f"{path}:{i}: column {name!r} is not finite ({raw[name]})")
        rows.append(row)
    if not rows:
        raise MedsslError(f"{path}: {what} has no rows")
    return rows


def read_safetensors(path: Path | str, what: str = "model file") -> tuple[dict, dict[str, str]]:
    """(tensors, metadata) of a safetensors file; never unpickles."""
    from safetensors.torch import load_file, safe_open  # torch: not for option parsing

    path = Path(path)
    if not path.is_file():
        raise MedsslError(f"{path}: {what} not found")
    with reading(path, f"safetensors {what}"):
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    return state, meta


def read_torch(path: Path | str, require: tuple[str, ...], what: str = "checkpoint") -> dict:
    """A dict saved by torch.save, loaded with weights_only=True (a pickle payload is refused
    without running), holding the keys `require`."""
    import torch  # the CLI reads --config through this module: parsing stays torch-free

    with reading(path, what), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
        data = torch.load(path, map_location="cpu", weights_only=True)
    return _mapping(path, what, data, require, f"holds a {type(data).__name__}, not a dict")


def read_arrays(path: Path | str, keys: tuple[str, ...] | None = None, what: str = "NumPy file"):
    """{key: array} of a .npz (the `keys` given, all if None) or {'': array} of a .npy file;
    object arrays are refused (they would need unpickling)."""
    import numpy as np  # not needed to parse options

    path = Path(path)
    with reading(path, what):
        if path.suffix == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as z:
            names = list(z.keys())
            missing = [k for k in keys or () if k not in names]
            if missing:
                raise MedsslError(f"{path}: {what} lacks the arrays {missing} (has {names})")
            return {k: z[k] for k in (keys or names)}


def read_image(path: Path | str, mode: str):
    """An image file decoded and converted to PIL `mode` ('L' or 'RGB'), with its pixel count
    checked against MAX_IMAGE_PIXELS before any pixel is decoded."""
    from PIL import Image  # not needed to parse options

    with reading(path, "image"), warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a refusal, not a warning
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise MedsslError(
                    f"{path}: image of {w}x{h} pixels is larger than the "
                    f"{MAX_IMAGE_PIXELS // 2**20} Mpx medssl reads (a decompression bomb?)"
                )
            if w == 0 or h == 0:
                raise MedsslError(f"{path}: empty image ({w}x{h})")
            return img.convert(mode)
