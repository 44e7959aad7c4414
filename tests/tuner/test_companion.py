"""The campaign's results page (`tuner.companion`), on a campaign directory made here without training.

The browser test opens the page in headless Chromium with `test_report.py`'s helper: every image
must load, nothing may be fetched from outside the campaign's folder, the console must stay quiet.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tuner import figures
from tuner.companion import ANCHORS, campaign_summary_markdown, interval_text, markdown_text, write_page
from tuner.errors import ConfigError

HOSTILE = "<script>alert(1)</script>"
ROW_COLUMNS = ["comparison", "task", "data", "budget", "budget_n", "model", "kind", "space", "status", "reason",
               "metric", "mode", "value", "ci_low", "ci_high", "seeds"]


def _row(comparison, task, budget, model, kind, space, value, width=0.02, status="ok", reason="", **extra):
    metric, mode = ("test_mae", "min") if task == "regression" else ("test_auroc", "max")
    ok = status == "ok"
    return {"comparison": comparison, "task": task, "data": "sim:model2", "budget": budget,
            "budget_n": math.nan if budget == "all" else float(budget), "model": model, "kind": kind,
            "space": space, "status": status, "reason": reason, "metric": metric, "mode": mode,
            "value": value if ok else math.nan, "ci_low": value - width if ok else math.nan,
            "ci_high": value + width if ok else math.nan, "seeds": 1 if ok else 0, **extra}


def _classification_rows() -> list[dict]:
    rows = []
    for budget, lift in (("100", 0.0), ("500", 0.05), ("all", 0.1)):
        accuracy = {"test_accuracy": 0.6 + lift, "accuracy_ci_low": 0.57 + lift, "accuracy_ci_high": 0.63 + lift,
                    "test_auroc_no_sub": 0.85 + lift, "test_auroc_cdm_vs_axion": 0.8 + lift, "trial_epochs": 40.0}
        rows.append(_row("model2-cls", "classification", budget, "swin_cls (tuned)", "tuned", "swin_cls",
                         0.8 + lift, **accuracy))
        rows.append(_row("model2-cls", "classification", budget, HOSTILE, "tuned", "vit_cls", 0.75 + lift,
                         **accuracy))
        if budget == "500":
            rows.append(_row("model2-cls", "classification", budget, "swin_cls (hand-set)", "hand-set", "swin_cls",
                             0, status="failed", reason="CUDA out of memory | at batch 64"))
        else:
            rows.append(_row("model2-cls", "classification", budget, "swin_cls (hand-set)", "hand-set", "swin_cls",
                             0.78 + lift, **accuracy))
        rows.append(_row("model2-cls", "classification", budget, "logistic (baseline)", "baseline", None,
                         0.6 + lift / 2, test_accuracy=0.4 + lift, accuracy_ci_low=0.38 + lift,
                         accuracy_ci_high=0.42 + lift))
    return rows


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    camp = tmp_path / "camp"
    comparisons = [
        {"label": "model2-cls", "task": "classification", "data": "sim:model2", "spaces": ["swin_cls", "vit_cls"],
         "budgets": [100, 500, "all"], "anchors": ["lejepa-model2", "resnet18-model2-full", "resnet18-axion-full"],
         "notes": "the label-efficiency curve"},
        {"label": "axion-reg", "task": "regression", "data": "sim:model3", "spaces": ["effnet_reg"],
         "budgets": ["all"], "anchors": ["resnet18-axion-full"]},
        {"label": "anomaly", "task": "anomaly", "data": "sim:model2", "spaces": ["ae_anom"], "budgets": ["all"],
         "anchors": []},
    ]
    rows = _classification_rows() + [
        _row("axion-reg", "regression", "all", "effnet_reg (tuned)", "tuned", "effnet_reg", 0.03, width=0.002,
             trial_epochs=60.0),
        _row("axion-reg", "regression", "all", "ridge (baseline)", "baseline", None, 0.2, width=0.01),
        _row("anomaly", "anomaly", "all", "ae_anom (tuned)", "tuned", "ae_anom", 0, status="failed",
             reason="injected: no trial finished"),
    ]
    camp.mkdir()
    pd.DataFrame.from_records(rows).to_parquet(camp / "results.parquet", index=False)
    (camp / "campaign.json").write_text(json.dumps({"spec": {"name": "label budgets", "comparison": comparisons},
                                                    "wall_s": 7384.0, "overhead_s": 95.5}))
    cell = camp / "cells" / "model2-cls-b100"
    cell.mkdir(parents=True)
    (cell / "report.html").write_text("<!DOCTYPE html><title>cell</title>")
    (cell / "compare.json").write_text(json.dumps({"verdict": "winner: swin_cls (tuned), paired lead clear"}))
    (camp / "cells" / "model2-cls-b500").mkdir()  # a cell without a report: no link
    return camp


def test_page_shows_each_comparison_its_figure_table_and_anchors(campaign):
    page = write_page(campaign)
    assert page == campaign / "index.html"
    text = page.read_text()
    assert "Content-Security-Policy" in text and "<script" not in text and HOSTILE not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<h1>Campaign label budgets</h1>" in text and "wall time 2 h 3 min" in text
    assert "runner overhead 1 min 36 s (1% of the wall time)" in text
    order = [text.index(f"<h2>{h}</h2>") for h in ("model2-cls: classification on sim:model2",
                                                  "axion-reg: regression on sim:model3",
                                                  "anomaly: anomaly on sim:model2", "Anchors")]
    assert order == sorted(order)
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert sources == ["figures/00_model2-cls.png", "figures/01_axion-reg.png"]  # none for the failed comparison
    assert all((campaign / s).stat().st_size > 0 for s in sources)
    assert "0.800 [0.78, 0.82]" in text and "0.600 [0.57, 0.63]" in text  # metric and accuracy with intervals
    assert "0.0300 [0.028, 0.032]" in text  # an MAE's interval to the decimals its width needs
    assert "CUDA out of memory | at batch 64" in text and "No model of this comparison finished" in text
    assert ("Best test_auroc (higher is better) per budget: at 100 per class: swin_cls (tuned) 0.800 [0.78, 0.82], "
            "its interval overlapping that of swin_cls (hand-set)") in text
    assert "Best test_mae (lower is better) per budget: at the full set: effnet_reg (tuned)" in text
    assert "At 100 per class, the cell&#x27;s paired verdict: winner: swin_cls (tuned)" in text
    assert "Per-class / per-pair AUROC" in text and "cdm_vs_axion" in text
    assert re.findall(r'href="([^"]+)"', text) == ["cells/model2-cls-b100/report.html"]
    anchors = text[text.index("<h2>Anchors</h2>"):]
    for key in ("lejepa-model2", "resnet18-model2-full", "resnet18-axion-full"):
        assert html_of(ANCHORS[key].label) in anchors and html_of(ANCHORS[key].source) in anchors
    assert "which this comparison does not show; not drawn" in text  # the axion anchor on a classification
    lejepa = text.index(html_of(ANCHORS["lejepa-model2"].source))
    assert lejepa < text.index("<h2>axion-reg")  # named in the first figure's caption, with its source


def html_of(text: str) -> str:
    import html

    return html.escape(text)


def test_markdown_summary_has_every_row_escaped(campaign):
    text = campaign_summary_markdown(campaign)
    assert text.startswith("# Campaign label budgets\n")
    assert "## model2\\-cls" not in text and "## model2-cls: classification on sim:model2" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script" not in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    # header and rows: 12 of the classification, its AUROC table (the 8 rows that have one), 2 and 1
    assert len(table) == (1 + 12) + (1 + 8) + (1 + 2) + (1 + 1)
    assert "CUDA out of memory \\| at batch 64" in text  # a pipe cannot split the cell
    assert "swin\\_cls (tuned)" in text and "0.800 \\[0.78, 0.82\\]" in text
    assert "At 100 per class, the cell's paired verdict: winner: swin\\_cls (tuned)" in text
    assert "## Anchors" in text and markdown_text(ANCHORS["lejepa-model2"].source) in text


def test_interval_text_keeps_the_decimals_the_interval_resolves():
    assert interval_text(0.9123, 0.90, 0.93) == "0.912 [0.90, 0.93]"
    assert interval_text(0.02134, 0.0201, 0.0227) == "0.0213 [0.020, 0.023]"
    assert interval_text(0.5, math.nan, math.nan) == "0.500"
    assert interval_text(math.nan, 0.1, 0.2) == ""


def test_markdown_text_escapes_html_and_markdown():
    assert markdown_text("[x](javascript:alert(1)) | <b>*y*</b>\nz") == (
        "\\[x\\](javascript:alert(1)) \\| &lt;b&gt;\\*y\\*&lt;/b&gt; z")


def test_budget_figure_draws_curves_on_a_log_axis_and_bars_for_one_budget():
    points = pd.DataFrame({"metric": "test_accuracy", "model": ["a (tuned)"] * 3 + ["$x$ (baseline)"] * 3,
                           "kind": ["tuned"] * 3 + ["baseline"] * 3, "space": ["a"] * 3 + [None] * 3,
                           "budget": ["100", "500", "all"] * 2, "value": np.linspace(0.5, 0.9, 6)})
    points["ci_low"], points["ci_high"] = points["value"] - 0.01, points["value"] + 0.01
    anchor = ANCHORS["lejepa-model2"]
    figure = figures.budget_figure(points, [anchor, ANCHORS["resnet18-axion-full"]])
    (ax,) = figure.axes
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "500", "1,000", "5,000", "all"]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"a (tuned)", r"\$x\$ (baseline)", anchor.label}
    figure.savefig(Path("/dev/null"), format="png")  # a "$" in a name is shown, not parsed as mathtext
    one = figures.budget_figure(points[points["budget"] == "all"], [anchor])
    (ax,) = one.axes
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.get_legend().get_texts()] == [anchor.label]


def test_a_directory_that_is_no_campaign_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not a campaign directory"):
        write_page(tmp_path)


@pytest.mark.slow
def test_page_renders_in_a_browser_offline(campaign, tmp_path):
    spec = importlib.util.spec_from_file_location("report_browser", Path(__file__).with_name("test_report.py"))
    report_tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report_tests)  # its `browse` helper: Debian's Chromium through Selenium
    seen = report_tests.browse(write_page(campaign), tmp_path / "shot.png")
    assert len(seen["images"]) == 2
    for src, complete, width in seen["images"]:
        assert complete and width > 0, f"broken image {src}"
        assert (campaign / src).is_file()
    assert all(url.startswith(campaign.as_uri() + "/") for url in seen["fetched"]), seen["fetched"]
    assert not [entry for entry in seen["console"] if entry["level"] == "SEVERE"], seen["console"]
