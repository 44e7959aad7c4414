"""Issue 27, own cases: campaign specs, --publish, compare --init-from, --log mlflow stores and run storage
inside a dataset, each tried as a user would and each refused in one line before anything is written."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lensdata.errors import DataError, DatasetError
from lensdata.store import write_dataset
from tuner.campaign import CELLS, campaign_state, expand, load_spec, publish
from tuner.cli import main
from tuner.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SPEC = """
name = "t"
preset = "smoke"
[[comparison]]
label = "m2"
task = "classification"
data = "sim:model2:300"
spaces = ["effnet_cls"]
budgets = [20]
"""
TRANSFER = SPEC + """
[[comparison]]
label = "reg"
task = "regression"
data = "sim:model2:300"
spaces = ["effnet_reg"]
budgets = [20]
init_from = "cells/m2-b20/models/effnet_cls"
"""


def cells_of(tmp_path: Path, text: str) -> dict:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return expand(load_spec(path), tmp_path / "camp")


def refused(fn, match: str, kind: type[Exception] = ConfigError) -> str:
    with pytest.raises(kind, match=match) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def tiny_dataset(path: Path) -> Path:
    labels = np.repeat(np.arange(3), 10)
    split = np.array(["train", "val", "test"] * 10)
    images = np.random.default_rng(0).normal(size=(len(labels), 16, 16)).astype(np.float32)
    return write_dataset(path, {"image": images, "label": labels, "split": split},
                         classes=("no_sub", "cdm", "axion"), source="simulate", instrument="model2", seed=0)


# ---------------------------------------------------------------- campaign specs


@pytest.mark.parametrize(("change", "says"), [
    (("budgets = [20]", "budgets = []"), "no label budget given"),
    (("preset = \"smoke\"", "preset = \"smoke\"\nseeds = 0"), "--seeds must be a whole number >= 1, got 0"),
    (("preset = \"smoke\"", "preset = \"smoke\"\nseeds = true"), "--seeds must be a whole number >= 1, got True"),
    (("preset = \"smoke\"", "preset = \"smoke\"\nfinal_epochs = 0"), "--final-epochs must be at least 1"),
    (("preset = \"smoke\"", "preset = \"smoke\"\nseed = -1"), "--seed must be a whole number >= 0, got -1"),
    (("preset = \"smoke\"", "preset = \"smooth\""), "unknown preset 'smooth'"),
    (("preset = \"smoke\"", "preset = \"smoke\"\nparallel_cells = true"), "parallel_cells must be a whole number"),
])
def test_a_spec_value_the_campaign_would_change_or_ignore_is_refused(tmp_path, change, says):
    """Before: budgets = [] made a campaign of no cells, seeds = 0 or true ran one seed, final_epochs = 0 the
    preset's epochs, parallel_cells = true one cell; seed = -1 and an unknown preset failed once cells ran."""
    refused(lambda: cells_of(tmp_path, SPEC.replace(*change)), says.replace("(", r"\(").replace(")", r"\)"))


def test_a_spec_that_is_a_directory_is_one_line(tmp_path):
    refused(lambda: load_spec(tmp_path), r"cannot read the campaign spec .* \(Is a directory\); give a TOML file")


@pytest.mark.parametrize(("init_from", "says"), [
    ("cells/m2-b20/models/resnet_cls", "cell m2-b20 trains no model resnet_cls; its models are effnet_cls, "
                                       "effnet_cls-handset"),
    ("cells/m2-b20/models/effnet_cls+seed1", "cell m2-b20 trains 1 seed.s., so no model effnet_cls\\+seed1"),
    ("cells/m2-b20/models/effnet_cls-scratch", "trains no model effnet_cls-scratch"),
])
def test_init_from_a_model_its_cell_does_not_train_is_refused(tmp_path, init_from, says):
    """Before: accepted; the cell failed only after its source cell had run, for hours on a real campaign."""
    refused(lambda: cells_of(tmp_path, TRANSFER.replace("cells/m2-b20/models/effnet_cls", init_from)), says)


