"""`search --log mlflow` and `--log wandb`: the flag, and what each tracker holds, read back by its own reader.

MLflow is read with ``mlflow.search_runs`` and ``MlflowClient.get_metric_history`` over the store the
search kept in its run directory. A W&B offline run is its ``.wandb`` file: records of the SDK's own
type (``wandb.proto.wandb_internal_pb2.Record``) in LevelDB's log framing, read by :func:`wandb_runs`
(wandb 0.30 dropped its Python reader of these files, ``wandb.sdk.internal.datastore``). Nothing leaves
the machine: W&B runs offline, MLflow's store is a SQLite file, Ray is the shared local one.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import sys
import zlib
from importlib.util import find_spec
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tuner.cli import build_parser, main
from tuner.errors import ConfigError
from tuner.experiment import Experiment, from_args

# The extras are installed by CI (.ci/run); the README's test command leaves them out, and skips these.
needs_trackers = pytest.mark.skipif(find_spec("mlflow") is None or find_spec("wandb") is None,
                                    reason='needs the tracker extras: pip install -e ".[mlflow,wandb]"')
# How each trial's run ends, by the trial's status in trials.parquet.
MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "KILLED", "diverged": "FAILED", "error": "FAILED"}
WANDB_EXIT = {"completed": 0, "stopped": 0, "diverged": 1, "error": 1}


@pytest.fixture(autouse=True)
def no_tracking_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def experiment(tmp_path: Path, *flags: str) -> Experiment:
    args = build_parser().parse_args(["search", "--space", "effnet_cls", "--smoke-test", "--storage", str(tmp_path),
                                      "--name", "r", *flags])
    return from_args(args, has_gpu=False)


# ---------------------------------------------------------------- the flag


@pytest.mark.parametrize("tracker, module", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_tracker_that_is_not_installed_is_refused_in_one_line_before_ray_starts(tracker, module, tmp_path,
                                                                                  monkeypatch, capsys):
    import tuner.preflight

    monkeypatch.setitem(sys.modules, module, None)  # `import wandb` now fails, as where the extra is missing
    monkeypatch.setattr(tuner.preflight, "connect_ray", lambda *a: pytest.fail("Ray was started"))
    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--storage", str(tmp_path),
                 "--log", tracker]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f'error: --log {tracker} needs the {tracker} extra: pip install "deeplense-tuner[{tracker}]"']


@needs_trackers
def test_the_trackers_are_resolved_once_and_kept_for_resume(tmp_path, monkeypatch, capsys):
    from tuner.driver import resume_settings

    exp = experiment(tmp_path, "--log", "mlflow", "--log", "wandb")
    assert exp.trackers == (f"mlflow=sqlite:///{tmp_path}/r/mlflow.db", "wandb=offline")
    assert experiment(tmp_path, "--log", "wandb=online", "--log", "mlflow=http://127.0.0.1:5000").trackers == (
        "wandb=online", "mlflow=http://127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")
    assert experiment(tmp_path, "--log", "mlflow").trackers == ("mlflow=http://127.0.0.1:5001",)

    # experiment.json keeps them; a resume without --log logs where the run did.
    exp.run_dir.mkdir(parents=True)
    (exp.run_dir / "experiment.json").write_text(json.dumps(dataclasses.asdict(exp)))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    resumed = resume_settings(experiment(tmp_path, "--resume"), resume=True)
    assert resumed.trackers == exp.trackers and resumed == exp
    assert "trackers" in capsys.readouterr().out  # the note naming the saved settings that win

    # Reading the finished run (best, report) does not need the trackers installed.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    assert Experiment(**json.loads((exp.run_dir / "experiment.json").read_text())) == exp


@needs_trackers
@pytest.mark.parametrize("flags, says", [
    (["--log", "tensorboard"], "unknown --log 'tensorboard'; choose one of: mlflow, wandb"),
    (["--log", "wandb=cloud"], "--log wandb=cloud: W&B runs either offline"),
    (["--log", "wandb", "--log", "wandb=online"], "--log wandb is given twice"),
    (["--log", "mlflow=runs/mlflow.db"], "--log mlflow=runs/mlflow.db is not a tracking URI"),
    (["--log", "mlflow", "--storage", "s3://bucket/runs"], "--log mlflow keeps its store in the run directory"),
])
def test_a_log_flag_that_cannot_work_is_one_line(flags, says, tmp_path):
    with pytest.raises(ConfigError) as err:
        experiment(tmp_path, *flags)
    assert str(err.value).startswith(says) and "\n" not in str(err.value)


@dataclasses.dataclass(eq=False)
class FakeTrial:
    """What the tracker callbacks read of a Ray trial."""

    trial_id: str
    config: dict
    last_result: dict = dataclasses.field(default_factory=dict)


@needs_trackers
def test_each_way_a_trial_ends_is_an_mlflow_run_status_and_a_resume_reopens_the_run(tmp_path):
    from tuner.mlflow_tracker import MLflowTrials

    exp = experiment(tmp_path, "--log", "mlflow")  # smoke: 4 epochs
    uri = exp.trackers[0].removeprefix("mlflow=")
    ends = {"completed": {"training_iteration": 4}, "stopped": {"training_iteration": 1},
            "diverged": {"training_iteration": 2, "diverged": True}, "error": {"training_iteration": 1},
            "interrupted": {"training_iteration": 3}}
    trials = {name: FakeTrial(name, {"lr": 0.01, "params": {"lr": 0.01}}, last) for name, last in ends.items()}
    callback = MLflowTrials(exp, uri)
    callback.setup()
    for trial in trials.values():
        callback.log_trial_start(trial)
        for epoch in range(1, trial.last_result["training_iteration"] + 1):
            callback.log_trial_result(epoch, trial, {"training_iteration": epoch, "val_auroc": epoch / 10,
                                                     "config": trial.config, "pid": 1})
    for name in ("completed", "stopped", "diverged"):
        callback.log_trial_end(trials[name])
    callback.log_trial_end(trials["error"], failed=True)
    callback.on_experiment_end(list(trials.values()))  # "interrupted" is still open: the search was stopped

    runs = mlflow_runs(exp.run_dir)
    by_trial = runs[runs["tags.kind"] == "trial"].set_index("tags.trial_id")
    assert dict(by_trial["status"]) == {**MLFLOW_STATUS, "interrupted": "KILLED"}
    assert dict(by_trial["tags.trial_status"]) == {name: name for name in ends}
    assert dict(by_trial["params.lr"]) == {name: "0.01" for name in ends} and "params.params" not in runs
    assert "metrics.pid" not in runs  # Ray's bookkeeping is not a metric
    assert metric_history(exp.run_dir, by_trial.loc["interrupted", "run_id"], "val_auroc") == {1: 0.1, 2: 0.2, 3: 0.3}

    # Resumed, the search's callback (Ray restores it as it was saved) reopens the search's run and the trial's.
    again = MLflowTrials(exp, uri)
    again.setup()
    again.log_trial_start(trials["interrupted"])
    runs = mlflow_runs(exp.run_dir)
    assert len(runs) == len(ends) + 1
    reopened = runs[runs["status"] == "RUNNING"]
    search_id = runs.loc[runs["tags.kind"] == "search", "run_id"].item()
    assert set(reopened["run_id"]) == {by_trial.loc["interrupted", "run_id"], search_id}

# ---------------------------------------------------------------- a search, read back by the trackers' readers


def mlflow_runs(run_dir: Path):
    """The search's MLflow runs, as ``mlflow.search_runs`` reads them from the store in the run directory."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{run_dir / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=[run_dir.name])


