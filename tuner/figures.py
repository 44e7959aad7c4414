"""The figures of ``tuner report``, drawn with matplotlib, Optuna's visualisation and scikit-learn.

Each function returns a matplotlib Figure (or None with a reason where the data cannot support the
figure, e.g. importances from fewer than two completed trials). What Optuna or scikit-learn
already draws (importances, parallel coordinates, ROC and confusion matrices) is theirs; what no
library draws (a history of every trial however it ended, learning curves with ASHA's rungs,
coverage of a Gaussian head, metric against cost with intervals) is drawn here on plain matplotlib axes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def _optuna_plot(draw, study: optuna.Study, **kwargs) -> Figure:
    """An ``optuna.visualization.matplotlib`` plot as a Figure (its API is marked experimental)."""
    _pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = draw(study, **kwargs)
    axes = axes if not isinstance(axes, np.ndarray) else axes.flat[0]
    figure = axes.figure
    figure.set_size_inches(9, 5)
    figure.tight_layout()
    return figure


def _target(study: optuna.Study) -> dict:
    """For a multi-objective study, Optuna's plots need the value to show: the task metric (first)."""
    if len(study.directions) == 1:
        return {}
    return {"target": lambda trial: trial.values[0], "target_name": study.user_attrs.get("metric", "objective 0")}


def completed(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


# ---------------------------------------------------------------- a search


# How each way a trial ends is drawn (tuner.results.STATUSES): colour and marker.
STATUS_STYLES = {"completed": ("tab:blue", "o"), "stopped": ("tab:orange", "x"), "cut": ("tab:purple", "s"),
                 "diverged": ("tab:red", "v"), "error": ("tab:red", "v"), "unfinished": ("tab:gray", ".")}


def history_figure(table: pd.DataFrame, metric: str, best: dict | None) -> tuple[Figure | None, str]:
    """Every trial's best value in the order the trials started, marked by how it ended; the best trial starred.

    Optuna's own history plots only the trials that completed every epoch, so a search whose best trial
    was stopped or cut, or that completed one trial, showed nothing of its best. ``best`` is ``best.json``
    (its ``trial_id`` and ``judged_at_epoch``, :func:`tuner.results.choose_best`), or None.
    """
    from tuner.results import STATUS_WORDS

    valued = [(n, row) for n, row in enumerate(table.itertuples(), start=1) if row.best == row.best]  # not NaN
    if not valued:
        return None, "no trial has reported a value yet"
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(9, 5))
    for status, (color, marker) in STATUS_STYLES.items():
        points = [(n, row.best) for n, row in valued if row.status == status]
        if points:
            ax.plot(*zip(*points), marker=marker, color=color, linestyle="none", label=STATUS_WORDS[status])
    chosen = [(n, row) for n, row in valued if best and row.trial_id == best.get("trial_id")]
    caption = f"{len(valued)} trials' best {metric}, in the order they started"
    if chosen:
        (n, row), = chosen
        ax.plot([n], [row.best], marker="*", markersize=18, color="gold", markeredgecolor="black", linestyle="none",
                label=f"best trial ({row.trial_id})")
        ax.annotate(f"{row.best:.4f}", (n, row.best), xytext=(8, -4), textcoords="offset points")
        at = best.get("judged_at_epoch")
        caption += f"; star: the best trial{f', judged against the others at epoch {at}' if at else ''}"
    ax.set_xlabel("trial, in the order it started")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"{metric} (best epoch)")
    ax.set_title("Optimisation history")
    ax.legend(loc="best")
    figure.tight_layout()
    return figure, caption