def test_init_from_a_cell_of_another_family_is_refused_and_its_own_models_are_not(tmp_path):
    refused(lambda: cells_of(tmp_path, TRANSFER.replace('["effnet_reg"]', '["effnet_reg", "resnet_reg"]')),
            "comparison reg: init_from cells/m2-b20/models/effnet_cls is a effnet model but resnet_reg builds resnet")
    for model in ("effnet_cls", "effnet_cls-handset", "effnet_cls+seed1", "effnet_cls-handset+seed2"):
        text = TRANSFER.replace("models/effnet_cls", f"models/{model}").replace('preset = "smoke"',
                                                                                'preset = "smoke"\nseeds = 3')
        assert cells_of(tmp_path, text)["reg-b20"]["init_cell"] == "m2-b20"


def test_init_from_in_a_circle_is_refused_naming_it(tmp_path):
    """Before: accepted; at run time every cell of the circle was reported 'not run' and the campaign exited 1."""
    loop = 'spaces = ["effnet_cls"]\ninit_from = "cells/reg-b20/models/effnet_reg"'
    text = TRANSFER.replace(SPEC, SPEC.replace('spaces = ["effnet_cls"]', loop))
    refused(lambda: cells_of(tmp_path, text), "init_from runs in a circle: m2-b20 -> reg-b20 -> m2-b20")


def test_a_campaign_whose_start_failed_can_be_run_again_as_it_was(tmp_path, monkeypatch, capsys):
    """Before: the first run wrote campaign.json before reaching Ray, and the same command was then refused as
    'already exists; add --resume'."""
    import ray

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # not the session's Ray: this command's own
    monkeypatch.setenv("RAY_ADDRESS", "")
    (tmp_path / "spec.toml").write_text(SPEC)
    port = closed_port()
    argv = ["campaign", str(tmp_path / "spec.toml"), "--storage", str(tmp_path / "runs"),
            "--address", f"127.0.0.1:{port}"]
    for _ in range(2):
        assert main(argv) == 2
        assert one_error_line(capsys).startswith(f"error: nothing answers at Ray address 127.0.0.1:{port}")
    campaign = tmp_path / "runs" / "t"
    (campaign / CELLS / "m2-b20").mkdir(parents=True)  # once a cell has started, it is a campaign: --resume it
    assert main(argv) == 2
    assert "already exists; add --resume" in one_error_line(capsys)


# ---------------------------------------------------------------- --publish


@pytest.fixture
def campaign(tmp_path) -> Path:
    """A campaign with one finished cell, as far as --publish reads it."""
    (tmp_path / "spec.toml").write_text(SPEC)
    root = tmp_path / "camp"
    spec = load_spec(tmp_path / "spec.toml")
    campaign_state(root, spec, expand(spec, root), False)
    cell = root / CELLS / "m2-b20"
    cell.mkdir(parents=True)
    pd.DataFrame({"model": ["effnet_cls (tuned)"], "kind": ["tuned"], "status": ["ok"], "test_auroc": [0.9],
                  "ci_low": [0.8], "ci_high": [0.95]}).to_parquet(cell / "compare.parquet")
    (cell / "compare.json").write_text(json.dumps({"verdict": "effnet leads", "metric": "test_auroc",
                                                   "mode": "max"}))
    (cell / "compare.md").write_text("| model |\n")
    (cell / "report.html").write_text("<html></html>")
    return root


