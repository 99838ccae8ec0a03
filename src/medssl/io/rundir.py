"""The run folder: who made it, what state it is in, and what a command may do with it.

`RUN_DIR/run.json` names the command that made the folder and its last recorded state; the
command's finish marker (metrics.json, pretrain.json or summary.json, written last) makes a run
finished, and a run whose process is gone (kill -9) reads as interrupted. Folders made before
run.json existed are recognised by the `command:` key of their config.yaml.

The rules (`claim`), checked before anything is written: a command writes only into
- a new or empty folder;
- its own interrupted run, with --resume (with the options saved in its config.yaml);
- its own finished run, where it is a no-op that says so (same options; other options: refused).
Everything else (another command's run, an interrupted run without --resume, a folder in use, a
folder with foreign files, the current folder, an empty --out, a file) is refused in one line
that names the folder and the way out. Commands that add files to a finished run (`evaluate`) or
write one file (`predict`, `augment-preview`) never overwrite a file another command made.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from medssl import __version__
from medssl.errors import MedsslError
from medssl.io.artifacts import (
    TEMP_SUFFIX,
    expand,
    read_json,
    read_text,
    read_yaml,
    write_json,
    write_yaml,
)

RUN_FILE = "run.json"
MARKERS = {
    "train": "metrics.json",
    "pretrain": "pretrain.json",
    "probe": "summary.json",
    "study": "summary.json",
    "tune": "tune.json",
}
# Options that may change between a run and its resume: they do not change the numbers.
NOT_COMPARED = (
    "out",
    "device",
    "progress",
    "tensorboard",
    "mlflow",
    "download",
    "verify_md5",
    "trials",
)
IGNORED = {".DS_Store", "Thumbs.db", ".lock"}
ANOTHER = "choose another --out (a new or empty folder)"


@dataclass(frozen=True)
class Status:
    """What a path holds: kind missing | empty | file | foreign | run; for a run, its owner
    command and state running | interrupted | finished (and the live process, if running)."""

    path: Path
    kind: str
    command: str | None = None
    state: str | None = None
    pid: int | None = None


def status(path: Path) -> Status:
    """Inspect `path` without changing anything."""
    if not path.exists():
        return Status(path, "missing")
    if not path.is_dir():
        return Status(path, "file")
    try:
        entries = [p for p in path.iterdir() if p.name not in IGNORED and not _temp(p)]
    except OSError as exc:
        raise MedsslError(f"{path}: cannot list the folder ({exc.strerror})") from None
    if not entries:
        return Status(path, "empty")
    command = owner(path)
    if command is None:
        return Status(path, "foreign")
    pid = _lock_pid(path)
    if (path / MARKERS[command]).is_file():
        state = "finished"
    elif pid and _alive(pid):
        state = "running"
    else:
        state = "interrupted"
    return Status(path, "run", command, state, pid if state == "running" else None)


def owner(path: Path) -> str | None:
    """The command that made the run folder `path`, or None when it is not a medssl run."""
    if (path / RUN_FILE).is_file():
        command = read_json(path / RUN_FILE, "run record", require=("command",))["command"]
        if not isinstance(command, str) or command not in MARKERS:
            raise MedsslError(f"{path / RUN_FILE}: unknown command {command!r}")
        return command
    if (path / "config.yaml").is_file():  # a run made before run.json existed
        try:
            command = read_yaml(path / "config.yaml").get("command")
        except MedsslError:
            return None
        return command if isinstance(command, str) and command in MARKERS else None
    return None


def enclosing_run(path: Path) -> Path | None:
    """The nearest folder above `path` that is a medssl run folder, if any."""
    try:
        parents = list(path.absolute().parents)
    except (OSError, RuntimeError):
        return None
    for parent in parents:
        if (parent / RUN_FILE).is_file() or (parent / "config.yaml").is_file():
            try:
                if owner(parent):
                    return parent
            except MedsslError:
                return parent  # a damaged run folder is still a run folder
    return None


def _temp(p: Path) -> bool:
    return p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)


def out_path(out: str) -> Path:
    """`--out` as a path, refusing an empty string and the current folder."""
    if not str(out).strip():
        raise MedsslError("--out is empty; name a new folder for the run")
    path = expand(out)
    try:
        here = path.resolve() == Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise MedsslError(f"--out {out}: {exc}") from None
    if here:
        raise MedsslError(f"--out {out} is the current folder; name a new folder for the run")
    return path


@dataclass(frozen=True)
class Claim:
    """What a command will do with its --out: action new | resume | finished."""

    path: Path
    action: str


def claim(opts, resume: bool = False) -> Claim:
    """Decide, reading only, what `opts.command` may do with `opts.out` (rules: module doc)."""
    command = opts.command
    path = out_path(opts.out)
    s = status(path)
    if s.kind == "file":
        raise MedsslError(f"--out {path} is a file; {ANOTHER}")
    above = enclosing_run(path)
    if above is not None and not _study_step(above, path):
        raise MedsslError(f"--out {path} lies inside the run folder {above}; {ANOTHER}")
    if s.kind in ("missing", "empty"):
        return Claim(path, "new")
    if s.kind == "foreign":
        raise MedsslError(f"--out {path} holds files that are not a medssl run; {ANOTHER}")
    if s.command != command:
        raise MedsslError(
            f"--out {path} is a `{s.command}` run; `medssl {command}` writes only into its own "
            f"runs; {ANOTHER}"
        )
    if s.state == "running":
        raise MedsslError(f"--out {path} is in use by process {s.pid}; wait for it or {ANOTHER}")
    diff = differing_options(path, opts)
    if s.state == "finished":
        if diff:
            raise MedsslError(
                f"{path} holds a finished {command} run with other options ({', '.join(diff)}); "
                f"{ANOTHER}"
            )
        return Claim(path, "finished")
    if not resume:
        raise MedsslError(
            f"{path} holds an interrupted {command} run; add --resume to continue it, or {ANOTHER}"
        )
    if diff:
        raise MedsslError(
            f"--resume: options differ from {path}/config.yaml ({', '.join(diff)}); resume with "
            f"the saved options (`--config {path}/config.yaml --resume`) or {ANOTHER}"
        )
    return Claim(path, "resume")


def _study_step(above: Path, path: Path) -> bool:
    """A study (a tune) writes its steps' (its trials') runs into STUDY/runs/NAME."""
    try:
        parent = path.absolute().parent
        return owner(above) in ("study", "tune") and parent == above.absolute() / "runs"
    except MedsslError:
        return False


def differing_options(path: Path, opts) -> list[str]:
    """Options of `opts` that differ from the run's saved config.yaml (NOT_COMPARED aside)."""
    try:
        saved = type(opts).from_dict(read_yaml(path / "config.yaml"), saved=True).to_dict()
    except MedsslError as exc:
        msg = str(exc)
        raise MedsslError(
            msg if msg.startswith(str(path)) else f"{path}/config.yaml: {msg}"
        ) from None
    new = opts.to_dict()
    return sorted(k for k in new if k not in NOT_COMPARED and saved.get(k) != new[k])


