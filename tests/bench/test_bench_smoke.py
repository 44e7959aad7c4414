"""Every benchmark runs at its ``--tiny`` size and ends with a well-formed JSON result line.

Benchmarks are not tests: nothing here checks a timing or whether a target is met, only that each
script runs and reports ``bench``, ``ratio``, ``target`` and ``better``. Together about 3 minutes on
2 cores (three of them start a local Ray), hence ``slow``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Each runs a benchmark script at its tiny size: about 8 minutes together, so CI's command (the README's,
# `-m "not bench_run and not long"`) leaves them out to stay under its half hour; `python -m pytest -q -m bench_run`
# runs them.
pytestmark = [pytest.mark.slow, pytest.mark.bench_run]

BENCH = Path(__file__).resolve().parents[2] / "bench"
CPU_BENCHES = ["simulate", "load", "overhead", "launch", "search", "science", "strategies", "separability"]


def run_bench(args: list[str], timeout: int = 480) -> subprocess.CompletedProcess:
    # 480 s: `overhead.py --tiny` took 234 s on a 2-core machine at load 3-5, where it takes about 60 s idle
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # every benchmark starts its own local Ray
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=BENCH.parent, env=env)


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    assert lines, "the benchmark printed nothing"
    return json.loads(lines[-1])


def check_line(line: dict, name: str) -> None:
    assert line["bench"] == name
    assert line["better"] in ("higher", "lower")
    assert isinstance(line["target"], (int, float))
    assert line["ratio"] is None or (isinstance(line["ratio"], (int, float)) and math.isfinite(line["ratio"]))
    assert line["ratio"] is not None, f"{name} produced no ratio: {line}"


@pytest.mark.parametrize("name", CPU_BENCHES)
def test_benchmark_runs_tiny(name: str) -> None:
    proc = run_bench([sys.executable, str(BENCH / f"{name}.py"), "--tiny"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_line(last_json(proc.stdout), name)


@pytest.mark.gpu
def test_gpu_check_runs_tiny() -> None:
    proc = run_bench(["bash", str(BENCH / "gpu_check.sh"), "--tiny"], timeout=480)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_line(last_json(proc.stdout), "gpu")


def test_the_learning_curve_table_builds_and_reads_back(tmp_path: Path) -> None:
    # three tables of three configurations, each trained in a fresh process: minutes on a busy machine
    proc = run_bench([sys.executable, str(BENCH / "lctable.py"), "--tiny", "--out", str(tmp_path)], timeout=480)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import pandas as pd

    for space, metric in (("swin_cls", "val_auroc"), ("vae_anom", "val_auroc"), ("effnet_reg", "val_mae")):
        frame = pd.read_parquet(tmp_path / f"{space}.parquet")  # a plain Parquet file pandas reads
        assert sorted(frame.config_id.unique()) == [0, 1, 2]
        assert frame.groupby("config_id").epoch.max().le(2).all()
        assert frame[metric].ge(0).all() and (frame.train_s > 0).all() and (frame.cpu_s > 0).all()
        last = frame[frame.epoch == frame.groupby("config_id").epoch.transform("max")]
        assert last.val_se.gt(0).all() and set(frame.draw) <= {"default", "uniform", "perturb-0.25"}
    assert set(pd.read_parquet(tmp_path / "effnet_reg.parquet").draw) == {"default", "uniform", "perturb-0.25"}
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_metadata(tmp_path / "swin_cls.parquet").metadata[b"deeplense_tuner"])
    assert len(meta["commits"]) == 1 and meta["commits"][0] != "", meta  # the loop that trained the rows


def test_run_all_writes_table_and_markdown(tmp_path: Path) -> None:
    md = tmp_path / "bench.md"
    has_gpu = shutil.which("nvidia-smi") is not None and "GPU" in subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    only = ["load"] if has_gpu else ["load", "gpu"]  # without a GPU, gpu must show as skipped
    proc = run_bench([sys.executable, str(BENCH / "run_all.py"), "--tiny", "--only", *only,
                      "--markdown", str(md)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "load" in proc.stdout and "met?" in proc.stdout
    text = md.read_text()
    assert text.startswith("| bench | ratio | target | met? |")
    assert "| load |" in text
    if not has_gpu:
        assert "| gpu |" in text and "skipped" in text
