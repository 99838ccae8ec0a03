"""The docs against the code: commands, help-text links, page links and measured numbers.

(a) Every `medssl ...` command in README.md and docs/**/*.md, in fenced code blocks and inline
    code, goes through the real parser (`medssl.cli.build_parser`) and the command's options
    class (`medssl.options.COMMANDS[cmd]`), so a documented option that does not exist or a value
    the options refuse fails here. `torchrun ... -m medssl.cli ARGS` is checked as `medssl ARGS`;
    an elision `...` is dropped and the rest checked. Each command runs in a temporary folder
    where the inputs it names are made first (a dataset path becomes a tiny dataset of that kind,
    a pretraining pool an empty folder, a run's `--config RUN/config.yaml` a file holding only
    `command: CMD`); `--init` / `--encoder` files are checked later (`files_later=True`), the way
    a study step names an encoder that an earlier step makes. Only that path-existence refusal
    (`no such file`) is tolerated. Inline code is a mention rather than a full command line: it
    may end in an option without its value and leave out required positionals (the option must
    still exist; given values must still validate). Commands that cannot be checked are listed
    in SKIPPED, and every entry there must still occur in the docs.
(b) Help texts link only files that exist: every `*.md` path in a command's summary, description
    or option help (`medssl.options.COMMANDS`) names a file of the repository.
(c) Every Markdown link and image of README.md and docs/**/*.md to a local file resolves from
    its page, and a `#fragment` into a Markdown page names one of its headings.
(d) Every measured number names its source. The unit is a section: a Markdown heading and the
    text up to the next heading (headings inside code blocks do not count). A section states a
    measured number when its text holds
      - a value with a spread, `0.892 ± 0.011` (any `d.ddd ± ...`), or
      - a metric named next to a 3-4 decimal value (`AUROC 0.887`, `ECE 0.126 to 0.082`), or
      - a table row with at least two cells that are such values (`| 0.947 | 0.847 |`), or
      - a speed ratio (`1.88x`, `23.6x`, `**63x**`), or
      - a timing (`51.6 min`, `about 3 minutes`, `310 s`, `2.1 h`).
    The heading counts as the section's text; inline code does not (commands, formulas). Such a
    section is sourced when it, or one of its parent sections below the page title (their text
    before their first sub-heading), holds one of
      - a path under `benchmarks/results/` that exists (`{md,json}` braces and `*` allowed), or
      - a command that makes results (`medssl ...`, `python benchmarks/...`,
        `bash benchmarks/...`) together with the date it ran (YYYY-MM-DD), or
      - outside docs/results.md, a link to a heading of docs/results.md whose section is
        sourced itself.
    A new number written without any of those fails, naming its page, heading and the number.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from medssl.cli import build_parser, parse
from medssl.errors import MedsslError
from medssl.options import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
MEDMNIST = ("breastmnist", "pneumoniamnist")  # names; anything else given as --dataset is a path
# Made-up names of a user's data in the examples; other values must look like paths (a `/`, or a
# .csv/.npz/.npy suffix), so that a misspelt MedMNIST name is not taken for a folder.
USER_DATA_NAMES = {"my-folder", "my-labelled-folder"}
RESULTS = REPO / "docs" / "results.md"

# Commands in the docs that are not command lines and cannot be checked, with the reason.
SKIPPED = {
    "medssl COMMAND --help": "COMMAND stands for any command",
    "medssl pretrain --method M": "M stands for each method",
    "medssl pretrain --method M --seed S --epochs 100": "M and S stand for each method and seed",
}


# ---- reading Markdown ----


@dataclass
class Block:
    """A fenced code block (`info` its language) or a paragraph of prose, from `line` on."""

    page: Path
    line: int
    text: str
    fenced: bool
    info: str = ""


FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")


def blocks(page: Path) -> list[Block]:
    """The page as fenced code blocks and prose paragraphs (table rows are one paragraph each)."""
    out: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    para: list[str] = []
    start = 0

    def flush() -> None:
        if para:
            out.append(Block(page, start + 1, "\n".join(para), False))
            para.clear()

    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            flush()
            fence, info, body = m.group(1), m.group(2), []
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(fence):
                body.append(lines[j])
                j += 1
            out.append(Block(page, i + 2, "\n".join(body), True, info))
            i = j + 1
            continue
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("|") or line.startswith("#"):
            flush()
            if line.strip():
                out.append(Block(page, i + 1, line, False))
        else:
            if not para:
                start = i
            para.append(line)
        i += 1
    flush()
    return out


CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)


def code_spans(text: str) -> list[str]:
    """Inline code of a prose paragraph, with table escapes (`\\|`) undone."""
    return [" ".join(m.group(2).replace("\\|", "|").split()) for m in CODE_SPAN.finditer(text)]


def without_code(text: str) -> str:
    return CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)


# ---- (a) commands ----


@dataclass
class Example:
    page: Path
    line: int
    argv: list[str]
    inline: bool
    source: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}:{' '.join(self.argv)[:60]}"


PROGRAM = re.compile(r"^(?:\S*/bin/)?medssl$")  # medssl, .venv/bin/medssl
OPERATORS = {"&&", "||", ";", "|", "&", ";;"}
REDIRECTS = {">", ">>", "<", "2>", "&>", "2>&1", ">&"}


def simple_commands(line: str) -> list[list[str]]:
    """A shell line split into its simple commands (quotes kept, comments, redirections and
    leading VAR=value assignments dropped; a `<placeholder>` is read as the word inside)."""
    line = re.sub(r"<([A-Za-z][\w-]*)>", r"\1", line)
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    commands: list[list[str]] = [[]]
    tokens = list(lex)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in OPERATORS:
            commands.append([])
        elif tok in REDIRECTS or re.fullmatch(r"\d?>{1,2}", tok):
            i += 1  # and its target
        elif not commands[-1] and re.fullmatch(r"[A-Za-z_]\w*=\S*", tok):
            pass
        else:
            commands[-1].append(tok)
        i += 1
    return [c for c in commands if c]


def medssl_argv(words: list[str]) -> list[str] | None:
    """The arguments given to medssl by one simple command, or None if it does not run medssl."""
    if words and PROGRAM.match(words[0]):
        return words[1:]
    if words and words[0] == "torchrun" and "medssl.cli" in words:
        return words[words.index("medssl.cli") + 1 :]
    return None


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        for b in blocks(page):
            if b.fenced:
                if b.info not in ("", "bash", "sh", "shell", "zsh", "tcsh", "console"):
                    continue
                text = re.sub(r"\\\n\s*", " ", b.text)  # backslash continuations
                for k, line in enumerate(text.splitlines()):
                    if not re.search(r"(^|[\s;&|])(\S*/)?medssl(\s|$)|medssl\.cli", line):
                        continue
                    for words in simple_commands(line):
                        argv = medssl_argv(words)
                        if argv is not None:
                            found.append(Example(page, b.line + k, argv, False, line.strip()))
            else:
                for span in code_spans(b.text):
                    if not re.match(r"(\S*/bin/)?medssl(\s|$)|torchrun\s.*-m medssl\.cli", span):
                        continue
                    for variant in alternatives(span):
                        for words in simple_commands(variant):
                            argv = medssl_argv(words)
                            if argv is not None:
                                found.append(Example(page, b.line, argv, True, span))
    return found


def alternatives(span: str) -> list[str]:
    """Inline code `medssl completion bash|zsh` means either word: one line per alternative."""
    variants = [""]
    for word in span.split(" "):
        choices = word.split("|") if re.fullmatch(r"[\w.,-]+(\|[\w.,-]+)+", word) else [word]
        variants = [f"{v} {c}".strip() for v in variants for c in choices]
    return variants


EXAMPLES = examples()


# The names of the inputs a command line gives, by option: made in the temporary folder first.
DATA_SUFFIXES = (".csv", ".npz", ".npy")
POSITIONAL_PLACEHOLDERS = {
    "run_dir": "runs/x",
    "inputs": "x.png",
    "runs": "runs/x",
    "shell": "bash",
}


def make_dataset(path: Path, positive: str | None) -> None:
    """A tiny labelled source of the kind the path names: an npz, a CSV or a class-folder tree."""
    classes = [positive or "a", "zz-other"] if positive not in ("0", "1") else ["0", "1"]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        arrays = {}
        for s in ("train", "val", "test"):
            arrays[f"{s}_images"] = np.zeros((4, 28, 28), np.uint8)
            arrays[f"{s}_labels"] = np.array([[0], [1], [0], [1]])
        np.savez(path, **arrays)
        return
    root = path.parent if path.suffix == ".csv" else path
    rows = ["path,label"]
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(10):  # enough for a 7:1:2 split (train 7, val 1, test 2); never decoded
            (root / c / f"{i}.png").touch()
            rows.append(f"{c}/{i}.png,{c}")
    if path.suffix == ".csv":
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def materialise(argv: list[str], tmp: Path) -> list[str]:
    """Make the inputs `argv` names in `tmp` (the current folder); absolute paths move under
    `tmp`. Returns the argv with those paths replaced."""
    ns = build_parser().parse_args(argv)
    out = list(argv)

    def local(value: str) -> Path:
        path = Path(value).expanduser()
        if path.is_absolute() and not path.exists():
            new = tmp / path.relative_to(path.anchor)
            out[:] = [str(new) if a == value else a.replace(value, str(new)) for a in out]
            return new
        return path

    def user_path(value: str) -> bool:
        return value in USER_DATA_NAMES or "/" in value or Path(value).suffix in DATA_SUFFIXES

    dataset = getattr(ns, "dataset", None)
    if dataset and user_path(dataset):
        path = local(dataset)
        if not path.exists():
            make_dataset(path, getattr(ns, "positive_class", None))
    for key in ("unlabeled", "pretrain_on"):
        for item in filter(None, (getattr(ns, key, None) or "").split(",")):
            if not user_path(item):
                continue
            path = local(item)
            if not path.exists():
                if path.suffix in (".npz", ".npy"):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path.with_suffix(".npy"), np.zeros((2, 28, 28), np.uint8))
                else:
                    path.mkdir(parents=True)
    config = getattr(ns, "config", None)
    if config and not config.startswith("configs/") and not (tmp / config).exists():
        # a run's saved config.yaml (or tune's recipe.yaml), which the documented run makes
        (tmp / config).parent.mkdir(parents=True, exist_ok=True)
        (tmp / config).write_text(f"command: {ns.command}\n", encoding="utf-8")
    return out


def check_command(argv: list[str], inline: bool, tmp: Path) -> None:
    """Parse `argv` as medssl does and build its options; raise on anything but a missing file."""
    argv = [a.removesuffix(",...") for a in argv if a != "..."]  # elisions
    if not argv:
        return  # the bare program name
    if argv[0] in ("--version", "--help", "-h"):
        assert len(argv) == 1, argv
        return
    if argv[0] not in COMMANDS:
        raise AssertionError(f"{argv[0]!r} is not a medssl command: {sorted(COMMANDS)}")
    if "--help" in argv or "-h" in argv:
        return
    for _ in range(len(argv) + 3):  # a mention may lack trailing values and positionals
        try:
            build_parser().parse_args(argv)
            break
        except MedsslError as exc:
            msg = str(exc)
            m = re.search(r"argument (--[\w-]+): expected one argument", msg)
            if inline and m and argv[-1] == m.group(1):
                argv = argv[:-1]
                continue
            m = re.search(r"the following arguments are required: ([\w, ]+)", msg)
            if inline and m:
                argv = argv + [POSITIONAL_PLACEHOLDERS[n.strip()] for n in m.group(1).split(",")]
                continue
            raise
    argv = materialise(argv, tmp)
    ns = build_parser().parse_args(argv)
    cls = COMMANDS[ns.command]
    values = {}
    if getattr(ns, "config", None):
        raw = yaml.safe_load((tmp / ns.config).read_text(encoding="utf-8")) or {}
        values = {k.replace("-", "_"): v for k, v in raw.items()}
        assert values.pop("command", ns.command) == ns.command, (ns.config, raw)
    values |= {k: v for k, v in vars(ns).items() if k in cls.model_fields}
    cls.parse(values, files_later=True)  # --init / --encoder files are made by earlier steps
    try:
        parse(argv)  # the CLI's own path: --config merging and every check, files included
    except MedsslError as exc:
        m = re.search(r"--(init|encoder) (\S+): no such file", str(exc))
        if not (m and not (tmp / m.group(2)).exists()):
            raise


CHECKED = [e for e in EXAMPLES if e.source not in SKIPPED]  # placeholders are not commands


@pytest.mark.parametrize("example", CHECKED, ids=[e.id for e in CHECKED])
def test_documented_commands_parse_and_validate(example, tmp_path, monkeypatch):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)
    try:
        check_command(example.argv, example.inline, tmp_path)
    except MedsslError as exc:
        where = f"{example.page.relative_to(REPO)}:{example.line}"
        pytest.fail(f"{where}: `{example.source}` is refused: {exc}")


@pytest.mark.parametrize(
    "argv,inline,refused",
    [
        (["train", "--epochs", "2", "--init", "runs/ssl/encoder.safetensors"], False, None),
        (["train", "--dataset", "my-folder", "--positive-class", "lesion"], False, None),
        (["pretrain", "--unlabeled", "/data/scans", "--out", "runs/p"], False, None),
        (["train", "--config", "runs/old/config.yaml", "--out", "runs/new"], False, None),
        (["train", "--init"], True, None),  # an inline mention of the option
        (["evaluate", "--no-images"], True, None),  # the run folder left out
        (["train", "--init"], False, "expected one argument"),
        (["evaluate"], False, "required: run_dir"),
        (["train", "--epochz", "2"], False, "unrecognized arguments"),
        (["train", "--epochs", "1.7"], False, "--epochs"),
        (["train", "--dataset", "breastmnst"], False, "unknown dataset"),
        (["study", "--methods", "simclr,sinclr"], False, "--methods"),
        (["tune", "--space", "stem=resnet"], False, "stem: choose from"),
        (["completion", "fish"], False, "shell"),
    ],
)
def test_the_command_check_tolerates_only_missing_inputs(
    argv, inline, refused, tmp_path, monkeypatch
):
    """What the docs check lets through: a missing input file; never a bad option or value."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)
    if refused is None:
        check_command(argv, inline, tmp_path)
    else:
        with pytest.raises(MedsslError, match=re.escape(refused)):
            check_command(argv, inline, tmp_path)
    with pytest.raises(AssertionError, match="not a medssl command"):
        check_command(["trian"], True, tmp_path)


