"""An evaluation campaign: a matrix of comparisons from one spec file, run as Ray tasks, resumable.

A spec (TOML) names comparisons, each a task on a data recipe with its architecture spaces and
label budgets; top-level keys are every comparison's defaults::

    name = "companion"
    preset = "quick"
    seeds = 3
    [[comparison]]
    label = "model2"
    task = "classification"
    data = "sim:model2:3600"
    spaces = ["resnet_cls", "swin_cls"]
    budgets = [100, 500, 1000]
    anchors = ["lejepa-model2"]

Each (comparison, budget) is a cell: a ``tuner compare`` run of its own under ``CAMP/cells/``,
on the data cut to that budget (:mod:`lensdata.budgets`). The runner checks every budget against
its data's classes before anything runs, cuts each (data, budget) once, just before the first cell
that needs it (later cells of the same data and budget share it), and runs the cells as Ray tasks,
``parallel_cells`` at a time. A cell coordinates: it declares no CPU of its own, since its trials
declare theirs (the preset's ``cpus_per_trial`` / ``gpus_per_trial``), so the same spec runs on a
2-core laptop and, with ``--address`` and larger sizes, on a cluster whose workers share the
campaign directory. A finished cell is never run again; ``--resume`` continues the unfinished ones
where they stopped (the comparison's own resume), and refuses a spec that changed, naming the
cells that differ. ``CAMP/results.parquet`` gathers every cell's rows and ``CAMP/index.html``
(:mod:`tuner.companion`) draws them.

A comparison's ``init_from`` may name a model of another cell of the same campaign, as a path under
``cells/`` (``init_from = "cells/model2-b500/models/resnet_cls"``): its cells then run after that one.

``--publish DIR`` copies what a repository keeps (rows, page, each cell's table and state) and
``--from DIR`` starts a campaign on another machine from such a copy: its finished cells are kept, the
rest run, and the wall time adds up across the machines.
"""

from __future__ import annotations

import json
import re
import time
import tomllib
from pathlib import Path
from typing import Any

from lensdata.files import write_json, write_text
from tuner.errors import ConfigError

SPEC_KEYS = {"name", "preset", "seed", "seeds", "num_samples", "max_epochs", "final_epochs", "time_budget",
             "concurrency", "parallel_cells", "comparison"}
COMPARISON_KEYS = {"label", "task", "data", "spaces", "budgets", "anchors", "notes", "preset", "seed", "seeds",
                   "num_samples", "max_epochs", "final_epochs", "time_budget", "concurrency", "init_from"}
SHARED_KEYS = ("preset", "seed", "seeds", "num_samples", "max_epochs", "final_epochs", "time_budget", "concurrency")
CELLS = "cells"
CELL_STATE = ("compare.json", "compare.parquet", "compare.md")  # what a published cell keeps: enough to resume
ROOT_KEYS = ("storage", "init_from")  # a cell's settings that name the campaign's directory, not what it computes
WAIT_S = 1.0  # the runner's poll of its cells: how soon it notices Ctrl-C
STOP_S = 120.0  # how long an interrupted cell may take to save its searches before the runner leaves


def load_spec(path: str | Path) -> dict:
    """Read and check a campaign spec: unknown keys, tasks, spaces, recipes, classes and anchors, one line each."""
    path = Path(path).expanduser()
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no campaign spec at {path}; give a TOML file (see docs/results/companion.toml)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML ({err}); fix the file") from None
    except OSError as err:  # a directory, or a file we may not read
        raise ConfigError(f"cannot read the campaign spec {path} ({err.strerror or err}); give a TOML file "
                          "(see docs/results/companion.toml)") from None
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; a spec has "
                          f"{', '.join(sorted(SPEC_KEYS))}")
    comparisons = spec.get("comparison")
    if not isinstance(comparisons, list) or not comparisons:
        raise ConfigError(f"{path}: no [[comparison]] table; add at least one (task, data, spaces, budgets)")
    labels = set()
    for index, comparison in enumerate(comparisons):
        _check_comparison(path, index, comparison)
        if comparison["label"] in labels:
            raise ConfigError(f"{path}: two comparisons are labelled {comparison['label']!r}; labels must differ")
        labels.add(comparison["label"])
    parallel = spec.get("parallel_cells", 1)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise ConfigError(f"{path}: parallel_cells must be a whole number >= 1, got {parallel!r}")
    return {"name": str(spec.get("name") or path.stem), "parallel_cells": parallel,
            **{key: spec[key] for key in SHARED_KEYS if key in spec}, "comparison": comparisons}


