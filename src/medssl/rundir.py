"""The run directory: atomic file writes, a lock against two runs in one directory, history."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from medssl.errors import MedsslError


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path | str, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path | str, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def write_yaml(path: Path | str, obj: object) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_yaml(path: Path | str) -> dict:
    """Read a YAML mapping with the safe loader."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MedsslError(f"{path}: cannot read YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MedsslError(f"{path}: expected a YAML mapping of options")
    return data


def config_from_dict(cls, d: dict, command: str):
    """Build the config dataclass `cls` of `command` from a dict (a --config file, a saved
    config.yaml): an optional `command` key must match, unknown keys are a clear error."""
    from dataclasses import fields

    d = dict(d)
    named = d.pop("command", command)
    if named != command:
        raise MedsslError(f"this is a `{named}` config, not a `{command}` one")
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise MedsslError(f"unknown {command} options {sorted(unknown)}")
    return cls(**d)


def write_csv(path: Path | str, rows: list[dict]) -> None:
    """Write a list of flat dicts as CSV atomically (columns from the first row)."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buf.getvalue())


def write_history(path: Path | str, rows: list[dict]) -> None:
    """Rewrite the JSON-lines history atomically (rows are few: one per epoch)."""
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_history(path: Path | str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# Options that may change between a run and its resume: they do not change the numbers.
NOT_COMPARED = ("device", "progress", "tensorboard", "mlflow")


def checkpoint_epoch(out: Path) -> int:
    """The last finished epoch saved in `out/last.pt` (memory-mapped: nothing big is read)."""
    import torch

    return int(
        torch.load(out / "last.pt", map_location="cpu", weights_only=True, mmap=True)["epoch"]
    )


def resume_state(out: Path, options: dict, marker: str, resume: bool, log) -> tuple[bool, dict]:
    """Decide how a run in `out` starts. Returns (resume, finished results).

    A finished run (its `marker` file exists) is returned as is with --resume and refused
    without it; --resume with no checkpoint yet starts from scratch; a real resume requires
    the same options as the saved config.yaml (those in NOT_COMPARED may differ).
    """
    done = out / marker
    if resume and done.is_file():
        log(f"{out} is already finished; nothing to resume")
        return False, json.loads(done.read_text())
    if not resume and done.exists():
        raise MedsslError(f"{out} already holds a finished run; choose another --out")
    if resume and not (out / "last.pt").is_file():
        log(f"--resume: no checkpoint in {out} yet; starting from epoch 0")
        return False, {}
    if resume:
        saved = read_yaml(out / "config.yaml")
        diff = {k for k, v in options.items() if k not in NOT_COMPARED and saved.get(k) != v}
        if diff:
            raise MedsslError(f"--resume: options differ from {out}/config.yaml: {sorted(diff)}")
    return resume, {}


def drop_resume_state(out: Path) -> None:
    """Remove `out/last.pt` once the run's finish marker is written: a finished run is never
    resumed (resume_state returns it as is), and model + AdamW state is ~3x the model (128 MB
    for ResNet-18; 8 GB over a full study's 48 runs)."""
    (out / "last.pt").unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir/.lock` for the duration; refuse if another live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise MedsslError(
                    f"{run_dir} is in use by process {pid}; use another --out"
                ) from None
            lock.unlink(missing_ok=True)  # stale lock from a killed run
    else:
        raise MedsslError(f"{run_dir}: cannot take the run lock")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    for tmp in run_dir.glob(".*.tmp"):  # temp files of a killed writer never became real files
        tmp.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
