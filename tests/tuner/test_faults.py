"""Fault injection for `tuner search` and `tuner best`: hangs, kills, locks, lost state, full disks.

Every wait is bounded (pytest-timeout and explicit deadlines); everything talks to loopback only and
stops only the processes it started, by process id. Trials that must fail or diverge are nested
functions handed to the real search in place of the trainable (Ray pickles a nested function by
value, so its workers run it as it is); everything else is the real code.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import tuner.results
from lensdata.store import load_dataset, write_dataset
from tuner.cli import main
from tuner.errors import ConfigError
from tuner.experiment import PRESETS, Experiment, preset_data
from tuner.preflight import check_resources, probe_address, trial_resources
from tuner.results import _curve
from tuner.runlock import run_lock

SMOKE = ["--smoke-test", "--seed", "0"]


def search(data: Path, storage: Path, name: str, *extra: str, space: str = "effnet_cls") -> list[str]:
    return ["search", "--space", space, *SMOKE, "--data", str(data), "--storage", str(storage),
            "--name", name, *extra]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def driver(argv: list[str], **env: str) -> subprocess.Popen:
    """`python -m tuner ...` as its own process group, output merged, unbuffered."""
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": "", **env}
    return subprocess.Popen([sys.executable, "-m", "tuner", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=environ, start_new_session=True)


def read_until(proc: subprocess.Popen, prefix: str, deadline_s: float) -> list[str]:
    seen: list[str] = []
    end = time.monotonic() + deadline_s
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix) or time.monotonic() > end:
            break
    return seen


def stop(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Whatever is left of the output; the process group is killed if it has not ended in ``timeout`` s."""
    try:
        rest, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return rest or ""


# ---------------------------------------------------------------- 1. hangs: resources and the watchdog


def experiment(**changes) -> Experiment:
    base = dict(PRESETS["smoke"], data=preset_data("smoke", "classification"), space="vit_cls",
                gpus_per_trial=0.0, seed=0, storage="/tmp", name="x", preset="smoke")
    return Experiment(**{**base, **changes})


class TwoCpuNode:
    """What `check_resources` reads of a local Ray with one 2-CPU node."""

    @staticmethod
    def nodes():
        return [{"Alive": True, "Resources": {"CPU": 2.0}}]


def test_a_multi_worker_trial_asks_no_cpu_for_its_driver_so_its_workers_fill_the_node():
    exp = experiment(workers_per_trial=2, cpus_per_trial=1)
    assert not trial_resources(exp).get("cpu")  # even 0.01 made 2 x 1 CPU unplaceable on 2 CPUs
    assert check_resources(exp, TwoCpuNode) == 1
    assert trial_resources(experiment(cpus_per_trial=1)) == {"cpu": 1, "gpu": 0.0}


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_workers_per_trial_2_runs_every_trial_on_a_2_cpu_node(sim_model2_tiny, tmp_path):
    # The issue's own command, in its own process and its own local Ray (2 CPUs here): Ray Train
    # leaves the last worker group's placement group for its cleaner actor, which a shared test Ray
    # would carry into later tests.
    proc = driver(search(sim_model2_tiny, tmp_path, "w", "--num-samples", "3", "--workers-per-trial", "2",
                         "--max-epochs", "1", space="vit_cls"))
    output = stop(proc, timeout=420)
    assert proc.returncode == 0, output[-3000:]
    table = pq.read_table(tmp_path / "w" / "trials.parquet").to_pandas()
    assert len(table) == 3 and (table["status"] == "completed").all()


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_trial_that_can_never_start_ends_the_search_in_one_line(ray_local, sim_model2_tiny, tmp_path,
                                                                  monkeypatch, capsys):
    @ray_local.remote(num_cpus=2)
    class Hog:  # other Ray work holding every CPU the preflight counted
        def ready(self) -> bool:
            return True

    hog = Hog.remote()
    ray_local.get(hog.ready.remote(), timeout=60)
    monkeypatch.setenv("DEEPLENSE_TUNER_PENDING_LIMIT_S", "5")
    try:
        status = main(search(sim_model2_tiny, tmp_path, "stuck", "--num-samples", "2"))  # bounded by the timeout
    finally:
        ray_local.kill(hog)
    err = capsys.readouterr().err
    assert status == 2
    line = next(line for line in err.splitlines() if line.startswith("error: "))
    assert "waited" in line and "CPU 1 (free 0 of 2)" in line and "another --name" in line


