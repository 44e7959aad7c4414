"""The many-workers replay: a search cut at its target measures what the whole search does, and the
script's result line holds every strategy's ratios beside random search's at the same worker count."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import lctable  # noqa: E402
import workers  # noqa: E402
from replay import RayReplay, Table, seed_everything, syne_tune_replay  # noqa: E402

EPOCHS = 6


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Table:
    """30 tiny swin_cls configurations with made-up learning curves, a few of which reach the target."""
    spec = lctable.TableSpec("swin_cls", epochs=EPOCHS, configs=30, train_images=60, size="tiny")
    params, _ = lctable.draw_params(spec)
    rng = np.random.default_rng(2)
    curves = {}
    for i in range(len(params)):
        skill, speed, seconds = rng.uniform(0.55, 0.98), rng.uniform(0.5, 3), rng.uniform(0.5, 2.0)
        curves[i] = [{"epoch": e, "wall_s": seconds * e + 0.2, "diverged": 0, "val_loss": 1.0,
                      "val_auroc": 0.5 + (skill - 0.5) * (1 - math.exp(-e / speed)),
                      "train_s": seconds * 0.8, "val_s": seconds * 0.2, "train_images": 60.0}
                     for e in range(1, EPOCHS + 1)]
    return Table.read(lctable.write_table(spec, curves, params, tmp_path_factory.mktemp("tables"), "test"))


def replay(table, name, w, seed, cut: bool):
    seed_everything(seed)
    kind, build = workers.strategy(name, w)
    reached = workers.Reached(table)
    n = workers.n_trials(w)
    if kind == "syne":
        scheduler = build(table, seed, [], {})
        return syne_tune_replay(table, workers.SyneUntilTarget(scheduler, reached) if cut else scheduler,
                                n_trials=n, concurrency=w)
    searcher, scheduler = build(table, seed, [], {})
    return RayReplay(table, workers.until_target(searcher, reached) if cut else searcher, scheduler,
                     n_trials=n, concurrency=w).replay()


@pytest.mark.parametrize("name", ["tpe+asha", "random+fifo", "centred+asha", "peer:st-asha"])
def test_a_search_cut_at_the_target_reaches_it_as_the_whole_search_does(table, name):
    shorter = []
    for seed in range(3):
        whole, cut = replay(table, name, 4, seed, False), replay(table, name, 4, seed, True)
        m_whole, m_cut = whole.measures(table), cut.measures(table)
        assert m_cut["epochs_to_target"] == m_whole["epochs_to_target"]
        assert m_cut["seconds_to_target"] == m_whole["seconds_to_target"]
        shorter.append(len(cut.reports) < len(whole.reports))
    assert any(shorter)  # the cut happened: the target was reached before the search's end


def test_our_strategies_start_up_with_as_many_random_trials_as_workers(table):
    searcher, _ = workers.strategy("tpe+asha", 32)[1](table, 0, [], {})
    assert searcher._sampler._n_startup_trials == 32
    assert workers.n_trials(8) == 40 and workers.n_trials(32) == 128 and workers.n_trials(256) == workers.MAX_TRIALS


def test_ratios_are_the_baselines_median_over_the_strategys():
    rows = [{"space": "t", "workers": 8, "strategy": n, "seed": s, "seconds_to_target": sec, "epochs_to_target": ep,
             "reached": math.isfinite(sec), "on_default_row": 0.0, "replay_s": 0.1}
            for n, values in {"random+fifo": [(10, 40), (20, 60), (30, 80)], "tpe+asha": [(5, 20), (5, 30), (10, 40)],
                              "random+asha": [(math.inf, math.inf)] * 2 + [(1, 1)]}.items()
            for s, (sec, ep) in enumerate(values)]
    cell = workers.cells(rows)["t"][8]
    assert cell["random+fifo"]["x_seconds"] == 1.0
    assert cell["tpe+asha"]["x_seconds"] == pytest.approx(20 / 5) and cell["tpe+asha"]["x_epochs"] == 2.0
    assert cell["random+asha"]["x_seconds"] == 0.0 and cell["random+asha"]["reached"] == pytest.approx(1 / 3)
    assert workers.pick_per_workers({"t": {8: cell}}, "tpe+asha") == {8: "tpe+asha"}


@pytest.mark.slow
def test_the_tiny_run_prints_every_cell_beside_random_search(tmp_path):
    rows, figure = tmp_path / "rows.jsonl", tmp_path / "workers.png"
    proc = subprocess.run([sys.executable, str(BENCH / "workers.py"), "--tiny", "--rows", str(rows),
                           "--figure", str(figure)], capture_output=True, text=True, timeout=240, cwd=BENCH.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["bench"] == "workers" and line["better"] == "higher" and math.isfinite(line["ratio"])
    assert line["workers"] == [8, 32] and set(line["picks"]) == {"8", "32"}
    (space, by_w), = line["cells"].items()
    assert set(by_w) == {"8", "32"}
    for cell in by_w.values():  # the JSON line rounds ratios to 3 digits, times to 4
        assert set(cell) == set(workers.TINY) and cell["random+fifo"]["x_seconds"] == 1.0
        base = cell["random+fifo"]["seconds_to_target"]
        for s in cell.values():
            assert s["x_seconds"] == pytest.approx(base / s["seconds_to_target"], rel=1e-2)
            assert s["x_epochs"] == pytest.approx(cell["random+fifo"]["epochs_to_target"] / s["epochs_to_target"],
                                                  rel=1e-2)
    assert len(rows.read_text().splitlines()) == 2 * len(workers.TINY) * 2  # W x strategies x seeds
    assert figure.stat().st_size > 10_000