def importance_figure(study: optuna.Study, seed: int = 0) -> tuple[Figure | None, str]:
    """Optuna's fANOVA parameter importances over the completed trials."""
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_param_importances

    n = completed(study)
    if n < 2:
        return None, f"importances need at least 2 completed trials; this search has {n}"
    values = {t.values[0] for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    if len(values) == 1:  # fANOVA refuses a target without variance ("zero total variance in all trees")
        return None, f"importances need trials that score differently; all {n} completed trials scored {values.pop():g}"
    evaluator = FanovaImportanceEvaluator(seed=seed)
    return _optuna_plot(plot_param_importances, study, evaluator=evaluator, **_target(study)), (
        f"Optuna's FanovaImportanceEvaluator (seed {seed}) on the {n} completed trials")


def parallel_figure(study: optuna.Study) -> tuple[Figure | None, str]:
    """Optuna's parallel-coordinate plot of the completed trials."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    n = completed(study)
    if n < 2:
        return None, f"parallel coordinates need at least 2 completed trials; this search has {n}"
    return _optuna_plot(plot_parallel_coordinate, study, **_target(study)), f"the {n} completed trials"


def rungs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """Epochs at which ASHA judges trials: grace, grace*R, grace*R^2, ... below the budget."""
    out, epoch = [], grace_period
    while epoch < max_epochs:
        out.append(epoch)
        epoch *= reduction_factor
    return out


def curves_figure(table: pd.DataFrame, metric: str, rung_epochs: list[int], best_id: str | None = None) -> Figure:
    """Every trial's validation metric per epoch, its end marked by how it ended; ASHA's rungs dashed, the best bold."""
    from tuner.results import STATUS_WORDS

    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(9, 5))
    for status, (color, marker) in STATUS_STYLES.items():
        rows = table[table["status"] == status]
        for i, row in enumerate(rows.itertuples()):
            curve = list(row.objective_per_epoch)
            if not curve:
                continue
            epochs = range(1, len(curve) + 1)
            if row.trial_id == best_id:
                ax.plot(epochs, curve, color="black", linewidth=2.5, zorder=3, label=f"best trial ({best_id})")
            else:
                ax.plot(epochs, curve, color=color, alpha=0.6, linewidth=1)
            ax.plot([len(curve)], [curve[-1]], marker=marker, color=color, linestyle="none",
                    label=STATUS_WORDS[status] if i == 0 else None)
    for epoch in rung_epochs:
        ax.axvline(epoch, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("epoch (dashed: ASHA rungs)")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves of every trial")
    ax.legend(loc="best")
    figure.tight_layout()
    return figure


def front_figure(table: pd.DataFrame, metric: str, cost: str, front_ids: set[str]) -> Figure:
    """Completed trials by task metric and one cost measure; the Pareto front coloured, the dominated grey."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5))
    done = table[table["status"] == "completed"]
    on_front = done["trial_id"].isin(front_ids)
    ax.scatter(done.loc[~on_front, cost], done.loc[~on_front, "best"], color="lightgray", label="dominated")
    front = done[on_front].sort_values(cost)
    ax.plot(front[cost], front["best"], marker="o", color="tab:blue", label="Pareto front")
    for row in front.itertuples():
        ax.annotate(row.trial_id, (getattr(row, cost), row.best), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel(cost)
    ax.set_ylabel(f"{metric} (best epoch)")
    ax.set_title(f"Trade-off: {metric} against {cost} (trials that ran every epoch)")
    ax.legend(loc="best")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------- a trained model


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def roc_figure(pred: dict, classes: tuple[str, ...]) -> Figure:
    """One-vs-rest ROC curve per class with its AUC in the legend (scikit-learn's curves)."""
    from sklearn.metrics import RocCurveDisplay

    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 5.5))
    probs = _softmax(pred["output"])
    for k, name in enumerate(classes):
        RocCurveDisplay.from_predictions(pred["label"] == k, probs[:, k], name=f"{name} vs rest", ax=ax,
                                         plot_chance_level=k == len(classes) - 1)
    ax.set_title("ROC, one class against the rest (test split)")
    figure.tight_layout()
    return figure


