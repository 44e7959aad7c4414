"""The results page of a campaign: ``CAMP/index.html``, its figures, and the same tables as markdown.

A campaign is a matrix of comparisons (:mod:`tuner.comparison`) across label budgets, run into one
directory ``CAMP``: ``campaign.json`` (the spec and the wall time), ``results.parquet`` (one row per
comparison, budget and model) and ``cells/<label>-b<budget>/`` (each a comparison run). The page
reads those files only. Like :mod:`tuner.report`'s pages it is for reading offline: its images
are local files under ``CAMP/figures/``, it loads no script, and every name on it is escaped.

Published results stand beside ours as anchors (:data:`ANCHORS`): a comparison names the ones it
is measured against, and each is drawn where its task and metric match the comparison's.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tuner.errors import ConfigError
from tuner.report import Page

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Anchor:
    """A published result: its metric at some label budgets ("100" ... or "all"), and where it is reported."""

    task: str
    metric: str
    points: dict[str, float]
    label: str
    source: str


_LENS_FM = "github.com/arnesh2212/Lens-FM-DeepLense"
ANCHORS: dict[str, Anchor] = {
    "lejepa-model2": Anchor(
        "classification", "test_accuracy", {"100": 0.482, "500": 0.719, "1000": 0.797, "5000": 0.899, "all": 0.977},
        "Lens-LeJEPA (ViT-S/16 pretrained on Model I, frozen, rsLoRA)",
        f"{_LENS_FM}, Model II test accuracy at 100/500/1,000/5,000 labelled images per class and the full set"),
    "resnet18-model2-full": Anchor(
        "classification", "test_accuracy", {"all": 0.9999},
        "ResNet18 from scratch, no tuning (~71k training images)", f"{_LENS_FM} configs/downstream/supervised.yaml"),
    "resnet18-axion-full": Anchor(
        "regression", "test_mae", {"all": 0.021},
        "ResNet18 from scratch, axion mass MAE (dex)", f"{_LENS_FM} configs/downstream/supervised.yaml"),
}

ACCURACY = ("test_accuracy", "accuracy_ci_low", "accuracy_ci_high")
"""The second panel and column of a classification comparison: accuracy, the metric papers quote."""


@dataclass
class Section:
    """One comparison of the campaign: its spec entry, its rows and the anchors it names."""

    spec: dict
    rows: pd.DataFrame
    anchors: dict[str, Anchor]
    unknown: list[str]

    @property
    def label(self) -> str:
        return str(self.spec.get("label", ""))

    @property
    def ok(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == "ok"]

    def drawn(self) -> dict[str, Anchor]:
        """The named anchors of this comparison's task whose metric it shows (headline or accuracy)."""
        shown = {self.metric} | ({ACCURACY[0]} if self.accuracy_shown() else set())
        return {key: a for key, a in self.anchors.items() if a.task == self.spec.get("task") and a.metric in shown}

    @property
    def metric(self) -> str:
        named = self.rows["metric"].dropna()
        return str(named.iloc[0]) if len(named) else ""

    @property
    def mode(self) -> str:
        named = self.rows["mode"].dropna()
        return str(named.iloc[0]) if len(named) else "max"

    def accuracy_shown(self) -> bool:
        return (self.spec.get("task") == "classification" and self.metric != ACCURACY[0]
                and ACCURACY[0] in self.ok and bool(self.ok[ACCURACY[0]].notna().any()))


def load_campaign(campaign_dir: Path) -> tuple[dict, list[Section]]:
    """``campaign.json`` and ``results.parquet`` as one section per comparison, in the spec's order."""
    import pandas as pd

    summary_file, results_file = campaign_dir / "campaign.json", campaign_dir / "results.parquet"
    if not summary_file.is_file() or not results_file.is_file():
        raise ConfigError(f"{campaign_dir} is not a campaign directory (campaign.json and results.parquet); "
                          "give the directory a campaign run wrote")
    summary = json.loads(summary_file.read_text())
    table = pd.read_parquet(results_file)
    spec = summary.get("spec", {})
    comparisons = list(spec.get("comparison", []))  # the spec's [[comparison]] tables
    named = {str(c.get("label")) for c in comparisons}
    for label in dict.fromkeys(table["comparison"]):  # rows of a comparison the spec no longer names still show
        if label not in named:
            first = table[table["comparison"] == label].iloc[0]
            comparisons.append({"label": label, "task": first["task"], "data": first["data"]})
    sections = []
    for spec in comparisons:
        rows = table[table["comparison"] == str(spec.get("label"))].astype({"budget": str})
        rows = rows.sort_values("budget", key=lambda b: b.map(_budget_order), kind="stable")  # models keep order
        ids = [str(a) for a in spec.get("anchors", []) or []]
        sections.append(Section(spec, rows.reset_index(drop=True), {a: ANCHORS[a] for a in ids if a in ANCHORS},
                                [a for a in ids if a not in ANCHORS]))
    return summary, sections


