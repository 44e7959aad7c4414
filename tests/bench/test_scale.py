"""``bench/scale.py --quick``: the tool's own search path around sleeping trials, beside Ray alone.

Checks that every part runs and reports what the README quotes (not whether a target is met): both arms
ended every trial in as many trial processes as trials at once, each timed step of the driver has a cost
per result, the writers at the end a cost per trial, the rates part a throughput, the samplers part a
cost per proposal. About two minutes on 2 cores (240 trials, a local Ray of 8 CPUs, trial processes
started three times), hence ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.timeout(600)
def test_scale_runs_quick_and_reports_every_figure(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # the benchmark starts its own local Ray
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(BENCH / "scale.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=560, cwd=BENCH.parent, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["bench"] == "scale" and line["ratio"] > 0 and json.loads(out.read_text()) == line
    for arm in ("ray", "tool"):
        assert line[arm]["trials_ended"] == line["trials"] and line[arm]["status"] == 0
        # N trials at once in N processes (without the gate Ray Tune ran them all on the first two to start)
        assert line[arm]["trial_processes"] == line["concurrency"] and line[arm]["processes_up_s"] > 0
        assert line[arm]["driver_cpu_s"] > 0 and line[arm]["rss_mb_at_end"] > 0
    steps = line["tool"]["steps"]
    for name in ("callback TrialLines", "callback LiveStudy", "callback JsonLoggerCallback",
                 "searcher: new trials", "Ray experiment snapshot", "live study: journal writes (own thread)"):
        assert steps[name]["cpu_ms_per_result"] >= 0 and "first_tenth" in steps[name], name
    assert steps["end: results written (all of it)"]["cpu_ms_per_trial"] > 0
    assert "callback TBXLoggerCallback" in line["ray"]["steps"] and "callback TBXLoggerCallback" not in steps
    assert set(line["results_per_s"]) == {"10"} and all(r["processed"] > 0 for r in line["results_per_s"].values())
    assert set(line["samplers"]["tpe_s"]) == {"100", "1000"} and line["samplers"]["gp_s"]["100"] > 0
