"""The campaign runner: its spec's one-line refusals, its resume check, and a smoke campaign that is
interrupted, resumed without recomputing a finished cell, and whose page opens in a browser."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tuner.campaign import check_budgets, check_resume, expand, load_spec
from tuner.errors import ConfigError

GOOD = """
name = "t"
preset = "smoke"
[[comparison]]
label = "m2"
task = "classification"
data = "sim:model2:300"
spaces = ["effnet_cls"]
budgets = [20, 40]
"""


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("change", "message"), [
    (("preset = \"smoke\"", "preset = \"smoke\"\ncolour = 1"), "unknown key(s) colour"),
    (("task = \"classification\"", "task = \"segmentation\""), "unknown task 'segmentation'"),
    (("[\"effnet_cls\"]", "[\"effnet_cls\", \"vae_anom\"]"), "vae_anom is a anomaly space, not classification"),
    (("[\"effnet_cls\"]", "[\"effnet_clss\"]"), "effnet_clss"),
    (("sim:model2:300", "sim:model9:300"), "unknown simulated set"),
    (("sim:model2:300", "sim:model2:300:no_sub,hdm"), "bad classes"),
    (("budgets = [20, 40]", "budgets = [20, 0]"), "bad label budget"),
    (("budgets = [20, 40]", "budgets = [20]\nanchors = [\"nobody-2031\"]"), "unknown anchor 'nobody-2031'"),
    (("label = \"m2\"", "label = \"../m2\""), "label '../m2' must be"),
    (("data = \"sim:model2:300\"", "data = \"/no/such/set\""), "no dataset at /no/such/set"),
])
def test_a_bad_spec_is_refused_in_one_line(tmp_path, change, message):
    path = spec_file(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as err:
        expand(load_spec(path), tmp_path / "camp")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_and_malformed_specs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no campaign spec"):
        load_spec(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(spec_file(tmp_path, "name = "))
    with pytest.raises(ConfigError, match=r"no \[\[comparison\]\]"):
        load_spec(spec_file(tmp_path, "name = 'x'"))


def test_a_budget_larger_than_a_class_is_refused_before_anything_is_simulated(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "cache"))
    cells = expand(load_spec(spec_file(tmp_path, GOOD.replace("[20, 40]", "[20, 90]"))), tmp_path / "camp")
    with pytest.raises(ConfigError, match=r"cell m2-b90: label budget 90 per class is more than class no_sub "
                                          r"has in sim:model2:300: 85 train\+val images"):
        check_budgets(cells)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("task", "space", "data", "says"), [
    ("regression", "effnet_reg", "sim:model2:300:no_sub,cdm", "has no regression targets"),
    ("regression", "effnet_reg", "sim:model2:500:axion,wdm", "different quantities"),
    ("anomaly", "ae_anom", "sim:model2:300:cdm,axion", "has no no_sub images"),
    ("classification", "effnet_cls", "sim:model2:300:axion", "holds one class"),
])
def test_a_budget_the_task_cannot_learn_from_is_refused_before_anything_is_simulated(tmp_path, monkeypatch, task,
                                                                                     space, data, says):
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "cache"))
    text = GOOD.replace("classification", task).replace("effnet_cls", space).replace("sim:model2:300", data)
    cells = expand(load_spec(spec_file(tmp_path, text.replace("[20, 40]", "[20]"))), tmp_path / "camp")
    with pytest.raises(ConfigError) as err:
        check_budgets(cells)
    assert f"cell m2-b20: a budget of 20 labelled images per class of {data} cannot serve {task}" in str(err.value)
    assert says in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_a_budget_the_task_can_learn_from_passes_the_outline_check(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "cache"))
    text = GOOD.replace("classification", "regression").replace("effnet_cls", "effnet_reg")
    check_budgets(expand(load_spec(spec_file(tmp_path, text)), tmp_path / "camp"))  # axion carries the target


def test_cells_are_one_per_comparison_and_budget():
    cells = expand(load_spec_text(GOOD.replace("budgets = [20, 40]", "budgets = [40, 20, \"all\"]")), Path("/c"))
    assert list(cells) == ["m2-b20", "m2-b40", "m2-ball"]
    assert {c["budget"] for c in cells.values()} == {"20", "40", "all"}
    assert all(c["storage"] == "/c/cells" and c["task"] == "classification" for c in cells.values())


def load_spec_text(text: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return load_spec(spec_file(Path(folder), text))


def test_resume_with_a_changed_spec_names_the_cells_that_differ():
    saved = expand(load_spec_text(GOOD), Path("/c"))
    check_resume(saved, saved)
    changed = expand(load_spec_text(GOOD.replace("[20, 40]", "[20, 60]").replace("preset = \"smoke\"",
                                                                               "preset = \"smoke\"\nseeds = 2")),
                     Path("/c"))
    with pytest.raises(ConfigError) as err:
        check_resume(saved, changed)
    text = str(err.value)
    assert "m2-b20 (seeds)" in text and "m2-b40 (removed)" in text and "m2-b60 (new)" in text
    assert "\n" not in text


SMOKE = """
name = "smoke"
preset = "smoke"
num_samples = 2
max_epochs = 1
final_epochs = 1
seeds = 2
[[comparison]]
label = "tiny"
task = "classification"
data = "{data}"
spaces = ["effnet_cls"]
budgets = [10, 20]
anchors = ["lejepa-model2"]
[[comparison]]
label = "transfer"
task = "regression"
data = "{data}"
spaces = ["effnet_reg"]
budgets = [10]
init_from = "cells/tiny-b20/models/effnet_cls"
"""


def run_campaign(args: list[str], env: dict, stop_after: str | None = None) -> tuple[int, str]:
    """``python -m tuner campaign ...``; with ``stop_after``, Ctrl-C (SIGINT, to this pid only) once that line shows."""
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "campaign", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    deadline = time.monotonic() + 900
    for line in proc.stdout:
        lines.append(line)
        if stop_after and stop_after in line:
            proc.send_signal(signal.SIGINT)
            stop_after = None
        if time.monotonic() > deadline:
            proc.kill()
            break
    return proc.wait(timeout=300), "".join(lines)


@pytest.mark.long
@pytest.mark.slow
def test_smoke_campaign_is_interrupted_resumed_and_its_page_opens_in_a_browser(sim_model2_tiny32, tmp_path):
    spec = spec_file(tmp_path, SMOKE.format(data=sim_model2_tiny32))
    env = {**os.environ, "DEEPLENSE_TUNER_CACHE": str(tmp_path / "cache"), "RAY_ADDRESS": ""}
    env.pop("PYTHONUNBUFFERED", None)  # the runner's progress lines must flush on their own, as a user tails them
    args = [str(spec), "--storage", str(tmp_path / "runs")]
    root = tmp_path / "runs" / "smoke"

    status, out = run_campaign(args, env, stop_after="cell tiny-b10: ok")
    assert status == 130, out
    assert "resume it with" in out and "--resume" in out
    first = root / "cells" / "tiny-b10" / "compare.parquet"
    stamp = first.stat().st_mtime_ns

    status, out = run_campaign(args, env)  # the same command again, without --resume: refused, nothing touched
    assert status == 2 and "already exists; add --resume" in out, out

    status, out = run_campaign([*args, "--resume"], env)
    assert status == 0, out
    assert "cell tiny-b10: finished before, kept" in out and "cell tiny-b20: ok" in out
    assert out.index("cell tiny-b20: ok") < out.index("cell transfer-b10: running")  # its init_from cell first
    assert first.stat().st_mtime_ns == stamp  # a finished cell is never recomputed
    results = pd.read_parquet(root / "results.parquet")
    assert set(results["budget"]) == {"10", "20"}
    transfer = results[results["comparison"] == "transfer"].set_index("model")
    assert {"effnet_reg (tuned)", "effnet_reg (tuned, from scratch)", "effnet_reg (hand-set)",
            "effnet_reg (hand-set, from scratch)"} <= set(transfer.index)
    assert (transfer.loc[["effnet_reg (tuned)", "effnet_reg (tuned, from scratch)"], "status"] == "ok").all()
    models = root / "cells" / "transfer-b10" / "models"
    started = json.loads((models / "effnet_reg" / "config.json").read_text())
    scratch = json.loads((models / "effnet_reg-scratch" / "config.json").read_text())
    assert started["init_tensors"] > 0 and started["init_from"].endswith("cells/tiny-b20/models/effnet_cls")
    assert scratch["init_from"] is None and "init_tensors" not in scratch
    assert {k: v for k, v in started.items() if k.startswith("effnet_")} == \
        {k: v for k, v in scratch.items() if k.startswith("effnet_")}  # the same architecture, from scratch
    results = results[results["comparison"] == "tiny"]
    tuned = results[results["kind"] == "tuned"]
    assert (tuned["seeds"] == 2).all() and (tuned["ci_low"] <= tuned["value"]).all()
    assert (tuned["value"] <= tuned["ci_high"]).all() and tuned["test_accuracy"].notna().all()
    state = json.loads((root / "campaign.json").read_text())
    assert 0 <= state["overhead_s"] < state["wall_s"]

    status, out = run_campaign([*args, "--publish", str(tmp_path / "published")], env)
    assert status == 0, out
    published = tmp_path / "published"
    assert (published / "index.html").is_file() and (published / "results.parquet").is_file()
    assert (published / "cells" / "tiny-b20" / "compare.md").read_text().startswith("| model")
    assert "effnet\\_cls (tuned)" in (published / "tables.md").read_text()
    assert not list(published.rglob("*.safetensors"))  # the models stay in the campaign

    # Another machine continues from the published copy: every finished cell kept, nothing run again.
    status, out = run_campaign([str(spec), "--storage", str(tmp_path / "elsewhere"), "--from", str(published)], env)
    assert status == 0, out
    assert "3 finished cell(s) kept" in out and "running" not in out, out
    moved = json.loads((tmp_path / "elsewhere" / "smoke" / "campaign.json").read_text())
    assert moved["wall_s"] >= state["wall_s"]  # the time adds up across machines

    spec_path = Path(__file__).with_name("test_report.py")
    loader = importlib.util.spec_from_file_location("report_browser", spec_path)
    report_tests = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(report_tests)  # its `browse` helper: Debian's Chromium through Selenium
    seen = report_tests.browse(root / "index.html", tmp_path / "shot.png")
    assert seen["images"]
    for src, complete, width in seen["images"]:
        assert complete and width > 0, f"broken image {src}"
    assert all(url.startswith(root.as_uri() + "/") for url in seen["fetched"]), seen["fetched"]
    assert not [entry for entry in seen["console"] if entry["level"] == "SEVERE"], seen["console"]


TRANSFER = GOOD + """
[[comparison]]
label = "reg"
task = "regression"
data = "sim:model2:300"
spaces = ["effnet_reg"]
budgets = [20]
init_from = "cells/m2-b40/models/effnet_cls"
"""


def test_init_from_may_name_a_model_of_another_cell_which_then_runs_first(tmp_path):
    from tuner.campaign import CELLS, _next_ready

    cells = expand(load_spec_text(TRANSFER), tmp_path)
    assert cells["reg-b20"]["init_cell"] == "m2-b40"
    assert cells["reg-b20"]["init_from"] == str(tmp_path / "cells" / "m2-b40" / "models" / "effnet_cls")
    assert cells["m2-b20"]["init_cell"] is None
    todo = ["m2-b20", "reg-b20", "m2-b40"]  # the runner's order: smallest budget first
    assert _next_ready(tmp_path, cells, todo, []) == "m2-b20"
    assert _next_ready(tmp_path, cells, ["reg-b20", "m2-b40"], []) == "m2-b40"
    assert _next_ready(tmp_path, cells, ["reg-b20"], ["m2-b40"]) is None  # waits for the running source
    source = tmp_path / CELLS / "m2-b40"
    source.mkdir(parents=True)
    (source / "compare.parquet").write_bytes(b"")
    (source / "compare.json").write_text(json.dumps({"verdict": "done"}))
    assert _next_ready(tmp_path, cells, ["reg-b20"], []) == "reg-b20"


@pytest.mark.parametrize(("init_from", "message"), [
    ("cells/m2-b80/models/effnet_cls", "init_from names cell m2-b80, which this spec does not make"),
    ("cells/m2-b40/effnet_cls", "is named cells/<cell>/models/<model>"),
])
def test_init_from_naming_a_cell_the_spec_does_not_make_is_refused(init_from, message):
    with pytest.raises(ConfigError, match=message.replace("<", ".").replace(">", ".")):
        expand(load_spec_text(TRANSFER.replace("cells/m2-b40/models/effnet_cls", init_from)), Path("/c"))


def test_a_campaign_moved_to_another_directory_still_resumes():
    check_resume(expand(load_spec_text(TRANSFER), Path("/c")), expand(load_spec_text(TRANSFER), Path("/d")))


def published_copy(tmp_path: Path) -> Path:
    """A published campaign as ``--publish`` leaves it: m2-b20 finished, m2-b40 still running."""
    out = tmp_path / "published"
    cells = expand(load_spec_text(GOOD), Path("/laptop/runs/t"))
    (out / "cells" / "m2-b20").mkdir(parents=True)
    (out / "cells" / "m2-b40").mkdir(parents=True)
    pd.DataFrame({"model": ["effnet_cls (tuned)"], "status": ["ok"]}).to_parquet(
        out / "cells" / "m2-b20" / "compare.parquet")
    (out / "cells" / "m2-b20" / "compare.json").write_text(json.dumps({"verdict": "effnet leads"}))
    (out / "cells" / "m2-b40" / "compare.md").write_text("| model |\n")
    (out / "campaign.json").write_text(json.dumps({"cells": cells, "wall_s": 100.0, "data_s": 10.0,
                                                   "cell_s": 85.0, "overhead_s": 5.0}))
    return out


def test_a_campaign_starts_from_its_published_copy_keeping_the_finished_cells(tmp_path):
    from tuner.campaign import adopt, finished

    published = published_copy(tmp_path)
    root = tmp_path / "cluster" / "t"
    spec = load_spec_text(GOOD)
    kept = adopt(root, published, spec, expand(spec, root))
    assert kept == ["m2-b20"]
    assert finished(root / "cells" / "m2-b20") and not (root / "cells" / "m2-b40").exists()
    state = json.loads((root / "campaign.json").read_text())
    assert state["wall_s"] == 100.0 and state["cells"]["m2-b40"]["storage"] == str(root / "cells")
    with pytest.raises(ConfigError, match="already exists; continue it with --resume"):
        adopt(root, published, spec, expand(spec, root))


def test_starting_from_a_copy_the_spec_no_longer_matches_is_refused_and_writes_nothing(tmp_path):
    from tuner.campaign import adopt

    published = published_copy(tmp_path)
    root = tmp_path / "cluster" / "t"
    spec = load_spec_text(GOOD.replace("preset = \"smoke\"", "preset = \"smoke\"\nseeds = 3"))
    with pytest.raises(ConfigError, match=r"cells that differ: m2-b20 \(seeds\)"):
        adopt(root, published, spec, expand(spec, root))
    assert not (root / "campaign.json").exists() and not (root / "cells").exists()
    with pytest.raises(ConfigError, match="holds no published campaign"):
        adopt(root, tmp_path / "nowhere", spec, expand(spec, root))