def confusion_figure(pred: dict, classes: tuple[str, ...]) -> Figure:
    """The confusion matrix of the arg-max class (scikit-learn's display), rows the true class."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(5.5, 5))
    ConfusionMatrixDisplay.from_predictions(pred["label"], pred["output"].argmax(axis=1),
                                            labels=list(range(len(classes))), display_labels=list(classes),
                                            ax=ax, colorbar=False)
    ax.set_title("Confusion matrix (test split)")
    figure.tight_layout()
    return figure


def _mean_sigma(pred: dict) -> tuple[np.ndarray, np.ndarray | None]:
    out = pred["output"]
    return out[:, 0], (np.exp(0.5 * out[:, 1]) if out.shape[1] > 1 else None)


def mass_figure(pred: dict, quantity: str = "log10(m_a / eV)") -> Figure:
    """Predicted against true target (by default log10 axion mass), with the Gaussian head's 1-sigma bars."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 5.5))
    mean, sigma = _mean_sigma(pred)
    ax.errorbar(pred["target"], mean, yerr=sigma, fmt="o", markersize=3, alpha=0.6, elinewidth=0.6)
    low, high = float(np.min(pred["target"])), float(np.max(pred["target"]))
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="prediction = truth")
    ax.set_xlabel(f"true {quantity}")
    ax.set_ylabel(f"predicted {quantity}")
    mae = float(np.mean(np.abs(mean - pred["target"])))
    ax.set_title(f"{quantity} on the test split (MAE {mae:.3f} dex)")
    ax.legend(loc="best")
    figure.tight_layout()
    return figure


def coverage(pred: dict, levels: np.ndarray) -> np.ndarray:
    """Fraction of true masses inside the central ``p`` interval of the predicted Gaussian, per level p."""
    from scipy.stats import norm

    mean, sigma = _mean_sigma(pred)
    z = norm.ppf(0.5 + levels / 2)
    return np.array([np.mean(np.abs(pred["target"] - mean) <= zi * sigma) for zi in z])


def coverage_figure(pred: dict) -> Figure:
    """Calibration of the Gaussian head: observed coverage against nominal level (diagonal = calibrated)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(5.5, 5))
    levels = np.linspace(0, 1, 21)
    ax.plot(levels, coverage(pred, levels), marker="o", label="observed")
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, label="calibrated")
    ax.set_xlabel("nominal level p of the central interval")
    ax.set_ylabel("fraction of true masses inside")
    ax.set_title("Coverage of the predicted uncertainty (test split)")
    ax.legend(loc="best")
    figure.tight_layout()
    return figure


def score_figure(pred: dict, classes: tuple[str, ...]) -> Figure:
    """Anomaly-score histograms, one per class (no_sub is the normal class)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7, 5))
    scores = pred["output"][:, 0]
    bins = np.histogram_bin_edges(scores, bins=40)
    for k, name in enumerate(classes):
        chosen = scores[pred["label"] == k]
        if len(chosen):
            ax.hist(chosen, bins=bins, alpha=0.5, label=f"{name} ({len(chosen)})", density=True)
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("density")
    ax.set_title("Anomaly scores per class (test split)")
    ax.legend(loc="best")
    figure.tight_layout()
    return figure


def anomaly_roc_figure(pred: dict) -> Figure:
    """ROC of substructure (any class but no_sub) against no_sub, by anomaly score."""
    from sklearn.metrics import RocCurveDisplay

    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(6, 5.5))
    RocCurveDisplay.from_predictions(pred["label"] != 0, pred["output"][:, 0], name="substructure vs no_sub",
                                     ax=ax, plot_chance_level=True)
    ax.set_title("Anomaly ROC (test split)")
    figure.tight_layout()
    return figure


def training_figure(history: list[dict], metric: str) -> Figure:
    """Training loss and the validation metric per epoch of one training run."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(7, 4.5))
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row.get("train_loss", math.nan) for row in history], marker="o", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    if any(metric in row for row in history):
        other = ax.twinx()
        other.plot(epochs, [row.get(metric, math.nan) for row in history], marker="s", color="tab:orange",
                   label=metric)
        other.set_ylabel(metric)
        other.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.set_title("Training curve")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------- a comparison


def compare_figure(table: pd.DataFrame, metric: str, cost: str = "params") -> Figure:
    """Each model's test metric with its 95% interval against its cost (log scale)."""
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(8, 5))
    usable = table[table["status"] == "ok"]
    for row in usable.itertuples():
        x = getattr(row, cost)
        value = getattr(row, metric)
        yerr = [[value - row.ci_low], [row.ci_high - value]]
        ax.errorbar([x], [value], yerr=yerr, fmt="o", capsize=4, label=row.model)
    ax.set_xscale("log")
    ax.set_xlabel(cost)
    ax.set_ylabel(f"{metric} (test split, 95% bootstrap interval)")
    ax.set_title(f"{metric} against {cost}")
    ax.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------- a trained model's figures, by name
