"""The study report: report.md and one self-contained report.html (figures embedded as data
URIs, inline CSS, no scripts, no external resources: it opens from disk with no network)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from medssl.artifacts import read_json, read_text, write_text
from medssl.operating_points import target_on_test

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;
padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{
text-align:left}img{max-width:100%;border:1px solid #eee;margin:4px 0}h2{border-bottom:
1px solid #ddd;padding-bottom:4px}.note{color:#555;font-size:0.9em}"""


def _pm(mean: float, std: float, n_seeds: int) -> str:
    """'mean ± std' over seeds; the bare value for a single seed (its std is not a spread)."""
    return f"{mean:.3f}" if n_seeds == 1 else f"{mean:.3f} ± {std:.3f}"


def _embedding_panels(runs: Path, summary: dict) -> dict:
    """t-SNE coordinates the probes of the chosen SSL method and of the random encoder saved,
    for one side-by-side plot."""
    import csv

    import numpy as np

    from medssl.methods import NAMES

    best = summary["best_method"]["method"]
    probe = "probe-ssl" if best == "simclr" else f"probe-{best}"
    panels = {}
    for title, name in ((f"{NAMES[best]} encoder", probe), ("random encoder", "probe-random")):
        f = runs / name / "embedding.csv"
        if f.is_file():
            with f.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            xy = np.array([[float(r["x"]), float(r["y"])] for r in rows])
            panels[title] = (xy, np.array([int(r["target"]) for r in rows]))
    return panels


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="note">({html.escape(alt)}: not produced)</p>'
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[list[str]]) -> tuple[str, str]:
    """(HTML, Markdown) renderings of one table."""
    h = "<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
    h += (
        "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        + "</table>"
    )
    md = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
    md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    return h, md


