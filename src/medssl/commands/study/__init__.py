"""`medssl study`: the whole comparison on one dataset in one command, resumable.

Steps (each a run directory under OUT/runs/; a finished one is skipped, a killed one resumes):
supervised fine-tune-all, weighted BCE and head-only (per seed) -> pretraining with each SSL
method of --methods (SimCLR by default) -> linear probes of each SSL encoder and of a random
encoder at the label fractions -> supervised and SSL fine-tuning at the label fractions (per
seed and method) -> `evaluate` on the best run of each family (chosen on validation AUROC) ->
summary.json, report.md and a self-contained report.html, with the methods compared and the
best one chosen on validation.
"""

from medssl.commands.study.plan import BUDGETS, Step, plan
from medssl.commands.study.run import run_study
from medssl.commands.study.summary import best_runs, summarise
from medssl.options import StudyConfig

__all__ = ["BUDGETS", "Step", "StudyConfig", "best_runs", "plan", "run_study", "summarise"]