def metric_history(run_dir: Path, run_id: str, key: str) -> dict[int, float]:
    """Each step's value of a metric (the last one logged, where a restarted trial logged a step again)."""
    from mlflow import MlflowClient

    history = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}").get_metric_history(run_id, key)
    return {m.step: m.value for m in sorted(history, key=lambda m: m.timestamp)}


def wandb_records(path: Path) -> list:
    """The records of a W&B run file, each a ``wandb_internal_pb2.Record`` of the SDK.

    The framing is LevelDB's log format: a 7-byte header (``:W&B``, magic, version), then 32 KiB
    blocks of chunks, each a CRC-32 (of its type byte and data), a length and a type (FULL, or
    FIRST / MIDDLE / LAST of a record split across blocks).
    """
    from wandb.proto.wandb_internal_pb2 import Record

    data, records, pending, pos = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if kind == 0:  # the zero trailer of a block
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == crc, f"{path}: damaged record at byte {pos}"
        pos, pending = pos + 7 + length, pending + chunk
        if kind in (1, 4):
            records.append(Record.FromString(pending))
            pending = b""
    return records


def wandb_runs(run_dir: Path) -> dict[str, dict]:
    """Each offline run in ``RUN/wandb`` (the latest file of an id): its id, job type, group, config,
    history (step -> {key: value}), summary and exit code."""
    def items(updates) -> dict:
        return {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in updates}

    runs = {}
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):  # named by time: the latest last
        run = {"history": {}, "summary": {}, "config": {}}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run.update(id=record.run.run_id, job_type=record.run.job_type, group=record.run.run_group,
                           name=record.run.display_name, config=items(record.run.config.update))
            elif kind == "config":
                run["config"].update(items(record.config.update))
            elif kind == "history":
                row = items(record.history.item)
                run["history"][row["_step"]] = row
            elif kind == "summary":
                run["summary"].update(items(record.summary.update))
            elif kind == "exit":
                run["exit_code"] = record.exit.exit_code
        runs[run["id"]] = run
    return runs