def test_skipped_commands_are_still_in_the_docs():
    sources = {e.source for e in EXAMPLES}
    assert set(SKIPPED) <= sources, set(SKIPPED) - sources
    assert len(EXAMPLES) > 150  # the extraction still finds the docs' commands


# ---- (b) help texts ----

MD_PATH = re.compile(r"[\w./-]*[\w-]\.md\b")
OUTPUTS = {"report.md", "evaluation.md", "table.md"}  # files the commands write, not docs


def test_help_texts_link_only_existing_files():
    missing = []
    for name, cls in COMMANDS.items():
        texts = {"summary": cls.summary, "description": cls.description}
        for key, field in cls.model_fields.items():
            texts["--" + key.replace("_", "-")] = field.description or ""
        for where, text in texts.items():
            missing += [
                f"{name} {where}: {p}"
                for p in MD_PATH.findall(text)
                if p not in OUTPUTS and not (REPO / p).is_file()
            ]
    assert not missing, f"help texts name files that do not exist: {missing}"


# ---- (c) links ----

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for b in blocks(page):
        m = None if b.fenced else HEADING.match(b.text)
        if m:
            s = slug(m.group(2))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(page: Path) -> list[tuple[int, str]]:
    return [
        (b.line, m.group(1))
        for b in blocks(page)
        if not b.fenced
        for m in LINK.finditer(without_code(b.text))
    ]


def resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, fragment = target.partition("#")
    return (page.resolve() if not path else (page.parent / path).resolve()), fragment


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_links_to_local_files_resolve(page):
    broken = []
    for line, target in links(page):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:, ...
            continue
        path, fragment = resolve(page, target)
        if not path.exists():
            broken.append(f"line {line}: {target} (no such file)")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"line {line}: {target} (no heading #{fragment} in {path.name})")
    assert not broken, f"{page.relative_to(REPO)}: {broken}"


# ---- (d) measured numbers name their source ----

METRIC = r"(?:AUROC|ECE|BalAcc|[Aa]ccuracy|Brier|NLL|[Ss]ensitivity|[Ss]pecificity|precision)"
MEASURED = {
    "a value ± its spread": re.compile(r"\b\d+\.\d{2,4}\s*±\s*\d*\.?\d+"),
    "a metric value": re.compile(
        rf"\b{METRIC}\b[^|\n;]{{0,30}}?(?<![\d.])0\.\d{{3,4}}\b"
        rf"|(?<![\d.])0\.\d{{3,4}}\b[^|\n;]{{0,30}}?\b{METRIC}\b"
    ),
    "a speed ratio": re.compile(r"(?<![\w.])\**\d+(?:\.\d+)?\**\s?[x×](?![\w\d]|\s?\d)"),
    "a timing": re.compile(
        r"(?<![\w.])~?\d+(?:[.,]\d+)?(?:\s?[-–]\s?\d+(?:[.,]\d+)?)?\s?"
        r"(?:ms|s|seconds|min|minutes|h|hours)\b"
    ),
}
TABLE_VALUE = re.compile(r"^\**-?\d*\.\d{3,4}\**$")
RESULT_PATH = re.compile(r"benchmarks/results/[\w.{},*-]*[\w}*]")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
RESULT_COMMAND = re.compile(
    rf"\b(?:medssl (?:{'|'.join(map(re.escape, COMMANDS))})\b"
    r"|python3? benchmarks/[\w/]+\.py|bash benchmarks/[\w/]+\.sh)"
)