def _check_comparison(path: Path, index: int, comparison: Any) -> None:
    from lensdata.budgets import parse_budgets
    from lensdata.errors import DataError
    from lensdata.sources import parse_sim_spec
    from tuner.companion import ANCHORS

    where = f"{path}: comparison {index + 1}"
    if not isinstance(comparison, dict):
        raise ConfigError(f"{where} is not a table")
    unknown = set(comparison) - COMPARISON_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a comparison has "
                          f"{', '.join(sorted(COMPARISON_KEYS))}")
    for key in ("label", "task", "data"):
        if not isinstance(comparison.get(key), str) or not comparison[key]:
            raise ConfigError(f"{where}: {key} must be given as a non-empty string")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", comparison["label"]):
        raise ConfigError(f"{where}: label {comparison['label']!r} must be letters, digits, '.', '_' or '-' "
                          "(it names the cells' directories)")
    data = comparison["data"]
    try:
        if parse_sim_spec(data) is None and not Path(data).expanduser().exists():
            raise ConfigError(f"{where}: no dataset at {data}; give a dataset directory or a sim: recipe")
        parse_budgets(comparison.get("budgets", ["all"]))
    except DataError as err:
        raise ConfigError(f"{where}: {err}") from None
    for anchor in comparison.get("anchors", []):
        if anchor not in ANCHORS:
            raise ConfigError(f"{where}: unknown anchor {anchor!r}; known: {', '.join(sorted(ANCHORS))}")


def cell_name(label: str, budget: str) -> str:
    """A cell's directory name under ``CAMP/cells/`` (the page finds it by :func:`tuner.companion.cell_dir`)."""
    from tuner.companion import cell_dir

    return cell_dir(Path(), label, budget).name


def expand(spec: dict, root: Path) -> dict[str, dict]:
    """Every cell's comparison settings (``tuner.comparison.compare_settings``), by cell name, in spec order."""
    from lensdata.budgets import budget_name, parse_budgets
    from lensdata.errors import DataError
    from search_spaces.errors import SpaceError
    from tuner.comparison import compare_settings

    cells = {}
    for comparison in spec["comparison"]:
        shared = {key: comparison.get(key, spec.get(key)) for key in SHARED_KEYS}
        source = comparison.get("init_from")
        init_cell = _init_cell(source)
        for budget in parse_budgets(comparison.get("budgets", ["all"])):
            name = cell_name(comparison["label"], budget_name(budget))
            try:
                settings = compare_settings(
                    comparison["task"], spaces=comparison.get("spaces"), preset=shared["preset"],
                    data=comparison["data"], num_samples=shared["num_samples"], max_epochs=shared["max_epochs"],
                    time_budget=shared["time_budget"], concurrency=shared["concurrency"],
                    seed=0 if shared["seed"] is None else shared["seed"], storage=str(root / CELLS), name=name,
                    seeds=1 if shared["seeds"] is None else shared["seeds"],  # a 0 given is refused, not made 1
                    init_from=None if init_cell else source, final_epochs=shared["final_epochs"])
            except (ConfigError, SpaceError, DataError) as err:
                raise ConfigError(f"comparison {comparison['label']}: {err}") from None
            if init_cell:  # a model still to be trained: checked when the cell runs, after the one that makes it
                settings["init_from"] = str(root / source)
            settings.update({"budget": budget_name(budget), "budget_source": comparison["data"],
                             "comparison": comparison["label"], "init_source": source, "init_cell": init_cell})
            cells[name] = settings
    for name, settings in cells.items():
        source = settings["init_cell"]
        if source is not None and source not in cells:
            raise ConfigError(f"comparison {settings['comparison']}: init_from names cell {source}, which this spec "
                              f"does not make; its cells are {', '.join(cells)}")
        if source == name:
            raise ConfigError(f"comparison {settings['comparison']}: init_from names its own cell {name}")
        if source is not None:
            _check_cell_model(settings, cells[source])
    _check_no_cycle(cells)
    return cells


