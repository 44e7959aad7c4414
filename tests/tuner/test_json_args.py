"""Flags that take "a JSON object or a JSON file": the value's form decides, never the file system."""

from __future__ import annotations

import json
import os

import pytest

from search_spaces import default_params, space_names
from tuner.cli import main
from tuner.errors import ConfigError
from tuner.jsonarg import json_object_arg


def test_an_inline_object_longer_than_a_file_name_is_json():
    value = json.dumps({f"key_{i}": "x" * 40 for i in range(20)})
    assert len(value) > os.pathconf("/", "PC_NAME_MAX")
    assert json_object_arg(value, "--params") == json.loads(value)
    assert json_object_arg("  \n" + value, "--params") == json.loads(value)  # leading blanks allowed


def test_a_file_whose_name_starts_with_a_brace_is_still_a_value_not_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "{odd").write_text('{"lr": 0.1}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        json_object_arg("{odd", "--params")


@pytest.mark.parametrize("value, says", [
    ("no/such/file.json", "no file 'no/such/file.json'"),
    ("x" * 5000, r"neither a JSON object .*\(File name too long\)"),  # past NAME_MAX: one line, not OSError
    ('{"lr": 0.1', "inline JSON is not valid JSON"),
    ("{'lr': 0.1}", "inline JSON is not valid JSON"),
])
def test_bad_values_are_one_line_naming_the_flag(value, says):
    with pytest.raises(ConfigError, match=says) as err:
        json_object_arg(value, "--params")
    assert str(err.value).startswith("--params: ") and "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("content, says", [
    ("[1, 2]", "holds a JSON array, not an object"),
    ('"lr"', "holds a JSON string"),
    ("not json", r"is not valid JSON \(Expecting value at line 1 column 1\)"),
    (b"\xff\xfe\x00", "is not a text file"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path, content, says):
    path = tmp_path / "p.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError, match=says) as err:
        json_object_arg(str(path), "--params")
    assert str(path) in str(err.value)


def test_a_directory_is_refused_with_the_file_to_give(tmp_path):
    with pytest.raises(ConfigError, match="is a directory.*best.json"):
        json_object_arg(str(tmp_path), "--params")


@pytest.mark.parametrize("space", space_names())
def test_every_spaces_full_default_config_inline_and_as_file_gives_the_same_run(space, sim_model2_tiny,
                                                                                 tmp_path, capsys):
    params = default_params(space, "tiny", 64)
    inline = json.dumps(params)
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params, indent=2))
    base = ["train", "--space", space, "--smoke-test", "--data", str(sim_model2_tiny), "--epochs", "1"]
    runs = {}
    for form, value in (("inline", inline), ("file", str(path))):
        assert main(base + ["--params", value, "--out", str(tmp_path / form)]) == 0, capsys.readouterr().err
        runs[form] = (json.loads((tmp_path / form / "config.json").read_text()),
                      json.loads((tmp_path / form / "metrics.json").read_text())["final"])
    (config_inline, final_inline), (config_file, final_file) = runs["inline"], runs["file"]
    assert config_inline == config_file
    untimed = lambda final: {k: v for k, v in final.items() if not k.endswith(("_s", "_ms", "_per_sec"))}
    assert untimed(final_inline) == untimed(final_file) and "train_loss" in untimed(final_inline)
    assert {k: config_inline[k] for k in params} == params  # the run used every value given


def test_train_params_with_a_best_json_whose_params_is_not_an_object(tmp_path, capsys):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"space": "swin_cls", "params": [1, 2]}))
    assert main(["train", "--params", str(path), "--smoke-test"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --params: ") and "not an object" in err and len(err.splitlines()) == 1