@dataclass
class Section:
    page: Path
    line: int
    level: int
    title: str
    own: str = ""  # the text before the first sub-heading
    numbers: str = ""  # the same without inline code (commands, formulas, option values)
    parent: Section | None = None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line} {'#' * self.level} {self.title}"


def sections(page: Path) -> list[Section]:
    out = [Section(page, 1, 0, "(top of page)")]
    stack = [out[0]]
    for b in blocks(page):
        m = None if b.fenced else HEADING.match(b.text)
        if m:
            level = len(m.group(1))
            while stack[-1].level >= level:
                stack.pop()
            out.append(Section(page, b.line, level, m.group(2), parent=stack[-1]))
            out[-1].numbers = without_code(m.group(2)) + "\n"  # "Set up (about 2 minutes)"
            stack.append(out[-1])
        else:
            out[-1].own += b.text + "\n"
            out[-1].numbers += b.text if b.fenced else without_code(b.text)
            out[-1].numbers += "\n"
    return out


def expand(pattern: str) -> list[str]:
    """benchmarks/results/x.{md,json} -> the files it names (braces, then glob)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m:
        return [
            p
            for alt in m.group(1).split(",")
            for p in expand(pattern[: m.start()] + alt + pattern[m.end() :])
        ]
    return glob.glob(str(REPO / pattern))


def measured(text: str) -> list[str]:
    found = [
        f"{kind}: {m.group(0).strip()!r}"
        for kind, rx in MEASURED.items()
        for m in rx.finditer(text)
    ]
    for row in text.splitlines():
        cells = (
            [c.strip() for c in row.strip().strip("|").split("|")] if row.startswith("|") else []
        )
        values = [c for c in cells if TABLE_VALUE.match(c)]
        if len(values) >= 2:
            found.append(f"a table of values: {row.strip()[:60]!r}")
    return found


def own_source(section: Section) -> str | None:
    """What in the section's own text names where its numbers come from, if anything."""
    for path in RESULT_PATH.findall(section.own):
        if expand(path.rstrip(".,")):
            return path
    command, date = RESULT_COMMAND.search(section.own), DATE.search(section.own)
    if command and date:
        return f"{command.group(0)} ... {date.group(0)}"
    if section.page != RESULTS:
        for target in LINK.findall(section.own):
            path, fragment = resolve(section.page, target)
            if path == RESULTS and fragment:
                target_section = {slug(s.title): s for s in sections(RESULTS)}.get(fragment)
                if target_section and source(target_section):
                    return target
    return None


