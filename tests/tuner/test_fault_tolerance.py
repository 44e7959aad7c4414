"""A trial whose process dies mid-epoch is retried by Tune from its last checkpoint and completes.

The search runs in-process on the session's local Ray; a watcher thread reads the trial's
``result.json`` as Tune writes it and, once epoch 2 is reported (so a checkpoint exists), kills the
trial's process (the ``pid`` Ray reports with every result: a process this test's search started).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tuner.cli import main

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EPOCHS = 6  # epochs take about a second here: room to kill during epoch 3 and watch the rest resume


def reported(run_dir: Path) -> list[dict]:
    """The one trial's results so far (the last line may be half written)."""
    for path in run_dir.glob("*/result.json"):
        results = []
        for line in path.read_text().splitlines():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return results
    return []


def test_trial_killed_mid_epoch_resumes_from_its_checkpoint(ray_local, sim_model2_tiny, tmp_path, capsys):
    run_dir = tmp_path / "ft"
    killed: dict = {}
    done = threading.Event()

    def kill_after_epoch_two() -> None:
        deadline = time.monotonic() + 240
        while not done.is_set() and time.monotonic() < deadline:
            results = reported(run_dir)
            if results and results[-1]["epoch"] >= 2 and results[-1]["epoch"] < EPOCHS:
                pid = results[-1]["pid"]
                if pid != os.getpid():  # never this test process, whatever the file says
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, before=results)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_after_epoch_two, daemon=True)
    watcher.start()
    try:
        status = main(["search", "--space", "effnet_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                       "--storage", str(tmp_path), "--name", "ft", "--num-samples", "1",
                       "--max-epochs", str(EPOCHS), "--grace-period", str(EPOCHS)])
    finally:
        done.set()
        watcher.join(timeout=10)
    printed = capsys.readouterr().out
    assert killed, f"the trial never reached epoch 2 before finishing, nothing was killed:\n{printed[-2000:]}"
    assert status == 0, f"the search did not recover from the killed trial:\n{printed[-3000:]}"

    table = pq.read_table(run_dir / "trials.parquet").to_pandas()
    assert len(table) == 1 and table["status"][0] == "completed", table[["trial_id", "status", "epochs"]]
    assert table["epochs"][0] == EPOCHS and len(table["objective_per_epoch"][0]) == EPOCHS

    # Resumed, not restarted: each epoch reported exactly once, first by the killed process (at least
    # the epochs seen before the kill), then the rest by one new process.
    results = reported(run_dir)
    assert [r["epoch"] for r in results] == list(range(1, EPOCHS + 1)), [(r["epoch"], r["pid"]) for r in results]
    assert [r["training_iteration"] for r in results] == list(range(1, EPOCHS + 1))
    assert results[: len(killed["before"])] == killed["before"], "results reported before the kill were rewritten"
    pids = [r["pid"] for r in results]
    resumed_at = next((i for i, pid in enumerate(pids) if pid != killed["pid"]), None)
    assert resumed_at is not None, f"every epoch came from the killed process {killed['pid']}: {pids}"
    assert resumed_at >= len(killed["before"]) and set(pids[:resumed_at]) == {killed["pid"]}, pids
    assert len(set(pids[resumed_at:])) == 1, f"after the kill, results came from several processes: {pids}"

    # The final checkpoint carries the whole history: the first epochs came back from the checkpoint.
    trial_dir = next(run_dir.glob("*/result.json")).parent
    latest = max(trial_dir.glob("checkpoint_*"), key=lambda p: p.name)
    progress = json.loads((latest / "progress.json").read_text())
    assert progress["epoch"] == EPOCHS and [h["epoch"] for h in progress["history"]] == list(range(1, EPOCHS + 1))
