"""The commands the tool prints for the user to paste: each argument survives a POSIX shell as it is."""

from __future__ import annotations

import json
import shlex

from lensdata import load_dataset
from tuner.followup import tuner_command

HOSTILE = ['x"><img src=x onerror=alert(1)>', "run; rm -rf ~", "a b", "$(touch pwned)", "it's > out", ""]


def test_a_printed_command_gives_the_shell_back_each_argument_as_it_is():
    for value in HOSTILE:
        assert shlex.split(tuner_command("train", "--from", f"/runs/{value}")) == \
            ["python", "-m", "tuner", "train", "--from", f"/runs/{value}"]


def test_the_resume_command_train_from_prints_is_quoted(run_on_disk, sim_model2_tiny32):
    from tuner.final import run_warnings

    name = "x'; echo pwned > y; '"
    run = run_on_disk(name=name)
    settings = json.loads((run / "experiment.json").read_text())
    (run / "experiment.json").write_text(json.dumps({**settings, "num_samples": 5}))  # 2 of 5 trials: interrupted
    (warning,) = run_warnings(run, load_dataset(sim_model2_tiny32))
    assert shlex.split(warning.split("`")[1]) == ["python", "-m", "tuner", "search", "--space", "effnet_cls",
                                                  "--name", name, "--storage", str(run.parent), "--resume"]
