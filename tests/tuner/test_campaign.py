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
    assert first.stat().st_mtime_ns == stamp  # a finished cell is never recomputed
    results = pd.read_parquet(root / "results.parquet")
    assert set(results["budget"]) == {"10", "20"}
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
