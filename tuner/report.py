"""The report of a run: ``DIR/report.html`` and its figures (``DIR/figures/*.png``).

``DIR`` is a search run (``experiment.json``), a comparison (``compare.json``) or a trained model
(``config.json`` and ``model.safetensors``). The page is for reading offline: its images are local
files beside it, it loads no script, and its Content-Security-Policy lets the browser fetch
nothing but those images. Everything it writes from a run (names, paths, messages) is escaped,
in text and in attributes alike, and a figure's file name keeps only safe characters.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tuner.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

FIGURES = "figures"
CSP = "default-src 'none'; img-src 'self' file:; style-src 'unsafe-inline'"


@dataclass
class Page:
    """A report page being assembled: sections of escaped HTML, figures saved as PNG beside it."""

    directory: Path
    title: str
    parts: list[str] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, css: str = "") -> None:
        self.parts.append(f'<p class="{html.escape(css)}">{html.escape(text)}</p>' if css
                          else f"<p>{html.escape(text)}</p>")

    def table(self, frame: pd.DataFrame) -> None:
        self.parts.append(frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0))

    def figure(self, name: str, made: tuple | object, caption: str = "") -> None:
        """Save a figure (or a ``(figure or None, reason)`` pair) as ``figures/NAME.png`` and show it."""
        figure, reason = made if isinstance(made, tuple) else (made, caption)
        if figure is None:
            self.text(f"{name}: not drawn, {reason}", css="note")
            return
        import matplotlib.pyplot as plt

        path = self.directory / FIGURES / f"{figure_stem(name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=90)
        plt.close(figure)
        self.figures.append(path)
        src = html.escape(f"{FIGURES}/{quote(path.name)}")
        alt = html.escape(name.replace("_", " "))
        self.parts.append(f'<figure><img src="{src}" alt="{alt}">'
                          f"<figcaption>{html.escape(reason or '')}</figcaption></figure>")

    def write(self, name: str = "report.html") -> Path:
        """The page as ``DIR/NAME``, written atomically."""
        body = "\n".join(self.parts)
        page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>"
                f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")
        path = self.directory / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(page)
        tmp.replace(path)
        return path


def figure_stem(name: str) -> str:
    """``name`` (it holds the run's name) as a file name under ``figures/``.

    Letters, digits and ``._+-`` only: no name reaches outside the folder, and the page only has to quote it.
    """
    return re.sub(r"[^\w.+-]", "_", name)


STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
         "img{max-width:100%}figure{margin:1em 0}figcaption{color:#555;font-size:90%}"
         "table{border-collapse:collapse;font-size:90%}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
         ".note{color:#8a5a00}.warn{color:#a00;font-weight:bold}")


def check_writable(directory: Path) -> None:
    """Refuse, in one line and before anything is drawn, a directory the report cannot be written into."""
    import shlex
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        copy = f"cp -r {shlex.quote(str(directory))} COPY"
        raise ConfigError(f"cannot write the report into {directory} ({err.strerror}); copy it somewhere writable "
                          f"(`{copy}`) and run `python -m tuner report COPY`") from None


def report_kind(directory: Path) -> str:
    """search, compare or model; anything else is refused in one line."""
    if (directory / "compare.json").is_file():
        return "compare"
    if (directory / "experiment.json").is_file():
        return "search"
    if (directory / "config.json").is_file() and (directory / "model.safetensors").is_file():
        return "model"
    raise ConfigError(f"{directory} is not a search run (experiment.json), a comparison (compare.json) or a "
                      "trained model (config.json + model.safetensors); give a directory made by "
                      "`tuner search`, `tuner compare` or `tuner train`")


# ---------------------------------------------------------------- a search


def search_report(directory: Path, page: Page | None = None, prefix: str = "") -> Path:
    """History, learning curves with rungs, importances, parallel coordinates and the top trials."""
    from search_spaces import get_space
    from tuner import figures
    from tuner.experiment import Experiment
    from tuner.followup import resume_search
    from tuner.results import load_experiment, trials_summary, write_results
    from tuner.study import load_study, study_file

    exp = Experiment(**load_experiment(directory))
    space = get_space(exp.space)
    study_file(directory)  # a directory in its place is refused before anything is written
    table = write_results(directory, exp, space)  # also refreshes the study file
    own_page = page is None
    page = page or Page(directory, f"Search {exp.name}: {exp.space} on {exp.data}")
    counts = table["status"].value_counts().to_dict()
    budget = exp.budget_words
    page.text(f"{len(table)} of {exp.num_samples} trials, up to {exp.max_epochs} epochs each"
              + (f", within a budget of {budget}" if budget else "") + ": "
              + trials_summary(table).removeprefix("trials: ") + f". Objective {space.metric} "
              f"({space.mode}) on the validation split; ASHA grace {exp.grace_period}, "
              f"reduction {exp.reduction_factor}.")
    best = json.loads((directory / "best.json").read_text()) if (directory / "best.json").is_file() else None
    if best and best.get("judged_at_epoch"):
        among = best["judged_among"] - 1
        how = (f"chosen on equal footing: judged at epoch {best['judged_at_epoch']} against the {among} other trial(s) "
               "the scheduler let run (completed or cut by the budget)" if among else "the only trial the scheduler "
               "let run")
        page.text(f"Best trial {best['trial_id']} ({space.metric} {best['objective']:.4f} at its best epoch), {how}; "
                  "trials ASHA stopped had lost at their rung.")
    if counts.get("unfinished"):
        how = (f"resume it with `{resume_search(exp.space, exp.name, exp.storage)}`" if own_page
               else "resume the comparison with --resume")
        page.text(f"This search was interrupted: {counts['unfinished']} trial(s) had not finished. The figures show "
                  f"what finished; {how}.", css="warn")
    if (directory / "best.json").is_file():
        from tuner.baselines import search_line

        baselines = search_line(directory, space.task, exp.data)  # kept in the run by search or best
        if baselines:
            page.text(baselines)
    study = load_study(directory)
    page.heading("Optimisation history")
    page.figure(f"{prefix}{exp.name}_history", figures.history_figure(table, space.metric, best))
    page.heading("Learning curves")
    page.figure(f"{prefix}{exp.name}_curves", figures.curves_figure(
        table, space.metric, figures.rungs(exp.grace_period, exp.reduction_factor, exp.max_epochs),
        best["trial_id"] if best else None),
        "every trial's validation metric per epoch; x: stopped by ASHA at that epoch, square: cut by the budget; "
        "bold: the best trial")
    page.heading("Parameter importances")
    page.figure(f"{prefix}{exp.name}_importances", figures.importance_figure(study, seed=exp.seed))
    page.heading("Parallel coordinates")
    page.figure(f"{prefix}{exp.name}_parallel", figures.parallel_figure(study))
    objectives = tuple(getattr(exp, "objectives", ()) or ())
    best_file = directory / "best.json"
    if len(objectives) > 1 and best_file.is_file():
        front = json.loads(best_file.read_text()).get("front") or []
        page.heading("Pareto front")
        page.figure(f"{prefix}{exp.name}_front", figures.front_figure(table, space.metric, objectives[1],
                                                             {m["trial_id"] for m in front}),
                    f"{len(front)} non-dominated trials of {', '.join(objectives)}; grey: dominated")
    page.heading("Top trials")
    page.table(top_trials(table, space.mode))
    return page.write() if own_page else directory


def top_trials(table: pd.DataFrame, mode: str, top: int = 10) -> pd.DataFrame:
    ranked = table[table["best"].notna()].sort_values("best", ascending=mode == "min").head(top)
    params = [c for c in ranked.columns if c.startswith("param_")]
    return ranked[["trial_id", "status", "epochs", "best", *params]].rename(
        columns={c: c.removeprefix("param_") for c in params})


# ---------------------------------------------------------------- a trained model


def model_report(directory: Path, page: Page | None = None, name: str = "model") -> Path:
    """The model on its test split: ROC and confusion, mass scatter and coverage, or score histograms."""
    from lensdata import open_data
    from tuner import figures
    from tuner.training import load_trained, predict_split, require_split

    modules, config = load_trained(directory)
    data = open_data(config["data"], splits=("test",))
    require_split(data, "test", config["data"], "report reads the test split")
    pred = predict_split(modules, config, data, "test")
    own_page = page is None
    page = page or Page(directory, f"Model {directory.name}: {config['space']} ({config['task']})")
    start = (f", starting from the backbone of {config['init_from']} ({config.get('init_tensors', 'some')} tensors "
             "copied)" if config.get("init_from") else "")  # models saved before init_from have none
    page.text(f"{len(pred['label'])} test images of {config['data']}; trained for {config['epochs']} epochs{start}.")
    baselines_file, tested_file = directory / "baselines.json", directory / "test_metrics.json"
    if baselines_file.is_file() and tested_file.is_file():  # a final model: the baselines on the same test images
        from tuner.baselines import versus_line

        summary = json.loads(baselines_file.read_text())
        page.text(versus_line(summary, json.loads(tested_file.read_text()).get(summary["metric"]), "this model"))
    classes = tuple(config.get("classes", ()))
    from trainables import get_task

    for figure in get_task(config["task"]).figures:  # the task's own figures, by name (figures.MODEL_FIGURES)
        suffix, drawn, caption = figures.MODEL_FIGURES[figure](pred, classes)
        page.figure(f"{name}_{suffix}", (drawn, caption))
    metrics_file = directory / "metrics.json"
    if metrics_file.is_file():
        history = json.loads(metrics_file.read_text()).get("history", [])
        from search_spaces import task_objective

        page.figure(f"{name}_training", figures.training_figure(history, task_objective(config["task"])[0]),
                    "train loss and validation metric per epoch (the final model of a search has no validation)")
    return page.write() if own_page else directory


# ---------------------------------------------------------------- a comparison


def compare_report(directory: Path, page: Page | None = None) -> Path:
    """The comparison table, its figure, then each architecture's search and final model.

    A comparison over label budgets (``compare --train-per-class``) shows each budget's own
    comparison in turn, smallest budget first. A comparison interrupted before its first table is
    refused in one line that says how to resume it.
    """
    import pandas as pd

    from tuner import figures

    own_page = page is None
    summary = read_summary(directory)
    settings = summary.get("settings") or {}
    budgets = settings.get("train_per_class")
    tabled = [b for b in budgets if has_table(directory / f"budget-{b}")] if budgets else []
    if own_page and not (tabled if budgets else has_table(directory)):
        raise ConfigError(f"comparison {directory} has no table yet: it was interrupted before its models were "
                          f"tested; {how_to_resume(settings)}, then run report again")
    if own_page:
        page = Page(directory, f"Comparison: {settings.get('task', '?')} on {settings.get('data') or 'preset'}")
    if budgets:
        for budget in tabled:
            page.heading(f"{budget} labelled images per class")
            compare_report(directory / f"budget-{budget}", page)
        return page.write() if own_page else directory
    table = pd.read_parquet(directory / "compare.parquet")
    page.text(summary.get("verdict", ""))
    page.table(table)
    prefix = f"{directory.name}-" if not own_page else ""
    page.figure(f"{prefix}compare", figures.compare_figure(table, summary["metric"]),
                "test metric with its 95% bootstrap interval against the parameter count")
    for row in table.itertuples():
        if row.status != "ok" and getattr(row, "reason", None):
            page.text(f"{row.model}: failed ({row.reason})", css="warn")
    for search in sorted((directory / "searches").glob("*/experiment.json")):
        page.heading(f"Search: {search.parent.name}")
        search_report(search.parent, page, prefix)
    for model in sorted((directory / "models").glob("*/model.safetensors")):
        if "+seed" in model.parent.name:
            continue  # the same configuration with another seed: its test scores are in the table
        page.heading(f"Model: {model.parent.name}")
        model_report(model.parent, page, name=f"{prefix}{model.parent.name}")
    return page.write() if own_page else directory


def read_summary(directory: Path) -> dict:
    """``compare.json``: the comparison's settings and, once its table is written, metric and verdict."""
    path = directory / "compare.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} cannot be read ({getattr(err, 'strerror', None) or err}); it is the comparison's "
                          "settings file: restore it from a backup, or run the comparison again") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{path} is not a comparison's settings file (not a JSON object); restore it from a backup")
    return summary


def has_table(directory: Path) -> bool:
    """Whether a comparison (or one label budget of it) got as far as its table and verdict."""
    return (directory / "compare.parquet").is_file() and "metric" in read_summary(directory)


def how_to_resume(settings: dict) -> str:
    """The resume command of a comparison, from its saved settings."""
    from tuner.followup import resume_compare

    if all(settings.get(key) for key in ("task", "name", "storage")):
        return f"resume it with `{resume_compare(settings)}`"
    return "resume it with `python -m tuner compare --resume` and its --task, --name and --storage"


REPORTS: dict[str, Callable[[Path], Path]] = {"search": search_report, "model": model_report,
                                               "compare": compare_report}