def trials(run_dir: Path):
    return pq.read_table(run_dir / "trials.parquet").to_pandas().set_index("trial_id")


@needs_trackers
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_search_reads_back_from_mlflow_and_wandb(ray_local, sim_model2_tiny32, tmp_path):
    assert main(["search", "--space", "effnet_cls", "--preset", "smoke", "--num-samples", "2", "--concurrency", "1",
                 "--data", str(sim_model2_tiny32), "--storage", str(tmp_path), "--name", "logged",
                 "--log", "mlflow", "--log", "wandb"]) == 0
    run_dir = tmp_path / "logged"
    table, best = trials(run_dir), json.loads((run_dir / "best.json").read_text())

    # MLflow: one run per trial, under the search's run, with its parameters, every epoch and how it ended.
    runs = mlflow_runs(run_dir)
    search = runs[runs["tags.kind"] == "search"].iloc[0]
    by_trial = runs[runs["tags.kind"] == "trial"].set_index("tags.trial_id")
    assert set(by_trial.index) == set(table.index)
    for trial_id, row in table.iterrows():
        run = by_trial.loc[trial_id]
        params = json.loads(row["params_json"])
        assert run["params.lr"] == str(params["lr"]) and run["params.optimizer"] == params["optimizer"]
        assert run["status"] == MLFLOW_STATUS[row["status"]] and run["tags.trial_status"] == row["status"]
        assert run["tags.mlflow.parentRunId"] == search["run_id"]
        curve = metric_history(run_dir, run["run_id"], "val_auroc")
        assert list(curve) == list(range(1, row["epochs"] + 1))
        assert list(curve.values()) == pytest.approx(list(row["objective_per_epoch"]))
    assert search["status"] == "FINISHED" and search["params.space"] == "effnet_cls"
    assert search["tags.best_trial"] == best["trial_id"] and search["metrics.best_val_auroc"] == pytest.approx(
        best["objective"])
    assert search["tags.best.lr"] == str(best["params"]["lr"])

    # W&B: the same, offline, in RUN/wandb: one run per trial in the search's group, and the search's own.
    runs = wandb_runs(run_dir)
    assert {run["job_type"] for run in runs.values()} == {"trial", "search"}
    assert {i for i, run in runs.items() if run["job_type"] == "trial"} == set(table.index)
    assert {run["group"] for run in runs.values()} == {"logged"}
    for trial_id, row in table.iterrows():
        run = runs[trial_id]
        assert run["config"]["lr"] == json.loads(row["params_json"])["lr"]
        assert sorted(run["history"]) == list(range(1, row["epochs"] + 1))
        assert [run["history"][step]["val_auroc"] for step in sorted(run["history"])] == pytest.approx(
            list(row["objective_per_epoch"]))
        assert run["summary"]["trial_status"] == row["status"] and run["exit_code"] == WANDB_EXIT[row["status"]]
    search = next(run for run in runs.values() if run["job_type"] == "search")
    assert search["summary"]["best_trial"] == best["trial_id"] and search["exit_code"] == 0
    assert search["summary"]["best_val_auroc"] == pytest.approx(best["objective"])
    assert search["summary"]["best_params"] == best["params"]