def _budget_order(budget: str) -> float:
    return math.inf if str(budget) == "all" else float(budget)


def budget_words(budget: str) -> str:
    """``"100"`` -> "100 per class", ``"all"`` -> "the full set"."""
    return "the full set" if str(budget) == "all" else f"{budget} per class"


# ---------------------------------------------------------------- the tables, shared by the page and markdown


def interval_text(value: float, low: float, high: float) -> str:
    """``0.912 [0.90, 0.93]``: the interval to the decimals its width resolves, the value to one more."""
    if value is None or not math.isfinite(value):
        return ""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.3f}"
    width = high - low
    decimals = min(6, max(2, -math.floor(math.log10(width)))) if width > 0 else 2
    return f"{value:.{decimals + 1}f} [{low:.{decimals}f}, {high:.{decimals}f}]"


def _number(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"


def rows_table(section: Section) -> pd.DataFrame:
    """Every row of a comparison as text: budget, model, kind, status, the metric with its interval, ..."""
    import pandas as pd

    rows = section.rows
    metric = section.metric or "value"
    table = pd.DataFrame({
        "budget": rows["budget"].astype(str),
        "model": rows["model"].astype(str),
        "kind": rows["kind"].astype(str),
        "status": rows["status"].astype(str),
        f"{metric} [95% interval]": [_value_text(r) for _, r in rows.iterrows()],
    })
    if ACCURACY[0] in rows and metric != ACCURACY[0] and rows[ACCURACY[0]].notna().any():
        table["test_accuracy [95% interval]"] = [interval_text(*_get(r, *ACCURACY)) for _, r in rows.iterrows()]
    for column in ("seeds", "trial_epochs"):
        if column in rows:
            table[column] = [_number(v) for v in rows[column]]
    table["reason"] = [str(r.get("reason") or "") if r["status"] != "ok" else "" for _, r in rows.iterrows()]
    return table


def _get(row, *columns: str) -> list[float]:
    return [float(row[c]) if c in row and row[c] is not None else math.nan for c in columns]


def _value_text(row) -> str:
    return interval_text(*_get(row, "value", "ci_low", "ci_high"))


def auroc_table(section: Section) -> pd.DataFrame | None:
    """Per-class (``test_auroc_<class>``) and per-pair (``test_auroc_<a>_vs_<b>``) AUROC of the finished rows."""
    ok = section.ok
    columns = [c for c in ok.columns if c.startswith("test_auroc_") and ok[c].notna().any()]
    if not columns:
        return None
    ok = ok[ok[columns].notna().any(axis=1)]  # a baseline that scores no class alone has no row here
    table = ok[["budget", "model"]].astype(str).reset_index(drop=True)
    for column in columns:
        table[column.removeprefix("test_auroc_")] = [f"{v:.3f}" if math.isfinite(v) else "" for v in ok[column]]
    return table


def best_line(section: Section) -> str:
    """The best model at each budget by its point estimate, and whether its interval overlaps the runner-up's.

    Overlap is the cautious reading; the cell's paired bootstrap (its verdict) is the sharper one.
    """
    ok = section.ok[section.ok["value"].notna()]
    if not len(ok):
        return ""
    better = "higher" if section.mode == "max" else "lower"
    parts = []
    for budget in dict.fromkeys(ok["budget"]):
        ranked = ok[ok["budget"] == budget].sort_values("value", ascending=section.mode == "min")
        first = ranked.iloc[0]
        text = f"at {budget_words(budget)}: {first['model']} {_value_text(first)}"
        if len(ranked) > 1:
            second = ranked.iloc[1]
            apart = first["ci_low"] > second["ci_high"] or first["ci_high"] < second["ci_low"]
            text += f", its interval {'apart from' if apart else 'overlapping'} that of {second['model']}"
        parts.append(text)
    return f"Best {section.metric} ({better} is better) per budget: " + "; ".join(parts) + "."


def cell_dir(campaign_dir: Path, label: str, budget: str) -> Path:
    """The comparison run of one label at one budget: ``CAMP/cells/<label>-b<budget>/``."""
    return campaign_dir / "cells" / f"{label}-b{budget}"


def _verdicts(campaign_dir: Path, section: Section) -> list[str]:
    """Each cell's own verdict (its paired bootstrap), where the cell has written one."""
    out = []
    for budget in dict.fromkeys(section.rows["budget"].astype(str)):
        saved = cell_dir(campaign_dir, section.label, budget) / "compare.json"
        verdict = json.loads(saved.read_text()).get("verdict") if saved.is_file() else None
        if verdict:
            out.append(f"At {budget_words(budget)}, the cell's paired verdict: {verdict}")
    return out


def _heading(section: Section) -> str:
    return f"{section.label}: {section.spec.get('task', '?')} on {section.spec.get('data', '?')}"


def _setup_line(section: Section) -> str:
    spaces = section.spec.get("spaces") or sorted({s for s in section.rows.get("space", []) if isinstance(s, str)})
    budgets = section.spec.get("budgets") or list(dict.fromkeys(section.rows["budget"]))
    return (f"Spaces: {', '.join(map(str, spaces)) or 'none'}. Label budgets (images per class): "
            f"{', '.join(map(str, budgets)) or 'none'}.")


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def _timing_line(summary: dict) -> str:
    wall, overhead = summary.get("wall_s"), summary.get("overhead_s")
    if not wall:
        return "The campaign is still running (or was stopped before it ended): its times come when it ends."
    parts = [f"wall time {_duration(wall)}"] if wall is not None else []
    if overhead is not None:
        share = f" ({100 * overhead / wall:.0f}% of the wall time)" if wall else ""
        parts.append(f"runner overhead {_duration(overhead)}{share}")
    return ("Campaign " + "; ".join(parts) + ".") if parts else ""


# ---------------------------------------------------------------- the page


def _slug(index: int, label: str) -> str:
    return f"{index:02d}_" + (re.sub(r"[^A-Za-z0-9.-]+", "_", label).strip("._")[:60] or "comparison")


def _points(section: Section) -> pd.DataFrame:
    """The finished rows in the long form :func:`tuner.figures.budget_figure` draws: one row per metric."""
    import pandas as pd

    ok = section.ok
    space = ok["space"] if "space" in ok else None
    frames = [pd.DataFrame({"metric": section.metric, "model": ok["model"], "kind": ok["kind"], "space": space,
                            "budget": ok["budget"].astype(str), "value": ok["value"], "ci_low": ok["ci_low"],
                            "ci_high": ok["ci_high"]})]
    if section.accuracy_shown():
        frames.append(pd.DataFrame({"metric": ACCURACY[0], "model": ok["model"], "kind": ok["kind"], "space": space,
                                    "budget": ok["budget"].astype(str), "value": ok[ACCURACY[0]],
                                    "ci_low": _column(ok, ACCURACY[1]), "ci_high": _column(ok, ACCURACY[2])}))
    points = pd.concat(frames, ignore_index=True)
    return points[points["value"].notna()]


def _column(frame: pd.DataFrame, name: str):
    return frame[name] if name in frame else math.nan


def _figure_caption(section: Section, points: pd.DataFrame) -> str:
    single = points["budget"].nunique() == 1
    text = (f"{' and '.join(dict.fromkeys(points['metric']))} on the test split with 95% intervals; "
            + ("one bar per model at the comparison's only budget. " if single else
               "x: labelled images per class (log scale, 'all' at the right end); tuned solid, hand-set dashed, "
               "baselines grey dotted. "))
    drawn = section.drawn()
    if drawn:
        text += "Published anchors (black): " + "; ".join(f"{a.label}, from {a.source}" for a in drawn.values()) + "."
    return text


def _link(href: str, text: str) -> str:
    return f'<li><a href="{html.escape(href)}">{html.escape(text)}</a></li>'


def _section_html(page: Page, campaign_dir: Path, index: int, section: Section) -> None:
    from tuner import figures

    page.heading(_heading(section))
    page.text(_setup_line(section))
    if section.spec.get("notes"):
        page.text(str(section.spec["notes"]))
    for anchor in section.unknown:
        page.text(f"unknown anchor {anchor!r} (known: {', '.join(ANCHORS)}); not drawn", css="warn")
    for key, anchor in section.anchors.items():
        if key not in section.drawn():
            page.text(f"anchor {anchor.label}: {anchor.task} {anchor.metric}, which this comparison does not show; "
                      "not drawn", css="note")
    points = _points(section)
    if not len(points):
        page.text("No model of this comparison finished: no row is ok, so nothing is drawn. "
                  "The reasons are in the table." if len(section.rows) else
                  "No model of this comparison finished: the campaign has no row for it yet.", css="warn")
    else:
        page.figure(_slug(index, section.label), figures.budget_figure(points, list(section.drawn().values())),
                    _figure_caption(section, points))
        page.text(best_line(section))
    for verdict in _verdicts(campaign_dir, section):
        page.text(verdict)
    if len(section.rows):
        page.table(rows_table(section))
    for row in section.rows[section.rows["status"] != "ok"].itertuples():
        page.text(f"{row.model} at {budget_words(row.budget)}: failed ({row.reason})", css="warn")
    aurocs = auroc_table(section)
    if aurocs is not None:
        page.parts.append("<h3>Per-class / per-pair AUROC</h3>")
        page.table(aurocs)
    links = []
    for budget in dict.fromkeys(section.rows["budget"].astype(str)):
        report = cell_dir(campaign_dir, section.label, budget) / "report.html"
        if report.is_file():
            href = "/".join(quote(part) for part in report.relative_to(campaign_dir).parts)
            links.append(_link(href, f"{section.label} at {budget_words(budget)}: the comparison's report"))
    if links:
        page.parts.append("<ul>" + "".join(links) + "</ul>")


def _anchors_used(sections: list[Section]) -> dict[str, Anchor]:
    return {key: anchor for section in sections for key, anchor in section.anchors.items()}


def _points_text(anchor: Anchor) -> str:
    return ", ".join(f"{budget}: {value:g}" for budget, value in anchor.points.items())


def write_page(campaign_dir: Path) -> Path:
    """``CAMP/index.html``: every comparison's curve over label budgets, its table and best model, the anchors."""
    summary, sections = load_campaign(campaign_dir)
    page = Page(campaign_dir, f"Campaign {summary.get('spec', {}).get('name', campaign_dir.name)}")
    timing = _timing_line(summary)
    if timing:
        page.text(timing)
    for index, section in enumerate(sections):
        _section_html(page, campaign_dir, index, section)
    used = _anchors_used(sections)
    if used:
        page.heading("Anchors")
        page.parts.append("<ul>" + "".join(
            f"<li>{html.escape(f'{a.label} ({a.task}, {a.metric} at {_points_text(a)})')}: "
            f"{html.escape(a.source)}</li>" for a in used.values()) + "</ul>")
    return page.write("index.html")


# ---------------------------------------------------------------- markdown


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def markdown_text(text: str) -> str:
    """Text for a GitHub markdown table cell: HTML escaped, markdown's own syntax and pipes backslashed."""
    flat = " ".join(str(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame of text as a GitHub markdown table, every cell through :func:`markdown_text`."""
    header = "| " + " | ".join(markdown_text(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(markdown_text(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def campaign_summary_markdown(campaign_dir: Path) -> str:
    """The page's tables as GitHub markdown (``docs/results/README.md``), every name escaped."""
    summary, sections = load_campaign(campaign_dir)
    out = [f"# Campaign {markdown_text(summary.get('spec', {}).get('name', campaign_dir.name))}"]
    timing = _timing_line(summary)
    if timing:
        out.append(markdown_text(timing))
    for section in sections:
        out.append(f"## {markdown_text(_heading(section))}")
        out.append(markdown_text(_setup_line(section)))
        if not len(section.ok):
            out.append("No model of this comparison finished.")
        if len(section.rows):
            out.append(markdown_table(rows_table(section)))
        if len(section.ok):
            out.append(markdown_text(best_line(section)))
        out.extend(markdown_text(verdict) for verdict in _verdicts(campaign_dir, section))
        aurocs = auroc_table(section)
        if aurocs is not None:
            out.append("Per-class / per-pair AUROC:\n\n" + markdown_table(aurocs))
    used = _anchors_used(sections)
    if used:
        out.append("## Anchors")
        out.append("\n".join(f"- {markdown_text(f'{a.label} ({a.task}, {a.metric} at {_points_text(a)})')}: "
                             f"{markdown_text(a.source)}" for a in used.values()))
    return "\n\n".join(out) + "\n"

