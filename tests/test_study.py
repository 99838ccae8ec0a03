"""The one-command study end to end (smoke budget) and its HTML report in headless Chromium."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from medssl.commands.study import BUDGETS, StudyConfig, plan
from medssl.errors import MedsslError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_plan_and_options():
    steps = plan(StudyConfig(budget="standard"))
    names = [s.name for s in steps]
    assert len(names) == len(set(names))
    b = BUDGETS["standard"]
    ft = [s for s in steps if s.family == "ft-ssl"]
    assert len(ft) == len(b["fractions"]) * len(b["seeds"]) and {s.method for s in ft} == {"simclr"}
    assert names.index("simclr") < names.index("probe-ssl") < names.index("ft-ssl-f1-s0")
    # the BCE baseline stays BCE whatever loss the dataset's recipe uses
    from medssl.options import TrainConfig

    for dataset in ("breastmnist", "pneumoniamnist"):
        loss = {
            s.family: TrainConfig(**s.options).loss
            for s in plan(StudyConfig(dataset=dataset))
            if s.family in ("sup-all-bce", "sup-all-wbce")
        }
        assert loss == {"sup-all-bce": "bce", "sup-all-wbce": "weighted-bce"}
    with pytest.raises(MedsslError, match="budget"):
        StudyConfig(budget="huge")
    # several methods: one pretraining, one probe and one fine-tune family each, typed fields
    many = plan(StudyConfig(budget="quick", methods="all"))
    pre = [s for s in many if s.kind == "pretrain"]
    assert [s.method for s in pre] == list(StudyConfig(methods="all").methods) and len(pre) == 7
    assert {s.options["encoder"] for s in many if s.kind == "probe" and s.method} == {
        f"@{s.name}" for s in pre
    }
    byol = [s for s in many if s.family == "ft-ssl" and s.method == "byol"]
    assert [(s.fraction, s.seed) for s in byol] == [(0.1, 0), (1.0, 0)]
    assert StudyConfig(methods="byol,byol,simclr").methods == ["byol", "simclr"]
    with pytest.raises(MedsslError, match="methods"):
        StudyConfig(methods="simclr,swav")


@pytest.mark.slow
def test_smoke_study_report_renders_offline(tmp_path, data_root):
    out = tmp_path / "study"
    cmd = [
        sys.executable,
        "-m",
        "medssl.cli",
        "study",
        "--dataset",
        "breastmnist",
        "--data-root",
        str(data_root),
        "--out",
        str(out),
        "--budget",
        "smoke",
        "--methods",
        "simclr,byol",
        "--external",
        "breastmnist",  # its own test split as an "external" set: must give the test metrics
        "--no-progress",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["positive_class"]["name"] == "malignant"
    assert set(summary["label_efficiency"]) == {
        "SimCLR linear probe",
        "BYOL linear probe",
        "random-encoder probe",
        "supervised from scratch",
        "SimCLR fine-tune",
        "BYOL fine-tune",
    }
    probes = summary["probe_val_auroc"]  # the method is chosen on validation, never on test
    assert summary["best_method"]["method"] == max(probes, key=probes.get)
    assert set(summary["pretrain"]) == {"simclr", "byol"}
    for name in summary["best_runs"].values():
        ext = json.loads(
            (out / "runs" / name / "external" / "breastmnist" / "metrics.json").read_text()
        )
        own = json.loads((out / "runs" / name / "metrics.json").read_text())["test"]
        assert ext["n"] == own["n"] and abs(ext["auroc"] - own["auroc"]) < 1e-9, name
    assert (out / "report.md").read_text().count("External validation") == len(summary["best_runs"])
    page = (out / "report.html").read_text()
    for section in (
        "id='supervised'",
        "id='label-efficiency'",
        "id='ssl'",
        "id='methods'",
        "id='representations'",
        "id='evaluation'",
    ):
        assert section in page
    assert page.count("data:image/png;base64,") >= 9
    assert (out / "representations.png").stat().st_size > 0
    assert "command: study" in (out / "config.yaml").read_text()
    # Nothing the page could fetch: no http(s) URL, no script, no external stylesheet.
    assert not re.search(r"(src|href)=[\"']?https?:", page) and "<script" not in page
    # The same command on the finished study does nothing and says so (files byte-identical).
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # ... and only the same study: another budget into this folder is refused, one line
    quick = ["quick" if a == "smoke" else a for a in cmd]
    other = subprocess.run(quick, capture_output=True, text=True)
    assert other.returncode == 2 and other.stderr.count("\n") == 1
    assert "finished study run with other options (budget)" in other.stderr

    if CHROMIUM is None:
        pytest.fail("chromium not installed (.ci/run installs Debian's chromium)")
    profile, shot = tmp_path / "profile", tmp_path / "report.png"
    url = (out / "report.html").as_uri()
    dom = subprocess.run(
        _chromium(profile, tmp_path / "net0.json") + ["--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Label efficiency" in dom.stdout and "Evaluation of the best models" in dom.stdout
    netlog = tmp_path / "net.json"
    subprocess.run(
        _chromium(profile, netlog) + [f"--screenshot={shot}", url], capture_output=True, timeout=120
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copy(shot, out / "report_screenshot.png")
    assert page_requests(netlog) == []  # the page made no network request

    # The detector does see a page's request (to a closed loopback port).
    probe = tmp_path / "probe.html"
    probe.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    subprocess.run(
        _chromium(profile, tmp_path / "net2.json") + ["--dump-dom", probe.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert page_requests(tmp_path / "net2.json") == ["http://127.0.0.1:9/x.png"]


def _chromium(profile, netlog) -> list[str]:
    return [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--log-net-log={netlog}",
        "--window-size=1200,2400",
    ]


def page_requests(netlog) -> list[str]:
    """http(s) URLs requested on behalf of a page (the browser's own update/time pings carry
    the initiator 'not an origin' and are not the page's)."""
    events = json.loads(netlog.read_text())["events"]
    urls = []
    for e in events:
        p = e.get("params", {})
        url = p.get("url", "")
        if url.startswith("http") and "initiator" in p and p["initiator"] != "not an origin":
            urls.append(url)
    return sorted(set(urls))