@needs_trackers
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_failed_trials_are_failed_runs_and_a_resume_continues_them(ray_local, sim_model2_tiny32, tmp_path,
                                                                   monkeypatch, capsys):
    import trainables.trial

    healed = tmp_path / "healed"

    def trainable(config, data):  # fails after its first epoch until `healed` exists
        from ray import tune

        for epoch in (1, 2):
            tune.report({"val_auroc": 0.5 + 0.1 * epoch, "epoch": epoch})
            if not healed.exists():
                raise RuntimeError("injected fault")

    monkeypatch.setattr(trainables.trial, "tune_trainable", trainable)
    search = ["search", "--space", "effnet_cls", "--preset", "smoke", "--num-samples", "2", "--max-epochs", "2",
              "--scheduler", "fifo", "--data", str(sim_model2_tiny32), "--storage", str(tmp_path), "--name", "f"]
    assert main([*search, "--log", "mlflow", "--log", "wandb"]) == 1  # every trial failed
    run_dir = tmp_path / "f"
    runs = mlflow_runs(run_dir).set_index("tags.kind", drop=False)
    assert (trials(run_dir)["status"] == "error").all()
    assert list(runs.loc[["trial"], "status"]) == ["FAILED", "FAILED"]
    assert runs.loc["search", "status"] == "FAILED" and "tags.best_trial" not in runs
    first = dict(zip(runs.loc[["trial"], "tags.trial_id"], runs.loc[["trial"], "run_id"]))
    wandb = wandb_runs(run_dir)
    assert {wandb[trial_id]["exit_code"] for trial_id in first} == {1}
    assert {wandb[trial_id]["summary"]["trial_status"] for trial_id in first} == {"error"}

    # Resumed without --log, it logs where it did: the errored trials run again in their own MLflow runs.
    healed.touch()
    capsys.readouterr()
    assert main([*search, "--resume"]) == 0
    runs = mlflow_runs(run_dir).set_index("tags.kind", drop=False)
    table = trials(run_dir)
    assert (table["status"] == "completed").all()
    assert dict(zip(runs.loc[["trial"], "tags.trial_id"], runs.loc[["trial"], "run_id"])) == first
    assert list(runs.loc[["trial"], "status"]) == ["FINISHED", "FINISHED"]
    for run_id in first.values():
        assert metric_history(run_dir, run_id, "val_auroc") == pytest.approx({1: 0.6, 2: 0.7})
    assert runs.loc["search", "status"] == "FINISHED" and runs.loc["search", "tags.best_trial"] in first
    wandb = wandb_runs(run_dir)
    assert {wandb[trial_id]["exit_code"] for trial_id in first} == {0}