def test_publish_refuses_a_directory_that_is_not_its_to_fill(campaign, tmp_path):
    """Before: a file and the campaign itself were tracebacks; a dataset then read as damaged; a folder of the
    user's lost its figures/ and index.html."""
    (tmp_path / "file").write_text("x")
    refused(lambda: publish(campaign, tmp_path / "file"), "--publish .*file is a file")
    refused(lambda: publish(campaign, campaign), "is the campaign directory itself")
    data = tiny_dataset(tmp_path / "ds")
    refused(lambda: publish(campaign, data), "holds a dataset; a published campaign written there", DatasetError)
    refused(lambda: publish(campaign, data / "pub"), "lies inside the dataset", DatasetError)
    mine = tmp_path / "project"
    (mine / "figures").mkdir(parents=True)
    (mine / "figures" / "mine.png").write_bytes(b"png")
    refused(lambda: publish(campaign, mine), "holds other files and no published campaign")
    assert (mine / "figures" / "mine.png").read_bytes() == b"png" and not (mine / "index.html").exists()


def test_publish_refreshes_its_own_copy_and_keeps_what_lies_beside_it(campaign, tmp_path):
    out = tmp_path / "results"
    publish(campaign, out)
    (out / "README.md").write_text("ours")  # as docs/results keeps its README beside the copy
    publish(campaign, out)
    assert (out / "README.md").read_text() == "ours" and (out / "cells" / "m2-b20" / "compare.parquet").is_file()


def _limit_file_size(limit: int):
    def limit_file_size() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_file_size


def test_a_publish_cut_short_leaves_each_file_whole(campaign, tmp_path):
    """Before: each file was copied in place, so a publish cut short by a full disk left a truncated
    campaign.json (or a cell's compare.parquet, which --from then kept as finished)."""
    out = tmp_path / "results"
    publish(campaign, out)
    before = (out / "campaign.json").read_bytes()
    state = json.loads((campaign / "campaign.json").read_text())
    (campaign / "campaign.json").write_text(json.dumps({**state, "notes": "x" * 4096}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from tuner.campaign import "
                          "publish; publish(Path(sys.argv[1]), Path(sys.argv[2]))", str(campaign), str(out)],
                         capture_output=True, text=True, env=env, preexec_fn=_limit_file_size(len(before) + 512),
                         timeout=120)
    assert run.returncode != 0 and "File too large" in run.stderr
    assert (out / "campaign.json").read_bytes() == before  # the old copy, whole
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


# ---------------------------------------------------------------- compare --init-from and its other settings