def source(section: Section) -> str | None:
    """The section's source, or its parents' (a page's title and top text source only
    themselves: one path there must not cover every number of the page)."""
    s: Section | None = section
    while s is not None and (s is section or s.level >= 2):
        found = own_source(s)
        if found:
            return found
        s = s.parent
    return None


def test_measured_numbers_name_their_source():
    unsourced = []
    for page in PAGES:
        for section in sections(page):
            numbers = measured(section.numbers)
            if numbers and not source(section):
                unsourced.append(f"{section.where}: {numbers[:3]}")
    assert not unsourced, "numbers without a source:\n" + "\n".join(unsourced)


def test_the_source_rule_catches_unsourced_numbers(tmp_path):
    """The rule of (d) on a made-up page: which sections count as sourced."""
    page = tmp_path / "page.md"
    to_results = os.path.relpath(RESULTS, tmp_path)
    results = f"{to_results}#default-recipes-from-medssl-tune-issue-15"  # a sourced section
    page.write_text(
        "# Page\n\nAll from `benchmarks/results/time-to-accuracy-cpu.md`.\n\n"
        "## Bare\n\nTest AUROC 0.889 ± 0.026.\n\n"
        "## Result file\n\n0.889 ± 0.026 (`benchmarks/results/time-to-accuracy-cpu.{md,json}`)\n\n"
        "## Missing file\n\n0.889 ± 0.026 (`benchmarks/results/nosuch.md`)\n\n"
        "## Command and date\n\n`medssl train --seed 1`, 2026-11-29: 1.5x faster.\n\n"
        "## Command, no date\n\n`medssl train --seed 1`: 37 s.\n\n"
        f"## Link\n\nTook 51.6 min ([results]({results})).\n\n"
        f"## Link without a heading\n\nTook 51.6 min ([results]({to_results})).\n\n"
        "## Parent\n\n`python benchmarks/suite.py`, 2026-11-23.\n\n### Child\n\n"
        "| a | 0.947 | 0.847 |\n\n"
        "## Words\n\nA 3x3 stem on 28 x 28 images, `2 × batch` views, lr 0.001.\n",
        encoding="utf-8",
    )
    verdict = {
        s.title: bool(source(s)) for s in sections(page) if s.level >= 2 and measured(s.numbers)
    }
    assert verdict == {
        "Bare": False,
        "Result file": True,
        "Missing file": False,
        "Command and date": True,
        "Command, no date": False,
        "Link": True,
        "Link without a heading": False,
        "Child": True,
    }