def require_finished(path: Path | str, command: str, user: str) -> Path:
    """Refuse anything but a finished `command` run (for `user`: evaluate, predict, compare)."""
    path = Path(path)
    s = status(path)
    if s.kind == "foreign" and (path / "encoder.safetensors").is_file():
        raise MedsslError(
            f"{path} holds an SSL encoder, not a classifier; train one with `medssl train "
            f"--init {path}/encoder.safetensors` and {user} that"
        )
    if s.kind in ("missing", "file", "empty", "foreign"):
        what = {"missing": "no such folder", "file": "a file", "empty": "an empty folder"}
        raise MedsslError(
            f"{path}: {what.get(s.kind, 'not a medssl run folder')}; `medssl {user}` takes a "
            f"finished `medssl {command}` run folder"
        )
    if s.command != command:
        hint = ""
        if s.command == "pretrain":
            hint = f" (train a classifier with `medssl train --init {path}/encoder.safetensors`)"
        raise MedsslError(
            f"{path} is a `{s.command}` run; `medssl {user}` takes a `{command}` run{hint}"
        )
    if s.state != "finished":
        how = (
            "wait for it" if s.state == "running" else f"finish it with `medssl {command} --resume`"
        )
        raise MedsslError(f"{path}: the {command} run is {s.state}; {how}")
    return path