@pytest.fixture(scope="module")
def resnet_classifier(sim_model2_tiny32, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("resnet") / "model"
    assert main(["train", "--space", "resnet_cls", "--data", str(sim_model2_tiny32), "--epochs", "1",
                 "--size", "tiny", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(("task", "spaces", "says"), [
    ("classification", "effnet_cls", "is a resnet model but effnet_cls builds effnet models; start from a effnet"),
    ("regression", "resnet_reg,vit_reg", "is a resnet model but vit_reg builds vit models"),
    ("anomaly", "ae_anom", "task anomaly has no registered backbone to start from"),
])
def test_compare_init_from_a_model_that_cannot_start_its_spaces_is_refused_before_ray(resnet_classifier, tmp_path,
                                                                                     task, spaces, says):
    """Before: accepted; every tuned and hand-set row failed with this reason, after the searches' start, and
    the comparison exited 0 with a table of baselines only."""
    from tuner.comparison import compare_settings

    refused(lambda: compare_settings(task, spaces=spaces, init_from=str(resnet_classifier), storage=str(tmp_path)),
            says)
    assert compare_settings("regression", spaces="resnet_reg", init_from=str(resnet_classifier),
                            storage=str(tmp_path))["init_from"] == str(resnet_classifier)


@pytest.mark.parametrize(("settings", "says", "kind"), [
    ({"seed": -1}, "--seed must be a whole number >= 0, got -1", ConfigError),
    ({"seeds": True}, "--seeds must be a whole number >= 1, got True", ConfigError),
    ({"final_epochs": 0}, "--final-epochs must be at least 1", ConfigError),
    ({"preset": "smooth"}, "unknown preset 'smooth'", ConfigError),
    ({"train_per_class": []}, "no label budget given", DataError),
])
def test_compare_settings_it_would_change_or_ignore_are_refused(tmp_path, settings, says, kind):
    from tuner.comparison import compare_settings

    refused(lambda: compare_settings("classification", spaces="effnet_cls", storage=str(tmp_path), **settings),
            says, kind)


# ---------------------------------------------------------------- runs and models inside a dataset


def test_runs_and_models_are_never_written_inside_a_dataset(tmp_path, capsys):
    """Before: `train --out DATA/models/m` and `--storage DATA` wrote there, and the dataset then read as damaged."""
    from lensdata.checks import verify_dataset
    from tuner.storage import resolve_storage

    data = tiny_dataset(tmp_path / "ds")
    refused(lambda: resolve_storage(str(data)), "holds a dataset; a run written there", DatasetError)
    refused(lambda: resolve_storage(str(data / "runs")), "lies inside the dataset .*; choose another --storage",
            DatasetError)
    assert main(["train", "--space", "resnet_cls", "--data", str(data), "--epochs", "1", "--size", "tiny",
                 "--out", str(data / "models" / "m")]) == 2
    assert "lies inside the dataset" in one_error_line(capsys)
    assert verify_dataset(data)["n"] == 30 and not (data / "models").exists()


# ---------------------------------------------------------------- --log mlflow stores


needs_mlflow = pytest.mark.skipif(find_spec("mlflow") is None, reason='needs pip install -e ".[mlflow]"')


@needs_mlflow
def test_an_mlflow_store_that_cannot_take_the_runs_is_one_line(tmp_path, monkeypatch):
    """Before: MLflow found out when the search's driver opened the store: an unreachable server after about six
    minutes of retries, a directory never, a file that is not a database at once; each ended in a traceback."""
    from tuner.trackers import prepare_trackers

    for key in ("http_proxy", "HTTP_PROXY", "MLFLOW_ALLOW_FILE_STORE"):
        monkeypatch.delenv(key, raising=False)
    port = closed_port()
    (tmp_path / "notes.txt").write_text("not a database")
    for uri, says in [
        (f"http://user:secret@127.0.0.1:{port}", f"mlflow=http://\\*\\*\\*@127.0.0.1:{port}: nothing answers at "
                                                 f"127.0.0.1:{port}"),
        (f"sqlite:///{tmp_path}", "is a directory; name the database file in it"),
        (f"sqlite:///{tmp_path}/notes.txt", "is a file but not an SQLite database"),
        (f"sqlite:///{tmp_path}/notes.txt/mlflow.db", "is a file, so no database can be made under it"),
        (f"file://{tmp_path}/mlruns", "MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE=true"),
    ]:
        if uri.startswith("file:") and int(__import__("mlflow").__version__.split(".")[0]) < 3:
            continue
        text = refused(lambda uri=uri: prepare_trackers([f"mlflow={uri}"]), says)
        assert "secret" not in text
    sqlite3.connect(tmp_path / "kept.db").execute("create table t (x)").connection.close()
    for uri in (f"sqlite:///{tmp_path}/kept.db", f"sqlite:///{tmp_path}/new/mlflow.db"):
        prepare_trackers([f"mlflow={uri}"])  # an SQLite database, or a new one: MLflow makes its folders


@needs_mlflow
@pytest.mark.slow
def test_a_search_logging_to_an_unreachable_mlflow_is_one_line_and_leaves_no_run(ray_local, sim_model2_tiny32,
                                                                                 tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("http_proxy", raising=False)
    port = closed_port()
    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--data", str(sim_model2_tiny32),
                 "--storage", str(tmp_path), "--name", "r", "--log", f"mlflow=http://127.0.0.1:{port}"]) == 2
    assert "nothing answers at" in one_error_line(capsys)
    assert not (tmp_path / "r" / "experiment.json").exists()