def write_reports(out: Path, summary: dict) -> None:
    """Write out/report.html and out/report.md from summary.json's content."""
    from medssl import plots

    runs = out / "runs"
    pos = summary["positive_class"]
    plots.plot_label_efficiency(summary["label_efficiency"], out / "label_efficiency.png")
    panels = _embedding_panels(runs, summary)
    if panels:
        plots.plot_embeddings(panels, out / "representations.png", positive_name=pos["name"])
    k = len(summary["seeds"])
    title = f"medssl study: {summary['dataset']} ({summary['budget']} budget)"
    intro = (
        f"Positive class: label {pos['label']} ({pos['name']}). Seeds {summary['seeds']}"
        f"{'; mean ± std over seeds' if k > 1 else ''}; models chosen on validation AUROC, "
        f"metrics on the {'official ' if '/' not in summary['dataset'] else ''}"
        f"test split. Wall time {summary['wall_time_s'] / 60:.1f} min on "
        f"{summary['machine']}."
    )
    sup_rows = [
        [
            name,
            s["stem"],
            str(s["epochs"]),
            _pm(*s["val_auroc"], k),
            _pm(*s["auroc"], k),
            _pm(*s["balanced_accuracy"], k),
            _pm(*s["accuracy"], k),
            _pm(*s["ece"], k),
            f"{s['train_time_s']:.0f}",
        ]
        for name, s in summary["supervised"].items()
    ]
    sup_h, sup_md = _table(
        [
            "recipe",
            "stem",
            "epochs",
            "val AUROC",
            "test AUROC",
            "test BalAcc",
            "test Acc",
            "test ECE",
            "train s",
        ],
        sup_rows,
    )
    eff_rows = []
    for method, rows in summary["label_efficiency"].items():
        for r in rows:
            eff_rows.append(
                [
                    method,
                    f"{r['label_fraction']:g}",
                    f"{r['n_train']:.0f}",
                    _pm(r["test_auroc"], r["test_auroc_std"], k),
                    _pm(r["test_balanced_accuracy"], r["test_balanced_accuracy_std"], k),
                    _pm(r["test_ece"], r["test_ece_std"], k),
                ]
            )
    eff_h, eff_md = _table(
        ["method", "labels", "n train", "test AUROC", "test BalAcc", "test ECE"], eff_rows
    )
    pre_texts = [_pretrain_text(m, pre) for m, pre in summary["pretrain"].items()]
    cmp_h, cmp_md, chosen = _method_comparison(summary)

    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>"
        f"{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>",
        "<h2 id='supervised'>Supervised recipes</h2>",
        sup_h,
        "<h2 id='label-efficiency'>Label efficiency</h2>",
        eff_h,
        _img(out / "label_efficiency.png", "label efficiency"),
        "<h2 id='ssl'>Self-supervised pretraining</h2>",
        *[f"<p>{html.escape(t)}</p>" for t in pre_texts],
        *[
            _img(runs / pre["run"] / "loss_curve.png", f"{m}: loss and kNN monitor")
            for m, pre in summary["pretrain"].items()
        ],
        f"<h2 id='methods'>Methods compared</h2><p>{html.escape(chosen)}</p>",
        cmp_h,
        "<h2 id='representations'>Representations</h2><p>t-SNE of the test images' encoder "
        "features, coloured by class: the chosen method's encoder against a randomly "
        "initialised one (no labels were used by either).</p>",
        _img(out / "representations.png", "t-SNE of SSL vs random encoder features"),
    ]
    md = [
        f"# {title}",
        "",
        intro,
        "",
        "## Supervised recipes",
        "",
        sup_md,
        "## Label efficiency",
        "",
        eff_md,
        "![label efficiency](label_efficiency.png)",
        "",
        "## Self-supervised pretraining",
        "",
        *[t + "\n" for t in pre_texts],
        "## Methods compared",
        "",
        chosen,
        "",
        cmp_md,
        "## Representations",
        "",
        "![t-SNE of SSL vs random encoder features](representations.png)",
        "",
    ]
    parts.append("<h2 id='evaluation'>Evaluation of the best models</h2>")
    md += ["## Evaluation of the best models", ""]
    for family, name in summary["best_runs"].items():
        run = runs / name
        ev = read_json(run / "evaluation.json", "evaluation")
        t = ev["test"]
        lo, hi = t["ci95"]["auroc"]
        line = (
            f"{family} — run {name}: test AUROC {t['auroc']:.3f} (95% CI {lo:.3f}–{hi:.3f}), "
            f"AP {t['average_precision']:.3f}, ECE {t['calibration_before']['ece']:.3f} → "
            f"{t['calibration_after']['ece']:.3f} after temperature T = "
            f"{ev['temperature']:.2f}."
        )
        op_rows = [
            [
                rule,
                f"{o['test']['threshold']:.3f}",
                f"{o['test']['sensitivity']:.3f}",
                f"{o['test']['specificity']:.3f}",
                f"{o['test']['ppv']:.3f}",
                f"{o['test']['npv']:.3f}",
                target_on_test(o),
            ]
            for rule, o in ev["operating_points"].items()
        ]
        op_h, op_md = _table(
            [
                "operating point (chosen on val)",
                "threshold",
                "sensitivity",
                "specificity",
                "PPV",
                "NPV",
                "target on test",
            ],
            op_rows,
        )
        parts += [f"<h3>{html.escape(family)}</h3><p>{html.escape(line)}</p>", op_h]
        for fig, alt in (
            ("roc.png", "ROC"),
            ("pr.png", "precision-recall"),
            ("reliability_temperature.png", "reliability before/after temperature"),
            ("error_gallery.png", "most confident errors"),
            ("robustness.png", "robustness"),
        ):
            parts.append(_img(run / fig, f"{family}: {alt}"))
        md += [
            f"### {family}",
            "",
            line,
            "",
            op_md,
            f"Figures: `runs/{name}/` (roc.png, pr.png, reliability_temperature.png, "
            f"error_gallery.png, robustness.png).",
            "",
        ]
    parts.append(
        "<p class='note'>Generated by medssl from summary.json; every number is "
        "recomputable from the run directories in runs/.</p></body></html>"
    )
    write_text(out / "report.html", "\n".join(parts))
    write_text(out / "report.md", "\n".join(md))