def _check_cell_model(settings: dict, source: dict) -> None:
    """Refuse, before anything runs, an ``init_from`` model that its cell does not train, or whose backbone
    family differs from a space of the cell that starts from it (checked at run time, it failed every row)."""
    from tuner.comparison import check_starts, space_family

    model = Path(settings["init_source"]).name  # models/SPACE[-handset][-scratch][+seedK], as a comparison names them
    match = re.fullmatch(r"(.+?)(-handset)?(-scratch)?(\+seed[1-9][0-9]*)?", model)
    space = match.group(1)
    where = f"comparison {settings['comparison']}: init_from {settings['init_source']}"
    if space not in source["spaces"] or (match.group(3) and not source["init_from"]):
        raise ConfigError(f"{where}: cell {settings['init_cell']} trains no model {model}; its models are "
                          f"{', '.join(f'{s}, {s}-handset' for s in source['spaces'])} (and SPACE+seedK with seeds)")
    seed = match.group(4)
    if seed and int(seed.removeprefix("+seed")) >= source["seeds"]:
        others = "" if source["seeds"] == 1 else f" (or +seed1 to +seed{source['seeds'] - 1})"
        raise ConfigError(f"{where}: cell {settings['init_cell']} trains {source['seeds']} seed(s), so no model "
                          f"{model}; name the model without +seed{others}")
    try:
        check_starts(space_family(space), settings["init_source"], settings["spaces"])
    except ConfigError as err:
        raise ConfigError(f"comparison {settings['comparison']}: {err}") from None


def _check_no_cycle(cells: dict[str, dict]) -> None:
    """Refuse cells whose ``init_from`` chain comes back to itself: none of them could ever run."""
    for start in cells:
        chain, name = [start], cells[start]["init_cell"]
        while name is not None:
            if name in chain:
                loop = chain[chain.index(name):] + [name]
                raise ConfigError(f"init_from runs in a circle: {' -> '.join(loop)} (each cell starts from the "
                                  "next one's model, so none can run first); start one of them from scratch")
            chain.append(name)
            name = cells[name]["init_cell"]


def _init_cell(init_from: str | None) -> str | None:
    """The cell an ``init_from`` of the form ``cells/<cell>/models/<model>`` names, else None (a path)."""
    if not init_from:
        return None
    parts = Path(init_from).parts
    if parts[0] != CELLS:
        return None
    if len(parts) != 4 or parts[2] != "models":
        raise ConfigError(f"init_from {init_from!r}: a model of another cell is named cells/<cell>/models/<model> "
                          "(for example cells/model2-b500/models/resnet_cls)")
    return parts[1]


def check_resume(saved: dict[str, dict], cells: dict[str, dict]) -> None:
    """Refuse, in one line, a resumed campaign whose spec no longer makes the same cells."""
    differ = []
    for name in [*saved, *[c for c in cells if c not in saved]]:
        if name not in cells:
            differ.append(f"{name} (removed)")
        elif name not in saved:
            differ.append(f"{name} (new)")
        else:
            keys = sorted(k for k in {*saved[name], *cells[name]}
                          if k not in ROOT_KEYS and saved[name].get(k) != cells[name].get(k))
            if keys:
                differ.append(f"{name} ({', '.join(keys)})")
    if differ:
        raise ConfigError(f"the spec changed since this campaign started; cells that differ: {'; '.join(differ)}. "
                          "Restore the spec to resume, or start a new campaign with another --name")


def check_budgets(cells: dict[str, dict]) -> None:
    """Every cell's budget against its data's classes and its task, before anything is simulated or run."""
    from lensdata.budgets import parse_budgets
    from lensdata.errors import DataError
    from tuner.comparison import check_task_budget

    for name, settings in cells.items():
        try:
            check_task_budget(settings["task"], settings["budget_source"], parse_budgets(settings["budget"])[0])
        except DataError as err:
            raise ConfigError(f"cell {name}: {err}") from None


def cell_data(settings: dict) -> dict:
    """The cell's settings with its budget's data directory, cut on first use and shared by later cells."""
    from lensdata.budgets import label_budget, parse_budgets

    path = label_budget(settings["budget_source"], parse_budgets(settings["budget"])[0], seed=settings["seed"])
    return {**settings, "data": str(path)}


def finished(cell_dir: Path) -> bool:
    """A cell whose table and verdict are written is done and never run again."""
    path = cell_dir / "compare.json"
    return (cell_dir / "compare.parquet").is_file() and path.is_file() and "verdict" in json.loads(path.read_text())


