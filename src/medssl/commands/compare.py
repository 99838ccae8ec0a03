"""`medssl compare`: a Markdown table of finished train runs (mean ± std over seeds)."""

from __future__ import annotations

from medssl.io.records import load_runs
from medssl.options import CompareConfig
from medssl.report.tables import compare_table


def run(cfg: CompareConfig) -> str:
    """The table of `cfg.runs` on `cfg.split`, one row per recipe (or per run)."""
    return compare_table(load_runs(cfg.runs), cfg.split, by_seed=not cfg.per_run)