# A task lists the figures of its models by these names (trainables.loop.Task.figures); the report draws
# them in that order and branches on no task. Each returns (file suffix, figure or None, caption or reason).

ModelFigure = Callable[[dict, tuple[str, ...]], tuple[str, "Figure | None", str]]


def _quantity(classes: tuple[str, ...]) -> str:
    """The regression target's quantity, from the classes that carry one."""
    from lensdata.names import SUBSTRUCTURE_PARAMETERS

    quantities = [SUBSTRUCTURE_PARAMETERS[c] for c in classes if c in SUBSTRUCTURE_PARAMETERS]
    return quantities[0] if len(quantities) == 1 else "log10(m_a / eV)"


def _coverage(pred: dict, classes: tuple[str, ...]) -> tuple[str, Figure | None, str]:
    if pred["output"].shape[1] > 1:
        return "coverage", coverage_figure(pred), "Gaussian head: coverage per level"
    return "coverage", None, "this model has a point head (no predicted uncertainty), so no coverage curve"


MODEL_FIGURES: dict[str, ModelFigure] = {
    "roc": lambda pred, classes: ("roc", roc_figure(pred, classes), "one-vs-rest ROC per class"),
    "confusion": lambda pred, classes: ("confusion", confusion_figure(pred, classes), "arg-max class"),
    "mass": lambda pred, classes: ("mass", mass_figure(pred, _quantity(classes)),
                                   f"predicted against true {_quantity(classes)}"),
    "coverage": _coverage,
    "scores": lambda pred, classes: ("scores", score_figure(pred, classes), "anomaly score per class"),
    "anomaly_roc": lambda pred, classes: ("roc", anomaly_roc_figure(pred), "substructure against no_sub"),
}


# ---------------------------------------------------------------- a campaign (tuner.companion)

_KIND_STYLE = {"tuned": "-", "hand-set": "--", "baseline": ":"}
_ANCHOR_MARKERS = ("*", "P", "X", "D", "h")


