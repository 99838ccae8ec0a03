"""Experiment tracking: TensorBoard event files in every run directory, MLflow when asked.

TensorBoard is on by default (`RUN_DIR/tensorboard/`, read by a stock `tensorboard --logdir`);
MLflow is optional (`--mlflow URI`, `pip install 'medssl[mlflow]'`). Both receive the same
scalars; figures go to TensorBoard as images and to MLflow as artifacts. A resumed run drops
the events logged after its checkpoint (TensorBoard's purge_step), so curves never fork.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medssl.errors import MedsslError


def _flatten(d: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            flat |= _flatten(v, key + ".")
        else:
            flat[key] = v
    return flat


def mlflow_uri(uri: str) -> str:
    """A tracking URI for MLflow: a plain folder becomes a local file store (`file:` URI)."""
    if "://" in uri or uri.startswith("file:"):
        return uri
    return Path(uri).resolve().as_uri()


def check_tracking(mlflow: str | None, out: Path | None = None) -> None:
    """Refuse, before anything is written, --mlflow without MLflow installed and a run folder
    whose `tensorboard` is not a folder."""
    if out is not None and (out / "tensorboard").exists() and not (out / "tensorboard").is_dir():
        raise MedsslError(
            f"{out}/tensorboard is not a folder; {out} is damaged; choose another --out"
        )
    if mlflow:
        if importlib.util.find_spec("mlflow") is None:
            raise MedsslError(
                "--mlflow needs MLflow: pip install 'medssl[mlflow]' (or mlflow-skinny)"
            )


class Tracker:
    """Logs one run's scalars and figures to TensorBoard and/or MLflow; a no-op when both off."""

    def __init__(
        self,
        out: Path,
        config: Mapping,
        tensorboard: bool = True,
        mlflow: str | None = None,
        start_step: int = 0,
        experiment: str = "medssl",
    ) -> None:
        self.writer = None
        self.mlflow = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # ~1 s: only with events on

            if not start_step:  # a run starting over: events of an earlier attempt would mix in
                shutil.rmtree(Path(out) / "tensorboard", ignore_errors=True)

            # purge_step: a resumed run overwrites the steps logged after its checkpoint
            self.writer = SummaryWriter(
                str(Path(out) / "tensorboard"), purge_step=start_step or None
            )
            self.writer.add_text("config", _yaml_block(config), 0)
        if mlflow:
            try:
                import mlflow as mlf  # optional dependency (medssl[mlflow])
            except ImportError:
                raise MedsslError(
                    "--mlflow needs MLflow: pip install 'medssl[mlflow]' (or mlflow-skinny)"
                ) from None
            uri = mlflow_uri(mlflow)
            if uri.startswith("file:"):  # MLflow 3 keeps the file store behind this switch
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlf.set_tracking_uri(uri)
            mlf.set_experiment(experiment)
            self.mlflow = mlf
            mlf.start_run(run_name=Path(out).name)
            params = {k: str(v) for k, v in _flatten(config).items()}
            mlf.log_params(params)

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """Log finite numbers of `values` at `step` under `prefix/name`."""
        clean = {
            f"{prefix}{k}": float(v)
            for k, v in values.items()
            if isinstance(v, int | float) and np.isfinite(v)
        }
        if self.writer is not None:
            for k, v in clean.items():
                self.writer.add_scalar(k, v, step)
        if self.mlflow is not None:
            self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in clean.items()}, step=step)

    def images(self, tag: str, batch: np.ndarray, step: int = 0) -> None:
        """A batch of grey images (N, H, W) in [0, 1] as one TensorBoard image grid."""
        if self.writer is not None:
            import torch  # with events on only, as make_grid's torchvision below
            from torchvision.utils import make_grid  # torchvision.utils: seconds to import

            x = torch.as_tensor(np.clip(batch, 0, 1), dtype=torch.float32)[:, None]
            self.writer.add_image(tag, make_grid(x, nrow=8, padding=1, pad_value=1.0), step)

    def figure(self, tag: str, png: Path, step: int = 0) -> None:
        """A saved PNG figure: an image in TensorBoard, an artifact in MLflow."""
        if self.writer is not None:
            from PIL import Image  # with events on only

            rgb = np.asarray(Image.open(png).convert("RGB"))
            self.writer.add_image(tag, rgb, step, dataformats="HWC")
        if self.mlflow is not None:
            self.mlflow.log_artifact(str(png))

    def artifact(self, path: Path) -> None:
        """A result file (metrics, summary) for MLflow; TensorBoard has no place for it."""
        if self.mlflow is not None:
            self.mlflow.log_artifact(str(path))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.mlflow is not None:
            self.mlflow.end_run()
            self.mlflow = None


def _yaml_block(config: Mapping) -> str:
    lines = [f"{k}: {v}" for k, v in _flatten(config).items()]
    return "    " + "\n    ".join(lines)  # indented: TensorBoard renders it as a code block


def read_scalars(run_dir: str | os.PathLike[str]) -> dict[str, list[tuple[int, float]]]:
    """Scalars of a run's TensorBoard events, read with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import (  # tests and reports
        EventAccumulator,
    )

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