# ---- writing into a claimed folder ----


def _record(path: Path) -> dict:
    f = path / RUN_FILE
    return read_json(f, "run record") if f.is_file() else {}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@contextlib.contextmanager
def open_run(claimed: Claim, opts, data: dict | None = None) -> Iterator[Path]:
    """Hold the run lock, record the run as running (run.json), save config.yaml and `data`
    (data.json: what a user's data source was); on any exception record the run as interrupted
    (with the reason) and re-raise."""
    path = claimed.path
    with run_lock(path):
        record = {
            "command": opts.command,
            "created": _now(),
            "medssl": __version__,
        } | (_record(path) if claimed.action == "resume" else {})
        record.pop("reason", None)
        write_json(path / RUN_FILE, record | {"state": "running", "pid": os.getpid()})
        write_yaml(path / "config.yaml", opts.saved_config())
        if data is not None:
            write_json(path / "data.json", data)
        try:
            yield path
        except BaseException as exc:
            reason = "stopped by Ctrl-C" if isinstance(exc, KeyboardInterrupt) else str(exc)
            record |= {"state": "interrupted", "reason": reason.splitlines()[0] if reason else ""}
            write_json(path / RUN_FILE, record | {"updated": _now()})
            raise
        finished = (path / MARKERS[opts.command]).is_file()
        record["state"] = "finished" if finished else "interrupted"
        write_json(path / RUN_FILE, record | {"updated": _now()})


def record_added(path: Path, command: str, files: list[str]) -> None:
    """Note in run.json that `command` added `files` to the run (evaluate)."""
    record = _record(path) or {"command": owner(path), "medssl": __version__}
    record[command] = {"files": files, "time": _now()}
    write_json(path / RUN_FILE, record)


def check_output_file(path: Path | str, own: Callable[[Path], bool], what: str) -> Path:
    """A file a command may write: new, or one it wrote before (`own(path)` says so); never a
    file inside a run folder (run folders hold only their commands' files), a folder, or a path
    under a file."""
    path = expand(path)
    if path.is_dir():
        raise MedsslError(f"--out {path} is a folder; name the {what} file to write")
    parent = next((p for p in path.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise MedsslError(f"--out {path}: {parent} is a file, not a folder")
    run = enclosing_run(path)
    if run is not None:
        raise MedsslError(
            f"--out {path} lies inside the `{_owner_or_damaged(run)}` run folder {run}; run "
            f"folders hold only their commands' files; name a file elsewhere"
        )
    if path.exists() and not own(path):
        raise MedsslError(f"--out {path} exists and is not a {what} medssl wrote; name a new file")
    return path


def _owner_or_damaged(run: Path) -> str:
    try:
        return owner(run) or "damaged"
    except MedsslError:
        return "damaged"


# ---- the lock ----


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold `run_dir/.lock` for the duration; refuse if another live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            pid = _lock_pid(run_dir)
            if pid and _alive(pid):
                raise MedsslError(f"{run_dir} is in use by process {pid}; {ANOTHER}") from None
            lock.unlink(missing_ok=True)  # stale lock from a killed run
    else:
        raise MedsslError(f"{run_dir}: cannot take the run lock")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    for tmp in run_dir.glob(f".*{TEMP_SUFFIX}"):  # a killed writer's temp files: never real files
        tmp.unlink(missing_ok=True)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_pid(run_dir: Path) -> int | None:
    try:
        return int(read_text(run_dir / ".lock", "lock").strip() or 0) or None
    except (MedsslError, ValueError):
        return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no such pid can exist
        return False
    except PermissionError:
        return True
    return True


def drop_resume_state(out: Path) -> None:
    """Remove `out/last.pt` once the run's finish marker is written: a finished run is never
    resumed, and model + AdamW state is ~3x the model (128 MB for ResNet-18; 8 GB over a full
    study's 48 runs)."""
    (out / "last.pt").unlink(missing_ok=True)
