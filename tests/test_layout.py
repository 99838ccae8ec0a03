"""The layout's rules (docs/design.md): layers and no import cycles (import-linter, function-local
imports counted), short functions, a reason for every function-local import, a torch-free
vocabulary and option layer, and a catalog that every method, preset and dataset row fulfils."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medssl import catalog
from medssl.methods import build
from medssl.options import PretrainConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "medssl"
MAX_LINES = 80  # a function longer than this is split (docs/design.md, "Layout")


def _functions():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path, node


def test_import_linter_contracts_hold():
    """Layers, forbidden imports and acyclic packages of pyproject.toml; grimp reads imports
    inside functions too, so a lazy import cannot hide a cycle."""
    exe = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_no_function_is_long():
    long = [
        f"{p.relative_to(REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for p, n in _functions()
        if n.end_lineno - n.lineno + 1 > MAX_LINES
    ]
    assert not long, long


def test_function_local_imports_say_why():
    """A function-local import keeps `--help` or start-up fast, or loads an optional
    dependency; each says which on its own line(s)."""
    silent = []
    for path, fn in _functions():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(fn):
            if isinstance(node, ast.Import | ast.ImportFrom):
                text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                if "#" not in text:
                    silent.append(f"{path.relative_to(REPO)}:{node.lineno}: {text.strip()}")
    assert not silent, silent


def _modules_after(code: str) -> set[str]:
    r = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO / "src")},
    )
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_help_and_option_parsing_import_no_torch():
    for code in (
        "import medssl.catalog, medssl.options",
        "from medssl.cli import parse; parse(['tune', '--space', 'stem=imagenet; lr=1e-3,1e-2'])",
        "from medssl.cli import parse; parse(['pretrain', '--method', 'byol'])",
        "from medssl.cli import build_parser; build_parser().format_help()",
    ):
        loaded = _modules_after(code)
        assert "torch" not in loaded and "numpy" not in loaded, code


@pytest.mark.parametrize("name", catalog.METHOD_NAMES)
def test_every_catalog_method_builds_pretrains_a_step_and_has_docs(name):
    """A method is its module and its catalog row: both are found from the row alone."""
    method = catalog.METHODS[name]
    cfg = PretrainConfig(method=name, stem="compact", batch_size=4)
    assert all(getattr(cfg, k) == v for k, v in method.recipe.items())  # the row's recipe
    model = build(cfg, n_train=64)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.manual_seed(0)
    x1, x2 = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    before = [p.detach().clone() for p in model.encoder.parameters()]
    loss = model(x1, x2, 0.0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    opt.step()
    model.after_step(0.5)
    after = model.encoder.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    heads = model.heads()
    assert heads and all(isinstance(m, torch.nn.Module) for m in heads.values())
    docs = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    assert method.title in docs and f"`{name}`" in docs
    assert method.loss in (REPO / "src" / "medssl" / "losses.py").read_text(encoding="utf-8")


def test_every_preset_and_dataset_row_is_documented_and_used():
    presets = (REPO / "docs" / "commands" / "augment-preview.md").read_text(encoding="utf-8")
    presets += (REPO / "docs" / "commands" / "train.md").read_text(encoding="utf-8")
    for name in catalog.PRESETS:
        assert f"`{name}`" in presets, name
    assert set(catalog.MODALITY_PRESETS.values()) <= set(catalog.PRESETS)
    data_docs = (REPO / "docs" / "commands" / "data.md").read_text(encoding="utf-8")
    for name, info in catalog.DATASETS.items():
        assert name in data_docs, name
        assert info.modality in catalog.MODALITY_PRESETS
        assert info.default_positive in info.label_names
        TrainConfig(dataset=name, **info.recipe)  # the recipe is a valid set of train options


def test_source_paths_named_in_docs_exist():
    """`src/medssl/...py` and `medssl.x.y` module names in README and docs/ name real code."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    missing = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for path in re.findall(r"src/medssl/[\w/]+\.py", text):
            if not (REPO / path).is_file():
                missing.append(f"{page.relative_to(REPO)}: {path}")
        for mod in re.findall(r"`(medssl(?:\.\w+)+)`", text):
            parts = mod.split(".")
            base = REPO / "src" / Path(*parts)
            if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                parent = REPO / "src" / Path(*parts[:-1])  # medssl.module.attribute
                if not parent.with_suffix(".py").is_file():
                    missing.append(f"{page.relative_to(REPO)}: {mod}")
    assert not missing, missing
