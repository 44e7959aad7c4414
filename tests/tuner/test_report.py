"""`tuner report`, the Optuna study on disk and `tuner compare`, checked with the real clients.

The report is opened in headless Chromium (Debian's package, driven by Selenium through Debian's
chromedriver): every figure must load, nothing may be fetched from outside the report's folder,
and the screenshot must show the figures. The study is opened by Optuna's own `load_study` and by
`optuna-dashboard`, started on a loopback port and stopped by its process id.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lensdata import load_dataset
from tuner.cli import main
from tuner.comparison import Scored
from tuner.study import load_study
from tuner.training import score
from tuner.verdict import decide, write_table

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory, sim_model2_tiny, ray_local):
    storage = tmp_path_factory.mktemp("runs")
    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--storage", str(storage), "--name", "s"]) == 0
    return storage / "s"


# ---------------------------------------------------------------- the study on disk


@pytest.mark.ray
@pytest.mark.slow
def test_the_study_holds_every_trial_with_its_curve_and_state(search_run):
    from optuna.trial import TrialState

    table = pq.read_table(search_run / "trials.parquet").to_pandas().set_index("trial_id")
    study = load_study(search_run)
    assert len(study.trials) == len(table)
    states = {"completed": TrialState.COMPLETE, "stopped": TrialState.PRUNED}
    for trial in study.trials:
        row = table.loc[trial.user_attrs["trial_id"]]
        assert trial.state == states[row["status"]]
        assert [trial.intermediate_values[e] for e in sorted(trial.intermediate_values)] == pytest.approx(
            list(row["objective_per_epoch"]))
        assert trial.params == json.loads(row["params_json"])
    assert any(t.state == TrialState.PRUNED for t in study.trials)  # ASHA stopped someone in a smoke search


@pytest.mark.ray
@pytest.mark.slow
def test_resume_and_best_never_duplicate_trials_in_the_study(search_run, sim_model2_tiny, tmp_path, capsys):
    run = tmp_path / "s"
    shutil.copytree(search_run, run)
    before = len(load_study(run).trials)
    assert main(["best", str(run)]) == 0
    assert main(["search", "--space", "effnet_cls", "--smoke-test", "--data", str(sim_model2_tiny),
                 "--storage", str(tmp_path), "--name", "s", "--resume"]) == 0
    assert len(load_study(run).trials) == before


@pytest.mark.ray
@pytest.mark.slow
def test_optuna_dashboard_serves_the_studys_trials(search_run):
    port = free_port()
    command = Path(sys.executable).with_name("optuna-dashboard")  # the command the README gives
    dashboard = subprocess.Popen([str(command), str(search_run / "optuna.journal"),
                                  "--host", "127.0.0.1", "--port", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        studies = None
        deadline = time.monotonic() + 60
        while studies is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    studies = json.load(answer)["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies and studies[0]["study_name"] == "s"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}?after=0",
                                    timeout=10) as answer:
            trials = json.load(answer)["trials"]
    finally:
        dashboard.send_signal(signal.SIGTERM)
        try:
            dashboard.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dashboard.kill()
            dashboard.wait()
    table = pq.read_table(search_run / "trials.parquet").to_pandas()
    assert len(trials) == len(table)
    assert sorted(t["state"] for t in trials) == sorted(
        {"completed": "Complete", "stopped": "Pruned"}[s] for s in table["status"])


# ---------------------------------------------------------------- reports, seen in a browser


def browse(page: Path, screenshot: Path) -> dict:
    """Open ``page`` in headless Chromium; what loaded, what was fetched, what the console said."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file(), \
        "install Debian's chromium and chromium-driver (see .ci/run)"
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1100,1400"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(page.as_uri())
        seen = {
            "images": browser.execute_script(
                "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"),
            "fetched": browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"),
            "console": browser.get_log("browser"),
        }
        browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
    return seen