def _plain(text: str) -> str:
    """A name as matplotlib shows it verbatim: no mathtext from a ``$``, no legend entry hidden by a leading ``_``."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _budget_x(budget: str, all_at: float) -> float:
    return all_at if budget == "all" else float(budget)


def budget_figure(points: pd.DataFrame, anchors: list) -> Figure:
    """Each model's test metric with its 95% interval against labelled images per class, one panel per metric.

    ``points`` has one row per (metric, model, budget): columns ``metric``, ``model``, ``kind``, ``space``,
    ``budget`` ("100" ... or "all"), ``value``, ``ci_low`` and ``ci_high``. The x axis is logarithmic with
    "all" drawn at its right end; with a single budget the models are bars instead. Tuned models are solid,
    hand-set dashed (the same colour per space), baselines grey dotted. ``anchors`` (objects with ``metric``,
    ``points`` and ``label``) are published results, drawn in black on the panel of their metric.
    """
    plt = _pyplot()
    metrics = list(dict.fromkeys(points["metric"]))
    budgets = set(points["budget"])
    figure, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.8), squeeze=False)
    spaces = list(dict.fromkeys(s for s in points["space"] if isinstance(s, str)))
    colours = {space: plt.get_cmap("tab10")(i % 10) for i, space in enumerate(spaces)}
    anchors = [a for a in anchors if a.metric in metrics]
    named = budgets | {b for a in anchors for b in a.points}
    ticks = sorted(float(b) for b in named if b != "all")
    for ax, metric in zip(axes.flat, metrics):
        mine = points[points["metric"] == metric]
        drawn = [a for a in anchors if a.metric == metric]
        if len(budgets) == 1:
            _budget_bars(ax, mine, drawn, colours)
        else:
            _budget_curves(ax, mine, drawn, colours, ticks)
        ax.set_ylabel(f"{metric} (test split, 95% interval)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
    figure.tight_layout()
    return figure


def _model_style(row, colours: dict, baseline_index: int) -> dict:
    if row.kind == "baseline":
        return {"color": "gray", "linestyle": ":", "marker": ("s", "^", "v", "D", "p")[baseline_index % 5]}
    return {"color": colours.get(row.space, "tab:blue"), "linestyle": _KIND_STYLE.get(row.kind, "-"), "marker": "o"}


def _budget_curves(ax, points: pd.DataFrame, anchors: list, colours: dict, ticks: list[float]) -> None:
    all_at = 4 * ticks[-1] if ticks else 1.0  # "all" a little beyond the largest budget, on its own tick
    models = list(dict.fromkeys(points["model"]))
    baselines = [m for m in models if (points.loc[points["model"] == m, "kind"] == "baseline").any()]
    for i, model in enumerate(models):
        rows = points[points["model"] == model]
        rows = rows.assign(x=[_budget_x(b, all_at) for b in rows["budget"]]).sort_values("x")
        first = next(rows.itertuples())
        style = _model_style(first, colours, baselines.index(model) if model in baselines else 0)
        dodge = 10 ** (0.012 * (i - (len(models) - 1) / 2))  # side by side at a budget, on the log axis
        low = (rows["value"] - rows["ci_low"]).fillna(0).clip(lower=0)
        high = (rows["ci_high"] - rows["value"]).fillna(0).clip(lower=0)
        ax.errorbar(rows["x"] * dodge, rows["value"], yerr=[low, high], capsize=3, markersize=5, label=_plain(model),
                    **style)
    for k, anchor in enumerate(anchors):
        ordered = sorted(anchor.points.items(), key=lambda item: _budget_x(item[0], all_at))
        ax.plot([_budget_x(b, all_at) for b, _ in ordered], [v for _, v in ordered], color="black",
                linewidth=0.8, alpha=0.6, marker=_ANCHOR_MARKERS[k % len(_ANCHOR_MARKERS)], markersize=9,
                label=_plain(anchor.label))
    ax.set_xscale("log")
    shown_all = "all" in set(points["budget"]) or any("all" in a.points for a in anchors)
    ax.set_xticks([*ticks, all_at] if shown_all else ticks,
                  [f"{t:,.0f}" for t in ticks] + (["all"] if shown_all else []))
    ax.minorticks_off()
    ax.set_xlabel("labelled images per class (log scale; all: the full training set)")


def _budget_bars(ax, points: pd.DataFrame, anchors: list, colours: dict) -> None:
    budget = points["budget"].iloc[0]
    rows = points.reset_index(drop=True)
    baselines = list(dict.fromkeys(rows.loc[rows["kind"] == "baseline", "model"]))
    for i, row in enumerate(rows.itertuples()):
        style = _model_style(row, colours, baselines.index(row.model) if row.model in baselines else 0)
        low, high = np.nan_to_num([row.value - row.ci_low, row.ci_high - row.value]).clip(min=0)
        ax.bar([i], [row.value], yerr=[[low], [high]], capsize=4, color=style["color"], alpha=0.8,
               hatch="//" if row.kind == "hand-set" else None)  # named by its tick
    for k, anchor in enumerate(anchors):
        if budget in anchor.points:
            ax.axhline(anchor.points[budget], color="black", linewidth=1,
                       linestyle=("-", "--", "-.", ":")[k % 4], label=_plain(anchor.label))
    ax.set_xticks(range(len(rows)), [_plain(m) for m in rows["model"]], rotation=20, ha="right", fontsize="small")
    ax.set_xlabel("model, on the full training set" if budget == "all"
                  else f"model, at {budget} labelled images per class")