def run_cell(cell_dir: str, settings: dict) -> dict:
    """One cell (a comparison at one budget), inside a Ray task: search, train, test, table."""
    import ray

    from tuner.comparison import run_architectures, saved_settings
    from tuner.driver import Interrupts
    from tuner.report import compare_report
    from tuner.runlock import run_lock
    from tuner.verdict import write_table

    directory = Path(cell_dir)
    start = time.perf_counter()
    with run_lock(directory):
        settings = saved_settings(directory, settings, resume=(directory / "compare.json").is_file())
        with Interrupts() as interrupts:
            rows = [*run_architectures(directory, settings, ray, interrupts)]
        if interrupts.received:
            return {"status": "interrupted", "wall_s": time.perf_counter() - start}
        table, _ = write_table(directory, settings, rows)
        compare_report(directory)  # the cell's own page, which the campaign's page links to
    ok = bool((table["status"] == "ok").any())
    return {"status": "ok" if ok else "failed", "wall_s": time.perf_counter() - start}


def run_cells(root: Path, cells: dict[str, dict], parallel: int, ray: Any, tally: dict) -> None:
    """Run the unfinished cells as Ray tasks, ``parallel`` at a time.

    ``tally`` collects, as they happen (so an interrupted run still accounts for them), each cell's
    outcome (``tally["cells"]``: status and wall time) and the seconds spent making and cutting data
    (``tally["data_s"]``).
    """
    remote = ray.remote(num_cpus=0, max_retries=0)(run_cell)  # its trials declare the CPUs and GPUs
    # Smallest budget first, across comparisons (then spec order): a short run gives each its first point.
    order = sorted(cells, key=lambda name: (float("inf") if cells[name]["budget"] == "all"
                                            else int(cells[name]["budget"])))
    todo = [name for name in order if not finished(root / CELLS / name)]
    for name in cells:
        if name not in todo:
            print(f"cell {name}: finished before, kept", flush=True)
    pending: dict[Any, str] = {}
    outcomes = tally.setdefault("cells", {})
    tally.setdefault("data_s", 0.0)
    started: dict[str, float] = {}
    try:
        while todo or pending:
            while todo and len(pending) < parallel:
                name = _next_ready(root, cells, todo, pending.values())
                if name is None:
                    break  # every cell left waits for a running one's model
                todo.remove(name)
                start = time.perf_counter()
                settings = cell_data(cells[name])
                tally["data_s"] += time.perf_counter() - start
                print(f"cell {name}: running", flush=True)
                pending[remote.remote(str(root / CELLS / name), settings)] = name
                started[name] = time.perf_counter()
            if not pending:  # nothing runs and nothing can start: the cells they need did not finish
                for name in todo:
                    source = cells[name]["init_cell"]
                    outcomes[name] = {"status": "failed", "wall_s": None,
                                      "reason": f"init_from's cell {source} has no finished model"}
                    print(f"cell {name}: not run, its init_from cell {source} did not finish", flush=True)
                break
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)  # a timeout lets Ctrl-C in
            for ref in done:
                name = pending.pop(ref)
                try:
                    outcomes[name] = ray.get(ref)
                except ray.exceptions.RayError as err:
                    outcomes[name] = {"status": "failed", "reason": str(err).splitlines()[0], "wall_s": None}
                print(f"cell {name}: {outcomes[name]['status']}"
                      + (f" in {outcomes[name]['wall_s']:.0f} s" if outcomes[name].get("wall_s") else ""), flush=True)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)  # the cell's search takes it as its own Ctrl-C: it saves its state and returns
        ray.wait(list(pending), num_returns=len(pending), timeout=STOP_S)
        for name in pending.values():  # their time is the cells', not the runner's overhead
            outcomes[name] = {"status": "interrupted", "wall_s": time.perf_counter() - started[name]}
        raise


def _next_ready(root: Path, cells: dict[str, dict], todo: list[str], running: Any) -> str | None:
    """The first cell to run whose ``init_from`` cell, if any, has finished (its model is there)."""
    running = set(running)
    for name in todo:
        source = cells[name].get("init_cell")
        if source is None or finished(root / CELLS / source):
            return name
        if source not in running and source not in todo:
            return name  # its source will not run here: let it run and say what is missing
    return None