@pytest.mark.timeout(30)  # a hang fails the test instead of waiting for ever
def test_an_address_where_nothing_listens_is_refused():
    port = closed_port()
    with pytest.raises(Exception, match=f"nothing answers at Ray address 127.0.0.1:{port}"):
        probe_address(f"127.0.0.1:{port}", timeout=2)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_search_with_a_dead_address_says_so_instead_of_hanging(how, tmp_path):
    address = f"127.0.0.1:{closed_port()}"
    argv = ["search", "--space", "swin_cls", "--smoke-test", "--storage", str(tmp_path)]
    argv += ["--address", address] if how == "flag" else []
    run = subprocess.run([sys.executable, "-m", "tuner", *argv], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RAY_ADDRESS": address if how == "env" else ""})
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: nothing answers at Ray address {address}")


# ---------------------------------------------------------------- 3, 8. results never lost or doubled


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, sim_model2_tiny, ray_local):
    """One finished smoke search, copied by the tests that damage it."""
    storage = tmp_path_factory.mktemp("runs")
    assert main(search(sim_model2_tiny, storage, "done", "--num-samples", "3")) == 0
    return storage / "done"


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / run.name
    shutil.copytree(run, target)
    return target


@pytest.mark.ray
@pytest.mark.slow
def test_best_without_rays_experiment_state_reads_each_trials_own_results(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    before = pq.read_table(run / "trials.parquet").to_pandas().set_index("trial_id")
    for state in run.glob("experiment_state-*.json"):
        state.write_text("{ not json")  # unreadable; then missing
    assert main(["best", str(run)]) == 0
    for state in run.glob("experiment_state-*.json"):
        state.unlink()
    assert main(["best", str(run)]) == 0
    after = pq.read_table(run / "trials.parquet").to_pandas().set_index("trial_id")
    assert sorted(after.index) == sorted(before.index)
    for trial_id in before.index:
        assert list(after.loc[trial_id, "objective_per_epoch"]) == pytest.approx(
            list(before.loc[trial_id, "objective_per_epoch"]))
    assert "no trial has reported" not in capsys.readouterr().out


@pytest.mark.ray
@pytest.mark.slow
def test_best_never_replaces_trials_parquet_with_fewer_rows(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    rows = pq.read_table(run / "trials.parquet").num_rows
    for state in run.glob("experiment_state-*.json"):
        state.unlink()
    for result in run.glob("*/result.json"):
        result.unlink()  # nothing left to read the trials from
    assert main(["best", str(run)]) == 0
    assert pq.read_table(run / "trials.parquet").num_rows == rows == 3
    captured = capsys.readouterr()
    assert f"holds {rows}" in captured.err and "keeping trials.parquet" in captured.err


@pytest.mark.ray
@pytest.mark.slow
def test_best_on_a_run_that_cannot_be_written_still_prints_the_leaderboard(finished_run, tmp_path, monkeypatch,
                                                                          capsys):
    run = copy_run(finished_run, tmp_path)
    before = (run / "trials.parquet").read_bytes()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tuner.results.pq, "write_table", read_only)  # root ignores chmod: fail the write itself
    assert main(["best", str(run)]) == 0
    captured = capsys.readouterr()
    assert "rank" in captured.out and "cannot update the result files" in captured.err
    assert (run / "trials.parquet").read_bytes() == before and not (run / "trials.parquet.tmp").exists()


@pytest.mark.parametrize("content, says", [("{ half", "cannot be read"), ('{"space": "x"}', "(missing concurrency"),
                                           ("[]", "not a JSON object")])
def test_best_on_a_corrupt_experiment_json_is_one_line(tmp_path, content, says, capsys):
    (tmp_path / "experiment.json").write_text(content)
    assert main(["best", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1


def test_an_epoch_reported_twice_after_a_restore_is_one_value():
    results = [{"training_iteration": i, "val_auroc": v} for i, v in zip([1, 2, 3, 3, 4], [0.5, 0.6, 0.65, 0.7, 0.8])]
    assert _curve(results, "val_auroc") == [0.5, 0.6, 0.7, 0.8]
    assert _curve(results[::-1], "val_auroc")[-1] == 0.8  # in epoch order whatever the file's order


# ---------------------------------------------------------------- 4, 7. failed and diverged trials


def run_with_trainable(monkeypatch, trainable, data, tmp_path, name, capsys) -> tuple[int, pd.DataFrame, str]:
    import trainables.trial

    monkeypatch.setattr(trainables.trial, "tune_trainable", trainable)
    status = main(search(data, tmp_path, name, "--num-samples", "2"))
    captured = capsys.readouterr()
    table = pq.read_table(tmp_path / name / "trials.parquet").to_pandas()
    return status, table, captured.out + captured.err


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_trials_failing_past_max_failures_are_errors_not_an_interrupt(ray_local, sim_model2_tiny, tmp_path,
                                                                      monkeypatch, capsys):
    def failing(config, data):
        from ray import tune

        tune.report({"val_auroc": 0.5, "epoch": 1})
        raise RuntimeError("injected fault")

    status, table, output = run_with_trainable(monkeypatch, failing, sim_model2_tiny, tmp_path, "failing", capsys)
    assert status == 1 and (table["status"] == "error").all(), output[-3000:]
    assert "interrupted" not in output and "--resume" not in output


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_search_whose_every_trial_diverged_exits_non_zero_and_says_so(ray_local, sim_model2_tiny, tmp_path,
                                                                       monkeypatch, capsys):
    def diverging(config, data):
        from ray import tune

        tune.report({"val_auroc": math.nan, "epoch": 1, "diverged": True})

    status, table, output = run_with_trainable(monkeypatch, diverging, sim_model2_tiny, tmp_path, "nan", capsys)
    assert status == 1 and (table["status"] == "diverged").all()
    assert "error: every trial diverged (2 of 2" in output and "lr" in output
    assert not (tmp_path / "nan" / "best.json").exists()


# ---------------------------------------------------------------- 5, 8. one driver, and --name without --resume


def test_a_second_driver_on_a_locked_run_is_refused_naming_the_holder(tmp_path, capsys):
    with run_lock(tmp_path / "locked"):
        assert main(search(Path("sim:model2:300"), tmp_path, "locked", "--resume")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run ") and f"process {os.getpid()}" in err and len(err.splitlines()) == 1
    with run_lock(tmp_path / "locked"):  # released when its holder let go
        pass


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_resume_while_the_search_runs_is_refused_and_the_search_carries_on(sim_model2_tiny, tmp_path, capsys):
    first = driver(search(sim_model2_tiny, tmp_path, "busy", "--num-samples", "4"))
    try:
        seen = read_until(first, "results:", 180)
        assert seen and seen[-1].startswith("results:"), "".join(seen)
        assert main(search(sim_model2_tiny, tmp_path, "busy", "--resume")) == 2
        assert f"process {first.pid}" in capsys.readouterr().err
    finally:
        output = "".join(seen) + stop(first)
    assert first.returncode == 0, output[-3000:]
    table = pq.read_table(tmp_path / "busy" / "trials.parquet").to_pandas()
    assert len(table) == 4 and (table["status"] != "error").all()


@pytest.mark.ray
def test_reusing_a_name_without_resume_is_refused_with_the_differing_settings(ray_local, tmp_path, capsys):
    saved = experiment(space="effnet_cls", storage=str(tmp_path), name="old", data="sim:model2:300")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "experiment.json").write_text(json.dumps(saved.__dict__))
    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--storage", str(tmp_path), "--name", "old",
                 "--num-samples", "9"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "num_samples 6 (this command: 9)" in err


@pytest.mark.long
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_stops_a_search_and_prints_how_to_resume(sim_model2_tiny, tmp_path):
    proc = driver(search(sim_model2_tiny, tmp_path, "term", "--num-samples", "8"))
    seen = read_until(proc, "[1/8]", 240)
    proc.send_signal(signal.SIGTERM)
    output = "".join(seen) + stop(proc)
    assert proc.returncode == 130, output[-3000:]
    assert "--resume" in output and "Traceback" not in output
    assert (tmp_path / "term" / "trials.parquet").is_file()


# ---------------------------------------------------------------- 11, flags: refused before any trial


@pytest.mark.parametrize("value, says", [("0", "--trials-per-gpu must be at least 1 (got 0)"),
                                         ("-2", "--trials-per-gpu must be at least 1 (got -2)")])
def test_trials_per_gpu_below_one_is_refused_before_ray_starts(value, says, tmp_path, capsys):
    assert main(["search", "--space", "swin_cls", "--smoke-test", "--storage", str(tmp_path),
                 "--trials-per-gpu", value]) == 2
    assert capsys.readouterr().err.strip() == f"error: {says}; it is how many trials share one GPU"


@pytest.mark.ray
@pytest.mark.parametrize("space, drop, says", [
    ("effnet_cls", "val", "the val split of this dataset is empty"),
    ("effnet_reg", "val", "the val split of this dataset is empty"),
    ("vae_anom", "val-substructure", "the val split has no substructure images"),
    ("effnet_cls", "val-one-class", "the val split holds only no_sub images"),
])
def test_a_split_the_task_needs_is_checked_before_any_trial(ray_local, sim_model2_tiny, tmp_path, space, drop,
                                                            says, capsys):
    data = load_dataset(sim_model2_tiny)
    keep = data.splits != "val" if drop == "val" else ~((data.splits == "val") & (data.labels != 0))
    damaged = tmp_path / "damaged"
    write_dataset(damaged, {"image": data.images[keep, 0], "label": data.labels[keep],
                            "split": data.splits[keep].astype(str), "target": data.targets[keep]},
                  classes=data.classes, source="test", instrument="model2", seed=0)
    assert main(search(damaged, tmp_path, "s", space=space)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s" / "experiment.json").exists()  # nothing started
    assert np.any(data.splits == "val")


# ---------------------------------------------------------------- a full disk


@pytest.mark.ray
@pytest.mark.slow
def test_a_full_disk_while_writing_results_is_one_line_and_keeps_them(finished_run, tmp_path, monkeypatch, capsys):
    run = copy_run(finished_run, tmp_path)
    before = (run / "best.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run / "best.json"))

    monkeypatch.setattr(tuner.results, "write_json", full)
    assert main(["best", str(run)]) == 0  # the leaderboard is still shown, from Ray's state
    assert "No space left on device" in capsys.readouterr().err
    assert (run / "best.json").read_bytes() == before


def test_a_full_disk_anywhere_in_a_command_is_one_line(monkeypatch, capsys):
    import tuner.commands.train

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/x.parquet")

    monkeypatch.setattr(tuner.commands.train, "train_command", full)
    assert main(["train", "--space", "swin_cls"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No space left on device writing /data/x.parquet;") and len(err.splitlines()) == 1


# ---------------------------------------------------------------- run names, credentials, settings files


@pytest.mark.parametrize("name", ["../x", "/tmp/elsewhere", ".", ".."])
def test_a_name_outside_the_storage_root_is_refused_for_search_compare_and_campaign(name, tmp_path, capsys):
    storage = tmp_path / "runs"
    spec = tmp_path / "spec.toml"
    spec.write_text(f"name = {json.dumps(name)}\npreset = \"smoke\"\n[[comparison]]\nlabel = \"m2\"\n"
                    "task = \"classification\"\ndata = \"sim:model2:300\"\nspaces = [\"effnet_cls\"]\nbudgets = [20]\n")
    for argv in (["search", "--space", "effnet_cls", "--smoke-test", "--storage", str(storage), "--name", name],
                 ["compare", "--task", "classification", "--storage", str(storage), "--name", name],
                 ["campaign", str(spec), "--storage", str(storage), "--name", name, "--publish", str(tmp_path / "p")],
                 ["campaign", str(spec), "--storage", str(storage), "--publish", str(tmp_path / "p")]):  # the spec's
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "not a plain folder name" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]  # nothing made, inside or out


@pytest.mark.parametrize("how", ["flag", "env"])
def test_credentials_in_a_ray_address_are_never_echoed(how, monkeypatch):
    import ray

    import tuner.preflight

    dead = f"ray://alice:s3cret-token@127.0.0.1:{closed_port()}"
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setenv("RAY_ADDRESS", dead if how == "env" else "")
    with pytest.raises(ConfigError) as refused:  # the probe: nothing listens there
        tuner.preflight.connect_ray(dead if how == "flag" else None, verbose=False)
    assert "s3cret" not in str(refused.value) and f"ray://***@127.0.0.1:{dead.rsplit(':', 1)[1]}" in str(refused.value)

    def init(address, **kwargs):
        raise ConnectionError(f"could not connect to {address} (token={address.split(':')[2].split('@')[0]})")

    monkeypatch.setattr(tuner.preflight, "probe_address", lambda address: None)  # past the probe: Ray's own error
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(ConfigError) as refused:
        tuner.preflight.connect_ray(dead if how == "flag" else None, verbose=False)
    assert "s3cret" not in str(refused.value) and "ray://***@127.0.0.1" in str(refused.value)


def settings_file(tmp_path: Path, **changes) -> Path:
    """A run directory holding only experiment.json: a smoke search's settings with ``changes``."""
    exp = experiment(space="effnet_cls", storage=str(tmp_path), name="run", data="sim:model2:300")
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.json").write_text(json.dumps({**exp.__dict__, **changes}))
    return run


@pytest.mark.parametrize("changes, says", [({"colour": "red"}, "does not know (colour)"),
                                           ({"num_samples": "6"}, "setting num_samples must be a whole number"),
                                           ({"objectives": [3]}, "setting objectives must hold names"),
                                           ({"space": 7}, "setting space must be a string")])
def test_best_and_report_on_an_experiment_json_of_unknown_key_or_wrong_type_are_one_line(changes, says, tmp_path,
                                                                                         capsys):
    run = settings_file(tmp_path, **changes)
    for command in ("best", "report"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {run / 'experiment.json'}") and says in err and err.count("\n") == 1, err


def test_report_with_a_directory_for_its_study_file_is_one_line(run_on_disk, capsys):
    run = run_on_disk()
    before = (run / "trials.parquet").read_bytes()
    (run / "optuna.journal").unlink()
    (run / "optuna.journal").mkdir()
    for command in ("report", "best"):
        assert main([command, str(run)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {run / 'optuna.journal'} is not a file") and err.count("\n") == 1, err
    assert (run / "trials.parquet").read_bytes() == before and not (run / "report.html").exists()


# ---------------------------------------------------------------- statuses only improve


def test_a_recorded_final_status_is_never_read_back_as_unfinished(run_on_disk, capsys):
    run = run_on_disk(trials={"done": 4, "failed": 1, "cut": 1}, errored=frozenset({"failed"}))
    recorded = {"done": "completed", "failed": "error", "cut": "stopped"}  # what the search said when it ended

    def statuses() -> dict[str, str]:
        table = pq.read_table(run / "trials.parquet").to_pandas()
        return dict(zip(table["trial_id"], table["status"]))

    assert statuses() == recorded
    # No experiment state (lost, or a snapshot from before the failure): the result files cannot tell these.
    assert main(["best", str(run)]) == 0
    assert statuses() == recorded and "unfinished" not in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    assert statuses() == recorded and "interrupted" not in (run / "report.html").read_text()
    capsys.readouterr()


def test_best_on_a_read_only_file_system_still_prints_the_leaderboard(run_on_disk, monkeypatch, capsys):
    run = run_on_disk()
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    unlink = Path.unlink

    def unlink_read_only(path, missing_ok=False):  # a read-only mount refuses even to remove a missing file
        if run in Path(path).parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(tuner.results.pq, "write_table", read_only)
    monkeypatch.setattr(Path, "unlink", unlink_read_only)
    assert main(["best", str(run)]) == 0
    captured = capsys.readouterr()
    assert "rank" in captured.out and "t1" in captured.out
    assert "warning: cannot update the result files" in captured.err and "error" not in captured.err
    assert all((run / name).read_bytes() == content for name, content in before.items())
    assert not list(run.glob("*.tmp*"))


def test_report_on_a_run_that_cannot_be_written_is_one_line(run_on_disk, monkeypatch, capsys):
    import tempfile

    run = run_on_disk()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write the report into {run} (Read-only file system); copy it")
    assert err.count("\n") == 1 and not (run / "figures").exists()


# ---------------------------------------------------------------- a full disk during a search


@pytest.mark.ray
@pytest.mark.timeout(300)
@pytest.mark.parametrize("state", ["whole", "cut short"])
def test_a_full_storage_during_a_search_is_one_line_that_keeps_what_finished_and_says_how_to_resume(
        state, ray_local, sim_model2_tiny, tmp_path, monkeypatch, capsys):
    from ray import tune

    import trainables.trial

    def two_epochs(config, data):
        from ray import tune

        for epoch in (1, 2):
            tune.report({"val_auroc": 0.5 + 0.1 * epoch, "epoch": epoch})

    fit = tune.Tuner.fit
    run = tmp_path / "full"

    def fit_on_a_full_disk(self):  # the trials run; then Ray reads back an error.pkl the full disk had cut short
        fit(self)
        if state == "cut short":  # Ray writes its experiment state in place: its last save, cut short too
            saved = max(run.glob("experiment_state-*.json"))
            saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
        raise EOFError("Ran out of input")

    usage = shutil.disk_usage

    def twelve_kib_free(path):
        total = usage(path).total
        return type(usage(path))(total, total - 12288, 12288)

    monkeypatch.setattr(trainables.trial, "tune_trainable", two_epochs)
    monkeypatch.setattr(tune.Tuner, "fit", fit_on_a_full_disk)
    monkeypatch.setattr(shutil, "disk_usage", twelve_kib_free)
    assert main(search(sim_model2_tiny, tmp_path, "full", "--num-samples", "2")) == 2
    out, err = capsys.readouterr()
    storage = tmp_path.resolve()
    assert "Traceback" not in out + err and "rank" in out  # the leaderboard of what finished
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith(f"error: the results storage {storage} is full, 12.0 KiB free (EOFError: Ran out of "
                           f"input); what finished is in {storage / 'full' / 'trials.parquet'}; ")
    table = pq.read_table(run / "trials.parquet").to_pandas()
    assert len(table) == 2 and (table["epochs"] == 2).all()
    if state == "whole":
        assert line.endswith(f"free space, then resume the search with `python -m tuner search --space effnet_cls "
                             f"--name full --storage {storage} --resume`")
        return
    assert "Ray's saved state was cut short too, so the search cannot be resumed" in line
    before = (run / "trials.parquet").read_bytes()
    assert main(search(sim_model2_tiny, tmp_path, "full", "--resume")) == 2  # Ray would start it afresh
    err = capsys.readouterr().err
    assert err.startswith("error: run full cannot be resumed: Ray's saved state experiment_state-") and \
        err.count("\n") == 1, err
    assert (run / "trials.parquet").read_bytes() == before


# ---------------------------------------------------------------- an address that answers, but not as Ray's GCS


@pytest.mark.timeout(60)  # before, Ray's client waited for ever on such a port
def test_an_address_where_the_dashboard_answers_is_refused_as_not_a_gcs():
    import http.server
    import threading

    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *args: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ConfigError) as refused:
            probe_address(address, timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert str(refused.value) == (
        f"{address} answers but is not a Ray GCS (it answers HTTP/1, so it looks like the dashboard's HTTP port); "
        "give the head's GCS port, 6379 by default, or ray://HOST:10001 for Ray Client")


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_a_ray_port_that_is_not_the_gcs_is_refused_and_the_gcs_is_not(ray_local):
    node = next(node for node in ray_local.nodes() if node["Alive"])
    raylet = f"127.0.0.1:{node['NodeManagerPort']}"  # gRPC, like Ray Client's port, but no GCS service
    with pytest.raises(ConfigError) as refused:
        probe_address(raylet, timeout=5)
    assert str(refused.value).startswith(f"{raylet} answers gRPC but is not a Ray GCS (it looks like Ray Client's port")
    probe_address(ray_local.get_runtime_context().gcs_address, timeout=5)  # the GCS itself passes


# ---------------------------------------------------------------- checkpoints gone when a search resumes


def counting_trial(fail_from: int | None):
    """A trial of 4 epochs, one checkpoint each, that continues from its checkpoint; it fails at every epoch
    from ``fail_from`` on (None: never)."""

    def trial(config, data):
        import json
        import os
        import tempfile

        from ray import tune

        start, checkpoint = 0, tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory, open(os.path.join(directory, "progress.json")) as fh:
                start = json.load(fh)["epoch"]
        for epoch in range(start + 1, 5):
            if fail_from is not None and epoch >= fail_from:
                raise RuntimeError("injected fault")
            with tempfile.TemporaryDirectory() as directory:
                with open(os.path.join(directory, "progress.json"), "w") as fh:
                    json.dump({"epoch": epoch}, fh)
                tune.report({"val_auroc": 0.5 + 0.1 * epoch, "epoch": epoch},
                            checkpoint=tune.Checkpoint.from_directory(directory))

    return trial


@pytest.mark.ray
@pytest.mark.timeout(300)
@pytest.mark.parametrize("remove, says", [
    (["checkpoint_000001"], "checkpoint_000001 no longer on disk; it resumes from checkpoint_000002 (epoch 3)"),
    (["checkpoint_000002"], "checkpoint_000002 no longer on disk; it resumes from checkpoint_000001 (epoch 2)"),
    (["checkpoint_000001", "checkpoint_000002"],
     "checkpoint_000001, checkpoint_000002 no longer on disk; it restarts from its first epoch"),
])
def test_a_resumed_trial_whose_checkpoints_are_gone_resumes_from_the_last_one_left_or_restarts(
        remove, says, ray_local, sim_model2_tiny, tmp_path, monkeypatch, capfd):
    import trainables.trial

    monkeypatch.setattr(trainables.trial, "tune_trainable", counting_trial(fail_from=4))
    assert main(search(sim_model2_tiny, tmp_path, "gone", "--num-samples", "1")) == 1  # 3 epochs, then errors
    trial_dir = next((tmp_path / "gone").glob("effnet_cls_*"))
    assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == ["checkpoint_000001", "checkpoint_000002"]
    for name in remove:  # removed after Ray's last snapshot of the experiment, as by a driver killed meanwhile
        shutil.rmtree(trial_dir / name)
    capfd.readouterr()

    monkeypatch.setattr(trainables.trial, "tune_trainable", counting_trial(fail_from=None))
    assert main(search(sim_model2_tiny, tmp_path, "gone", "--resume")) == 0
    out, err = capfd.readouterr()
    assert f"trial {trial_dir.name.removeprefix('effnet_cls_')}: {says}" in out
    assert "Traceback" not in out + err and "FileNotFoundError" not in out + err
    table = pq.read_table(tmp_path / "gone" / "trials.parquet").to_pandas()
    assert list(table["status"]) == ["completed"]


# ---------------------------------------------------------------- a start that failed, and flags that would be ignored


@pytest.mark.ray
def test_a_search_whose_start_failed_can_be_run_again_as_it_was(ray_local, sim_model2_tiny, tmp_path, capsys):
    argv = search(sim_model2_tiny, tmp_path, "w", "--warm-start", str(tmp_path / "no-such-run"))
    for _ in range(2):  # the same command again: refused for the same reason, not for what the first one left
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {tmp_path / 'no-such-run'} is not a search run") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run folder, not even one holding only its lock


@pytest.mark.parametrize("flags, says", [
    (dict(brackets=100), "--brackets 100: with --max-epochs 4, --grace-period 1 and --reduction-factor 2 only 4 "
                         "brackets differ (the last stops no trial); give --brackets 4 or fewer"),
    (dict(scheduler="fifo", brackets=3), "--brackets 3 splits the trials among Hyperband brackets, but --scheduler "
                                         "fifo stops no trial; drop --brackets"),
    (dict(searcher="gp", objectives=("val_auroc", "latency_ms")),
     "--searcher gp proposes for one objective, but --objective names 2 (val_auroc,latency_ms); use --searcher tpe"),
])
def test_a_flag_the_search_would_accept_then_ignore_is_refused(flags, says, tmp_path):
    from tuner.experiment import plan

    with pytest.raises(ConfigError) as refused:
        plan("effnet_cls", preset="smoke", storage=str(tmp_path), name="x", **flags)
    assert str(refused.value).startswith(says) and "\n" not in str(refused.value)
    plan("effnet_cls", preset="smoke", storage=str(tmp_path), name="x", brackets=4, scheduler="reliable")  # all differ


def test_best_top_below_one_is_refused_not_a_board_without_its_last_trial(run_on_disk, capsys):
    run = run_on_disk()
    assert main(["best", str(run), "--top", "-1"]) == 2
    assert capsys.readouterr().err == "error: --top -1: give how many trials to show, at least 1\n"