def assert_shows_its_figures(directory: Path, tmp_path: Path, at_least: int) -> None:
    seen = browse(directory / "report.html", tmp_path / "shot.png")
    assert len(seen["images"]) >= at_least
    for src, complete, width in seen["images"]:
        assert complete and width > 0, f"broken image {src}"
        assert (directory / src).is_file() and not src.startswith(("http:", "https:", "//"))
    assert all(url.startswith("file://") for url in seen["fetched"]), seen["fetched"]
    assert not [entry for entry in seen["console"] if entry["level"] == "SEVERE"], seen["console"]
    from matplotlib.image import imread

    shot = imread(tmp_path / "shot.png")
    colours = np.unique((shot[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200, "the screenshot is nearly blank: the figures did not render"


@pytest.mark.ray
@pytest.mark.slow
def test_search_report_renders_in_a_browser(search_run, tmp_path, capsys):
    run = tmp_path / "s"
    shutil.copytree(search_run, run)
    assert main(["report", str(run)]) == 0
    figures = {p.name for p in (run / "figures").glob("*.png")}
    assert {"s_history.png", "s_curves.png"} <= figures
    html = (run / "report.html").read_text()
    assert "Content-Security-Policy" in html and "<script" not in html
    assert "classical baselines on val (fitted on train): logistic " in html
    assert_shows_its_figures(run, tmp_path, at_least=2)


@pytest.mark.slow
@pytest.mark.parametrize("space, params, figures", [
    ("effnet_cls", "{}", {"model_roc.png", "model_confusion.png", "model_training.png"}),
    ("effnet_reg", '{"head": "gaussian"}', {"model_mass.png", "model_coverage.png"}),
    ("ae_anom", "{}", {"model_scores.png", "model_roc.png"}),
])
def test_model_report_draws_the_tasks_figures(space, params, figures, sim_model2_tiny, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["train", "--space", space, "--smoke-test", "--data", str(sim_model2_tiny), "--epochs", "1",
                 "--params", params, "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    assert figures <= {p.name for p in (out / "figures").glob("*.png")}
    if space == "effnet_cls":
        assert_shows_its_figures(out, tmp_path, at_least=3)


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_report_of_an_interrupted_search_shows_what_finished_and_says_so(sim_model2_tiny, tmp_path):
    argv = [sys.executable, "-m", "tuner", "search", "--space", "effnet_cls", "--smoke-test", "--data",
            str(sim_model2_tiny), "--storage", str(tmp_path), "--name", "cut", "--num-samples", "8"]
    driver = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_ADDRESS": ""}, start_new_session=True)
    try:
        for line in driver.stdout:
            if line.startswith("[1/8]"):
                driver.send_signal(signal.SIGINT)
                break
        driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 130
    assert main(["report", str(tmp_path / "cut")]) == 0
    html = (tmp_path / "cut" / "report.html").read_text()
    assert "This search was interrupted" in html and "--resume" in html


def test_report_refuses_a_directory_of_no_known_kind(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a search run" in err and len(err.splitlines()) == 1
    assert main(["report", str(tmp_path / "missing")]) == 2


# ---------------------------------------------------------------- compare


@pytest.mark.parametrize("argv, says", [
    (["--task", "classification", "--spaces", "effnet_reg"], "effnet_reg is a regression space, not classification"),
    (["--task", "anomaly", "--spaces", "resnet_anom"], "unknown search space 'resnet_anom'"),
    (["--task", "classification", "--spaces", "vit_cls,vit_cls"], "names a space twice"),
])
def test_compare_refuses_bad_spaces_in_one_line(argv, says, tmp_path, capsys):
    assert main(["compare", *argv, "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1


def test_a_winner_is_named_only_when_its_paired_interval_clears_the_runner_up():
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.02, 1000)
    table = pd.DataFrame({"model": ["a", "b"], "status": ["ok", "ok"], "test_auroc": [0.85, 0.80]})
    assert decide(table, {"a": base + 0.05, "b": base}, "test_auroc", "max").startswith("winner: a")
    noisy = {"a": base + rng.normal(0, 0.05, 1000), "b": base}
    assert "tie" in decide(table, noisy, "test_auroc", "max")
    assert decide(table.assign(test_auroc=[0.2, 0.3]), {"a": base, "b": base + 0.1}, "test_auroc",
                  "min").startswith("winner: a")


def scored(model: str, runs: list[dict]) -> Scored:
    config = {"task": "classification", "classes": ["no_sub", "cdm", "axion"]}
    return Scored(model=model, kind="tuned", space=None, status="ok", config=config, predictions=runs[0], runs=runs)


def test_a_row_of_several_seeds_reports_their_mean_and_an_interval_holding_their_spread(tmp_path, monkeypatch):
    import tuner.verdict

    monkeypatch.setattr(tuner.verdict, "BOOTSTRAP_DRAWS", 200)  # enough to compare widths, and fast
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 100)

    def predictions(strength):
        output = rng.normal(0, 1, (300, 3)).astype(np.float32)
        output[np.arange(300), labels] += strength
        return {"output": output, "label": labels, "target": np.full(300, np.nan, np.float32)}

    steady = scored("steady", [predictions(1.5)])
    spread = scored("spread", [predictions(0.5), predictions(2.5)])
    (tmp_path / "compare.json").write_text("{}")
    table, _ = write_table(tmp_path, {"task": "classification", "seed": 0, "data": "d"}, [steady, spread])
    table = table.set_index("model")
    assert table.loc["spread", "seeds"] == 2 and table.loc["steady", "seeds"] == 1
    one, two = (score(spread.config, r)["test_auroc"] for r in spread.runs)
    assert table.loc["spread", "test_auroc"] == pytest.approx((one + two) / 2)
    assert table.loc["spread", "seed_sd"] == pytest.approx(np.std([one, two], ddof=1))
    width = table["ci_high"] - table["ci_low"]
    assert width["spread"] > 2 * width["steady"]  # the seeds' disagreement widens the interval
    for prefix, column in (("ci", "test_auroc"), ("accuracy_ci", "test_accuracy")):
        assert ((table[f"{prefix}_low"] <= table[column]) & (table[column] <= table[f"{prefix}_high"])).all()
    assert {"test_auroc_no_sub_vs_cdm", "test_auroc_cdm_vs_axion"} <= set(table.columns)


@pytest.mark.parametrize("argv, says", [
    (["--train-per-class", "100,ten"], "bad label budget 'ten'"),
    (["--train-per-class", "100,100"], "named twice"),
    (["--seeds", "0"], "--seeds must be a whole number >= 1"),
    (["--train-per-class", "90", "--data", "sim:model2:300"], "more than class no_sub has in sim:model2:300: 85"),
])
def test_compare_refuses_bad_budgets_and_seeds_in_one_line(argv, says, tmp_path, capsys):
    assert main(["compare", "--task", "classification", *argv, "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.long
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_compare_over_label_budgets_tables_each_budget_and_reports(ray_local, sim_model2_tiny32, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.setenv("DEEPLENSE_TUNER_CACHE", str(tmp_path / "cache"))
    argv = ["compare", "--task", "classification", "--preset", "smoke", "--spaces", "effnet_cls",
            "--data", str(sim_model2_tiny32), "--num-samples", "2", "--max-epochs", "1", "--train-per-class",
            "20,10", "--storage", str(tmp_path), "--name", "b"]  # seeds: tests/tuner/test_campaign.py
    assert main(argv) == 0
    run = tmp_path / "b"
    table = pd.read_parquet(run / "compare.parquet")
    assert list(table["budget"].unique()) == ["10", "20"]  # smallest first
    for budget in ("10", "20"):
        sub = pd.read_parquet(run / f"budget-{budget}" / "compare.parquet")
        assert len(sub) == (table["budget"] == budget).sum()
        data = json.loads((run / f"budget-{budget}" / "compare.json").read_text())["settings"]["data"]
        labelled = load_dataset(data)
        assert np.bincount(labelled.labels[labelled.splits != "test"]).tolist() == [int(budget)] * 3
    saved = json.loads((run / "compare.json").read_text())
    assert set(saved["verdicts"]) == {"10", "20"}
    assert "## 10 labelled images per class" in (run / "compare.md").read_text()
    assert main(["report", str(run)]) == 0
    assert (run / "figures" / "budget-10-compare.png").is_file()
    assert (run / "figures" / "budget-20-compare.png").is_file()
    assert_shows_its_figures(run, tmp_path, at_least=4)


@pytest.mark.long  # 117 s in CI; tests/test_extensions.py walks search, compare and report in CI
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_compare_smoke_tables_every_architecture_resumes_and_reports(ray_local, sim_model2_tiny, tmp_path,
                                                                    monkeypatch, capsys):
    import tuner.comparison

    argv = ["compare", "--task", "classification", "--preset", "smoke", "--spaces", "effnet_cls,swin_cls",
            "--data", str(sim_model2_tiny), "--storage", str(tmp_path), "--name", "c"]
    real_tuned_row = tuner.comparison.tuned_row

    def swin_fails(run_dir, exp, data, seeds=1):
        if exp.space == "swin_cls":
            raise RuntimeError("injected: its final training could not start")
        return real_tuned_row(run_dir, exp, data, seeds)

    monkeypatch.setattr(tuner.comparison, "tuned_row", swin_fails)
    assert main(argv) == 0
    run = tmp_path / "c"
    table = pd.read_parquet(run / "compare.parquet").set_index("model")
    assert list(table.index) == ["effnet_cls (tuned)", "effnet_cls (hand-set)", "swin_cls (tuned)",
                                 "swin_cls (hand-set)", "logistic (baseline)", "gbt (baseline)"]
    assert table.loc["swin_cls (tuned)", "status"] == "failed"
    assert "injected" in table.loc["swin_cls (tuned)", "reason"]
    ok = table[table["status"] == "ok"]
    assert ((ok["ci_low"] <= ok["test_auroc"]) & (ok["test_auroc"] <= ok["ci_high"])).all()
    assert (ok["params"] > 0).all() and (ok["latency_ms_per_image"] > 0).all()
    assert (ok[ok["kind"] != "baseline"]["flops"] > 0).all()
    assert (table[table["kind"] == "baseline"]["status"] == "ok").all()  # on the same test images, bootstrapped
    assert ok.loc["effnet_cls (tuned)", "trial_epochs"] >= 6  # 6 trials, at least an epoch each
    verdict = json.loads((run / "compare.json").read_text())["verdict"]
    assert ("winner:" in verdict) or ("tie" in verdict)
    assert verdict in (run / "compare.md").read_text()

    assert main(["report", str(run)]) == 0  # a failed row is reported with its reason; the rest stands
    html = (run / "report.html").read_text()
    assert "swin_cls (tuned): failed (injected: its final training could not start)" in html
    assert (run / "figures" / "compare.png").is_file()

    monkeypatch.setattr(tuner.comparison, "tuned_row", real_tuned_row)  # the fault is gone: resume fills the row
    kept = (run / "models" / "effnet_cls" / "predictions.npz").stat().st_mtime_ns
    assert main(argv + ["--resume"]) == 0
    table = pd.read_parquet(run / "compare.parquet").set_index("model")
    assert (table["status"] == "ok").all()
    assert (run / "models" / "effnet_cls" / "predictions.npz").stat().st_mtime_ns == kept  # not retrained
    assert main(argv) == 2  # an existing comparison is only continued with --resume
    assert main(["report", str(run)]) == 0
    assert (run / "figures" / "compare.png").is_file()
    assert_shows_its_figures(run, tmp_path, at_least=8)


# ---------------------------------------------------------------- hostile names, interrupted comparisons


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, and its text."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


HOSTILE = 'x"><img src=x onerror=alert(1)>'


def test_a_run_name_with_markup_is_escaped_in_the_report(run_on_disk, capsys):
    run = run_on_disk(name=HOSTILE)
    assert main(["report", str(run)]) == 0
    page = Tags((run / "report.html").read_text())
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) >= 2 and all(set(attrs) == {"src", "alt"} for attrs in images), images
    for attrs in images:  # every image is one of the report's own figures, under figures/
        assert attrs["src"].startswith("figures/") and (run / unquote(attrs["src"])).is_file()
    assert {tag for tag, _ in page.tags} <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p",
                                             "figure", "img", "figcaption", "table", "thead", "tbody", "tr", "th",
                                             "td"}
    assert f"Search {HOSTILE}:" in "".join(page.text)  # shown as text, as it is
    assert all(png.parent == run / "figures" for png in run.rglob("*.png"))  # none written outside figures/


@pytest.mark.parametrize("budgets", [None, ["10", "20"]])
def test_report_of_a_comparison_interrupted_before_its_table_says_how_to_resume(budgets, tmp_path, capsys):
    run = tmp_path / "cmp $(x)"
    settings = {"task": "classification", "name": run.name, "storage": str(tmp_path), "data": None,
                "train_per_class": budgets}
    run.mkdir()
    (run / "compare.json").write_text(json.dumps({"settings": settings}))  # as compare leaves it before a table
    for budget in budgets or []:
        (run / f"budget-{budget}").mkdir()
        (run / f"budget-{budget}" / "compare.json").write_text(json.dumps({"settings": settings}))
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: comparison {run} has no table yet") and err.count("\n") == 1, err
    command = err.split("`")[1]
    assert shlex.split(command) == ["python", "-m", "tuner", "compare", "--task", "classification", "--name",
                                    run.name, "--storage", str(tmp_path), "--resume"]
    assert not (run / "report.html").exists()


def test_importances_of_trials_that_all_scored_the_same_are_left_out_in_one_caption():
    # Seen when every trial of a tiny search started from the same profile fit: fANOVA raised instead.
    import optuna

    from tuner.figures import importance_figure

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: 0.5 + 0 * t.suggest_float("lr", 1e-4, 1e-2) + 0 * t.suggest_int("depth", 1, 4), 4)
    figure, caption = importance_figure(study)
    assert figure is None and caption == "importances need trials that score differently; all 4 completed trials " \
                                         "scored 0.5"
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2) + t.suggest_int("depth", 1, 4), 4)
    figure, caption = importance_figure(study)
    assert figure is not None and caption.endswith("on the 8 completed trials")