def gather(root: Path, cells: dict[str, dict], out: Path | None = None) -> Any:
    """``CAMP/results.parquet`` (or ``out``): every finished cell's rows with its comparison, task, data
    and budget."""
    import numpy as np
    import pandas as pd

    frames = []
    for name, settings in cells.items():
        cell_dir = root / CELLS / name
        if not finished(cell_dir):
            continue
        if not (cell_dir / "report.html").is_file():  # a cell finished by an older runner, or interrupted here
            from tuner.report import compare_report

            compare_report(cell_dir)
        summary = json.loads((cell_dir / "compare.json").read_text())
        table = pd.read_parquet(cell_dir / "compare.parquet")
        metric = summary["metric"]
        budget = settings["budget"]
        frames.append(table.assign(
            comparison=settings["comparison"], task=settings["task"], data=settings["budget_source"],
            budget=budget, budget_n=np.nan if budget == "all" else float(budget), metric=metric,
            mode=summary["mode"], value=table[metric] if metric in table else np.nan,
            space=[_space(model) for model in table["model"]]))
    first = ["comparison", "task", "data", "budget", "budget_n", "model", "kind", "space", "status", "reason",
             "metric", "mode", "value", "ci_low", "ci_high", "seeds"]
    results = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=first)
    results = results[[c for c in first if c in results] + [c for c in results if c not in first]]
    out = out or root / "results.parquet"
    tmp = out.with_name(f".{out.name}.tmp")
    results.to_parquet(tmp, index=False)
    tmp.replace(out)
    return results


def _space(model: str) -> str | None:
    """``swin_cls (tuned)`` (or ``(tuned, from scratch)``) -> ``swin_cls``; a baseline has no space."""
    name, _, kind = model.rpartition(" (")
    return name if kind.rstrip(")").split(",")[0] in ("tuned", "hand-set") else None


def campaign_state(root: Path, spec: dict, cells: dict[str, dict], resume: bool) -> dict:
    """A new campaign writes its spec and cells; ``--resume`` checks the spec still makes the same cells."""
    path = root / "campaign.json"
    if path.is_file() and (resume or not never_ran(root)):
        if not resume:
            raise ConfigError(f"campaign {root} already exists; add --resume to continue it, or choose another --name")
        state = json.loads(path.read_text())
        check_resume(state["cells"], cells)
        return state
    if resume:
        raise ConfigError(f"nothing to resume at {root}; check --name and --storage")
    root.mkdir(parents=True, exist_ok=True)
    state = {"spec": spec, "cells": cells, "wall_s": 0.0, "overhead_s": 0.0, "data_s": 0.0, "cell_s": 0.0}
    write_json(path, state)
    return state