def _num(x) -> str:
    return f"{x:.3f}" if isinstance(x, int | float) else "n/a"


def _pretrain_text(method: str, pre: dict) -> str:
    """One sentence on a pretraining run: loss and the kNN monitor from init to the end."""
    from medssl.methods import NAMES

    few = ""
    if pre.get("knn_few_labels"):
        few = (
            f"; with a bank of {pre['knn_few_labels']} labels "
            f"{_num(pre.get('knn_few_val_auroc_init'))} (random init) → "
            f"{_num(pre.get('knn_few_val_auroc_first'))} (first check) → "
            f"{_num(pre.get('knn_few_val_auroc_last'))} (last)"
        )
    saw = f"{pre.get('n_train_images')} unlabeled training images"
    if isinstance(pre.get("pretrained_on"), list):
        saw = "unlabeled images of " + " + ".join(
            f"{Path(str(s.get('source'))).name} ({s.get('kind')}, {s.get('n')})"
            for s in pre["pretrained_on"]
            if isinstance(s, dict)
        )
    return (
        f"{NAMES.get(method, method)}: {pre['epochs']} epoch(s) on {saw}; loss "
        f"{_num(pre.get('first_loss'))} → {_num(pre.get('final_loss'))}; kNN validation AUROC "
        f"{_num(pre.get('knn_val_auroc_init'))} (random init) → "
        f"{_num(pre.get('knn_val_auroc_first'))} (first check) → "
        f"{_num(pre.get('knn_val_auroc_last'))} (last){few}; "
        f"{pre.get('train_time_s', 0):.0f} s."
    )


def _method_comparison(summary: dict) -> tuple[str, str, str]:
    """Method x label-fraction table (probe and fine-tune, test metrics, spread over seeds) and
    the sentence naming the method chosen on validation."""
    from medssl.methods import NAMES

    k = len(summary["seeds"])
    eff = summary["label_efficiency"]
    rows = []
    for m in summary["methods"]:
        name = NAMES[m]
        probe = {r["label_fraction"]: r for r in eff[f"{name} linear probe"]}
        tune = {r["label_fraction"]: r for r in eff[f"{name} fine-tune"]}
        for f in sorted(probe):
            p, t = probe[f], tune.get(f)
            rows.append(
                [
                    name,
                    f"{f:g}",
                    _pm(p["test_auroc"], p["test_auroc_std"], k),
                    _pm(p["test_balanced_accuracy"], p["test_balanced_accuracy_std"], k),
                    _pm(p["test_ece"], p["test_ece_std"], k),
                    _pm(t["test_auroc"], t["test_auroc_std"], k) if t else "",
                    _pm(t["test_balanced_accuracy"], t["test_balanced_accuracy_std"], k)
                    if t
                    else "",
                    _pm(t["test_ece"], t["test_ece_std"], k) if t else "",
                ]
            )
    h, md = _table(
        [
            "method",
            "labels",
            "probe test AUROC",
            "probe test BalAcc",
            "probe test ECE",
            "fine-tune test AUROC",
            "fine-tune test BalAcc",
            "fine-tune test ECE",
        ],
        rows,
    )
    best = summary["best_method"]
    scores = ", ".join(f"{NAMES[m]} {v:.3f}" for m, v in summary["probe_val_auroc"].items())
    chosen = (
        f"Chosen on validation: {NAMES[best['method']]} (mean linear-probe validation AUROC "
        f"over label fractions and seeds: {scores}). Test metrics are reported, never used."
    )
    return h, md, chosen


def headline(out: Path | str) -> str:
    """What `medssl study` prints: report.md up to the self-supervised section, and where the
    HTML report is."""
    out = Path(out)
    head = read_text(out / "report.md", "study report").split("## Self-supervised")[0]
    return f"{head}\nreport: {out / 'report.html'}"
