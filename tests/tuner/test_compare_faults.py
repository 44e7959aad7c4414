"""`tuner compare` on bad input and interruptions: one line, no lost or stale state, the resume command.

Ray is kept out: ``connect_ray`` reports a connection it did not start, and the search of each
architecture is replaced by a stand-in, so each test runs in seconds. What is tested is compare's own
driving: its settings, its locks, its final models' epochs and how it stops.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from lensdata.files import write_json
from tuner.cli import main
from tuner.comparison import compare_settings, search_experiment


@pytest.fixture
def no_ray(monkeypatch):
    """compare without Ray: ``connect_ray`` says it started nothing, and the cluster has 2 CPUs and no GPU."""
    import ray

    import tuner.preflight

    monkeypatch.setattr(tuner.preflight, "connect_ray", lambda address, verbose: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})


def compare(data: Path, storage: Path, *extra: str) -> list[str]:
    return ["compare", "--task", "classification", "--spaces", "effnet_cls", "--preset", "smoke", "--data", str(data),
            "--storage", str(storage), "--name", "c", *extra]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_compare_holds_the_lock_of_each_search_it_drives(no_ray, sim_model2_tiny32, tmp_path, monkeypatch, capsys):
    import tuner.driver

    seen = {}

    def search_and_a_second_driver(exp, space, ray, interrupts):
        seen["status"] = main(["search", "--space", exp.space, "--storage", exp.storage, "--name", exp.name,
                               "--resume"])  # `search --resume` of the search compare is driving
        seen["err"] = capsys.readouterr().err
        interrupts.received = "SIGTERM"  # then compare itself is stopped
        return 130

    monkeypatch.setattr(tuner.driver, "run_search", search_and_a_second_driver)
    assert main(compare(sim_model2_tiny32, tmp_path)) == 130
    assert seen["status"] == 2, seen["err"]
    assert seen["err"].startswith(f"error: run {tmp_path / 'c' / 'searches' / 'effnet_cls'} is in use by another "
                                  "search (process ")


def test_compare_resume_with_other_settings_is_refused_naming_them(no_ray, sim_model2_tiny32, tmp_path, monkeypatch,
                                                                   capsys):
    import tuner.driver

    run = tmp_path / "c"
    run.mkdir()
    saved = compare_settings("classification", spaces="effnet_cls,vit_cls", preset="smoke", data=str(sim_model2_tiny32),
                             num_samples=2, max_epochs=2, storage=str(tmp_path), name="c")
    write_json(run / "compare.json", {"settings": saved})
    before = (run / "compare.json").read_bytes()

    def not_run(exp, space, ray, interrupts):  # reached only if the changed flags were ignored
        interrupts.received = "SIGTERM"
        return 130

    monkeypatch.setattr(tuner.driver, "run_search", not_run)
    assert main(compare(sim_model2_tiny32, tmp_path, "--resume", "--num-samples", "3", "--max-epochs", "2")) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: comparison {run} was started with other settings (spaces effnet_cls,vit_cls (this "
                          "command: effnet_cls); num_samples 2 (this command: 3)); resume it without those flags")
    assert "max_epochs" not in err and (run / "compare.json").read_bytes() == before


@pytest.mark.parametrize("given, final", [(dict(max_epochs=1), 1), (dict(max_epochs=1, final_epochs=3), 3),
                                          ({}, 4)])  # the smoke preset's own final epochs
def test_compare_final_models_train_for_max_epochs_unless_final_epochs_is_given(given, final, tmp_path):
    settings = compare_settings("classification", spaces="effnet_cls", preset="smoke", storage=str(tmp_path),
                                name="c", **given)
    assert search_experiment(tmp_path / "c", settings, "effnet_cls", has_gpu=False).final_epochs == final


def test_sigterm_while_compare_trains_a_final_model_prints_how_to_resume(no_ray, sim_model2_tiny32, tmp_path,
                                                                         monkeypatch, capsys):
    import tuner.comparison
    import tuner.driver

    def searched(exp, space, ray, interrupts):
        write_json(exp.run_dir / "best.json", {"params": {}})
        return 0

    def terminated(config, data, out):  # a batch scheduler's SIGTERM while the tuned model trains on train+val
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(tuner.driver, "run_search", searched)
    monkeypatch.setattr(tuner.comparison, "train_and_predict", terminated)
    assert main(compare(sim_model2_tiny32, tmp_path)) == 130
    out = capsys.readouterr().out
    assert out.endswith("compare interrupted; resume it with:\n  python -m tuner compare --task classification "
                        f"--name c --storage {tmp_path} --resume\n"), out


def test_a_compare_that_cannot_reach_its_cluster_can_be_run_again_as_it_was(sim_model2_tiny32, tmp_path, monkeypatch,
                                                                            capsys):
    import ray

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # not the session's Ray: this command's own
    monkeypatch.setenv("RAY_ADDRESS", "")
    argv = compare(sim_model2_tiny32, tmp_path, "--address", f"127.0.0.1:{port}")
    for _ in range(2):  # the same command again: refused for the same reason, not for what the first one left
        assert main(argv) == 2
        assert one_error_line(capsys).startswith(f"error: nothing answers at Ray address 127.0.0.1:{port}")
    assert not (tmp_path / "c").exists()  # no compare.json, and no folder holding only the lock