def never_ran(root: Path) -> bool:
    """Whether the campaign at ``root`` wrote its state but then never started (its start failed, e.g. on an
    unreachable ``--address``): no session's times recorded, no cell directory, nothing adopted. The same
    command then starts it as new, corrected or not, as ``search`` and ``compare`` do after a failed start."""
    try:
        state = json.loads((root / "campaign.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    return (isinstance(state, dict) and not state.get("wall_s") and "adopted_from" not in state
            and not (root / CELLS).exists())


def record_times(root: Path, wall: float, data: float, cells: dict[str, dict]) -> dict:
    """Add this session's wall, data-cutting and in-cell seconds; the runner's overhead is the rest."""
    path = root / "campaign.json"
    state = json.loads(path.read_text())
    in_cells = sum(o["wall_s"] or 0.0 for o in cells.values())
    state["wall_s"] = state.get("wall_s", 0.0) + wall
    state["data_s"] = state.get("data_s", 0.0) + data
    state["cell_s"] = state.get("cell_s", 0.0) + in_cells
    state["overhead_s"] = state["wall_s"] - state["data_s"] - state["cell_s"]
    write_json(path, state)
    return state


def publish(campaign_dir: Path, out: Path) -> Path:
    """Copy what a repository keeps of a campaign into ``out``: its settings and times, every row, each
    cell's table and verdict (``cells/<cell>/compare.md``, and for a finished cell the state :func:`adopt`
    resumes from), the page with its figures, drawn there, and its tables as markdown (``tables.md``).

    The models, searches and cell reports stay in the campaign directory (they weigh megabytes).
    """
    import shutil

    from tuner.companion import campaign_summary_markdown, write_page
    from tuner.report import FIGURES

    if not (campaign_dir / "campaign.json").is_file():
        raise ConfigError(f"{campaign_dir} is not a campaign directory (campaign.json); give the directory a "
                          "campaign run wrote (--storage and --name as it ran)")
    check_publish_dir(campaign_dir, out)
    state = json.loads((campaign_dir / "campaign.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    _copy(campaign_dir / "campaign.json", out / "campaign.json")
    gather(campaign_dir, state["cells"], out / "results.parquet")  # the cells as they are now, running or not
    for cell in sorted(path.parent for path in (campaign_dir / CELLS).glob("*/compare.md")):
        (out / CELLS / cell.name).mkdir(parents=True, exist_ok=True)
        kept = CELL_STATE if finished(cell) else ("compare.md",)  # a running cell's state is still changing
        for name in kept:
            if (cell / name).is_file():
                _copy(cell / name, out / CELLS / cell.name / name)
    stale = out / FIGURES
    if stale.is_dir():
        shutil.rmtree(stale)  # figures of comparisons the page no longer draws (out is a published copy)
    page = write_page(out)
    write_text(out / "tables.md", campaign_summary_markdown(out) + "\n")  # the same tables, for GitHub
    return page


def check_publish_dir(campaign_dir: Path, out: Path) -> None:
    """Refuse, in one line and before anything is written, a ``--publish`` directory that is not ours to fill:
    a file, the campaign itself, a dataset (or a folder inside one), or a folder holding other files but no
    published campaign (``campaign.json``), where the copy would overwrite its ``index.html`` and the like
    and delete its ``figures/``. A directory that ``--publish`` wrote, such as ``docs/results`` with its
    README beside the copy, is refreshed."""
    from lensdata.checks import check_not_a_dataset
    from tuner.report import FIGURES

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--publish {out} is a file; give a directory (a new one, or one --publish wrote)")
    if out.resolve() == campaign_dir.resolve():
        raise ConfigError(f"--publish {out} is the campaign directory itself; give another directory, such as "
                          "docs/results")
    check_not_a_dataset(out, "a published campaign", "--publish directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "campaign.json").is_file():
        raise ConfigError(f"--publish {out} holds other files and no published campaign (campaign.json); the copy "
                          f"would overwrite its index.html and {FIGURES}/; give a new or empty directory, or one "
                          "--publish wrote")


def _copy(src: Path, dst: Path) -> None:
    """Copy a file so that ``dst`` is the old file or the new one, never a part (``--from`` reads these)."""
    import os
    import shutil

    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        shutil.copy2(src, tmp)
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def adopt(root: Path, published: Path, spec: dict, cells: dict[str, dict]) -> list[str]:
    """Start the campaign directory ``root`` from a published copy (``--publish DIR``, ``--from DIR``).

    Every finished cell the copy holds is kept, when the spec still makes it with the same settings
    (a cell that differs, or that the spec dropped, is refused in one line, naming it); the copy's times
    carry over, so the campaign's wall time adds up across machines. Cells the spec adds, and those the
    copy holds unfinished, run as new. Returns the kept cells.
    """
    import shutil

    if (root / "campaign.json").exists():
        raise ConfigError(f"campaign {root} already exists; continue it with --resume (without --from), "
                          "or choose another --name")
    path = published / "campaign.json"
    if not path.is_file():
        raise ConfigError(f"{published} holds no published campaign (campaign.json); give the directory that "
                          "campaign --publish wrote (e.g. docs/results)")
    try:
        state = json.loads(path.read_text())
        saved = state["cells"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise ConfigError(f"{path} is not a campaign's state; publish the campaign again") from None
    kept = [name for name in saved if finished(published / CELLS / name)]
    check_resume({name: saved[name] for name in kept}, {name: cells[name] for name in kept if name in cells})
    if (root / CELLS).exists():
        raise ConfigError(f"{root / CELLS} exists but no campaign.json beside it (an earlier --from that stopped "
                          "part way?); remove that directory, or choose another --name")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{CELLS}.adopting"  # the cells appear whole, then campaign.json marks the campaign
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name in kept:
        (tmp / name).mkdir()
        for file in CELL_STATE:
            if (published / CELLS / name / file).is_file():
                shutil.copy2(published / CELLS / name / file, tmp / name / file)
    tmp.rename(root / CELLS)
    write_json(root / "campaign.json", {**state, "spec": spec, "cells": cells,
                                        "adopted_from": str(published.resolve()), "adopted_cells": kept})
    return kept
