"""Where results go: ``--storage`` / ``$DEEPLENSE_TUNER_RUNS`` resolved once, object storage kept or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.cli import build_parser, main
from tuner.errors import ConfigError
from tuner.experiment import from_args, plan
from tuner.storage import is_uri, local_storage, resolve_storage


def test_a_local_root_becomes_absolute_and_a_uri_stays_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEEPLENSE_TUNER_RUNS", raising=False)
    assert is_uri("s3://b/r") and is_uri("gs://b") and not is_uri("/data/runs") and not is_uri("runs")
    assert resolve_storage() == str(tmp_path / "runs")
    assert resolve_storage("here") == str(tmp_path / "here")
    assert resolve_storage("s3://b/r") == "s3://b/r"
    monkeypatch.setenv("DEEPLENSE_TUNER_RUNS", "shared")
    assert resolve_storage() == str(tmp_path / "shared")
    assert resolve_storage("mine") == str(tmp_path / "mine")  # the flag wins
    monkeypatch.setenv("DEEPLENSE_TUNER_RUNS", "gs://bucket/runs")
    assert resolve_storage() == "gs://bucket/runs"


def test_a_search_keeps_object_storage_and_resolves_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plan("swin_cls", preset="smoke", storage="s3://b/r", name="x").storage == "s3://b/r"
    args = build_parser().parse_args(["search", "--space", "swin_cls", "--smoke-test", "--storage", "s3://b/r"])
    assert from_args(args, has_gpu=False).storage == "s3://b/r"
    exp = plan("swin_cls", preset="smoke", storage="runs", name="x")
    assert exp.storage == str(tmp_path / "runs") and exp.run_dir == tmp_path / "runs" / "x"
    assert list(tmp_path.iterdir()) == []  # planning writes nothing


def test_a_command_that_writes_locally_refuses_object_storage_in_one_line(monkeypatch):
    monkeypatch.setenv("DEEPLENSE_TUNER_RUNS", "s3://b/r")
    with pytest.raises(ConfigError) as err:
        local_storage(None, "train writes a local directory", "--out DIR")
    assert str(err.value) == ("DEEPLENSE_TUNER_RUNS is s3://b/r, object storage, but train writes a local "
                              "directory; give --out DIR")
    with pytest.raises(ConfigError, match=r"^--storage gs://b is object storage, but compare"):
        local_storage("gs://b", "compare keeps its files in a local directory", "--storage DIR")


@pytest.mark.parametrize("flag, env, says", [
    ("s3://b/r", None, "--storage s3://b/r is object storage, but compare keeps its lock, settings, models"),
    (None, "gs://bucket/runs", "DEEPLENSE_TUNER_RUNS is gs://bucket/runs, object storage, but compare keeps"),
])
def test_compare_on_object_storage_is_refused_before_anything_is_written(flag, env, says, tmp_path, monkeypatch,
                                                                         capsys):
    monkeypatch.chdir(tmp_path)
    if env:
        monkeypatch.setenv("DEEPLENSE_TUNER_RUNS", env)
    storage = ["--storage", flag] if flag else []
    assert main(["compare", "--task", "classification", "--preset", "smoke", "--name", "c", *storage]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {says}") and "--storage DIR" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no ./s3: folder, no lock, no compare.json


def test_compare_settings_resolve_a_local_root(tmp_path, monkeypatch):
    from tuner.comparison import compare_settings

    monkeypatch.chdir(tmp_path)
    settings = compare_settings("anomaly", spaces="vae_anom, ae_anom", storage="runs", name="c")
    assert settings["storage"] == str(tmp_path / "runs") and settings["spaces"] == ["vae_anom", "ae_anom"]
    assert Path(settings["storage"]).is_absolute() and list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="--num-samples must be at least 1"):  # the searches' budget, up front
        compare_settings("anomaly", num_samples=0, storage="runs")
