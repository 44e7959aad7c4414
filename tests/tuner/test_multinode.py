"""A search on a two-node Ray cluster, and a search that loses a node halfway.

Both nodes run on this machine: a head and a worker, each started by the test as its own
``ray start --block`` child process (in its own process session, with its own temp dir, so it never
touches another Ray on the machine) and stopped by that process id. Every search runs as a
subprocess (``python -m tuner search --address ...``): the test session may already hold a local
Ray in-process. Ray turns ``--node-ip-address 127.0.0.1`` into this machine's own address, so
the traffic never leaves the machine.

The shared-storage check is tested twice: for real on the cluster (two nodes on one machine do
share the file system), and against a fake Ray whose second node cannot see the file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tuner.errors import ConfigError
from tuner.preflight import _read_token, check_shared_storage

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
# Ray 2.59+ heads use token authentication; workers and drivers must be told to use it too.
ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
ENV.pop("RAY_ADDRESS", None)
FINISHED = {"completed", "stopped"}
EPOCHS = 8  # for the node-loss search


# ---------------------------------------------------------------- the check itself, against a fake Ray


class FakeRay:
    """Enough of the ``ray`` module for :func:`check_shared_storage`: nodes, remote tasks, wait, get.

    Each task runs the real probe function; on a node listed in ``blind`` it looks for the file
    somewhere else (as a node without the shared mount would), and a node in ``silent`` never answers.
    """

    def __init__(self, alive: int, blind: tuple[str, ...] = (), silent: tuple[str, ...] = ()):
        self.node_ids = [node_id(i) for i in range(alive)]
        self.blind, self.silent = blind, silent
        self.probed: list[str] = []

    def nodes(self) -> list[dict]:
        return [{"NodeID": n, "Alive": True} for n in self.node_ids] + [{"NodeID": node_id(9), "Alive": False}]

    def remote(self, **options):
        fake = self

        class Task:
            def __init__(self, fn, node=None):
                self.fn, self.node = fn, node

            def options(self, scheduling_strategy):
                assert scheduling_strategy.soft is False  # pinned: a probe must not wander to another node
                return Task(self.fn, scheduling_strategy.node_id)

            def remote(self, path, token):
                fake.probed.append(self.node)
                return (self.node, self.fn, path, token)

        assert options.get("num_cpus", 1) <= 0.1, "the probe must not wait for trial resources"
        return lambda fn: Task(fn)

    def wait(self, refs, num_returns, timeout):
        ready = [r for r in refs if r[0] not in self.silent]
        return ready, [r for r in refs if r[0] in self.silent]

    def get(self, ref):
        node, fn, path, token = ref
        return fn(path + ".elsewhere" if node in self.blind else path, token)


def node_id(i: int) -> str:
    return f"{i + 1:056x}"  # Ray checks node ids: 28 bytes in hex


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".shared-storage")]


def test_storage_seen_by_every_node_passes(tmp_path):
    fake = FakeRay(alive=3)
    check_shared_storage(str(tmp_path / "runs"), fake)
    assert fake.probed == [node_id(0), node_id(1), node_id(2)], "every alive node (only those) is probed"
    assert leftovers(tmp_path / "runs") == [], "the probe file must be removed"


@pytest.mark.parametrize("blind,silent,count", [((1,), (), 1), ((), (0,), 1), ((0,), (1,), 2)])
def test_storage_a_node_cannot_see_is_refused_in_one_line(tmp_path, blind, silent, count):
    fake = FakeRay(alive=2, blind=tuple(map(node_id, blind)), silent=tuple(map(node_id, silent)))
    with pytest.raises(ConfigError) as refused:
        check_shared_storage(str(tmp_path), fake)
    message = str(refused.value)
    assert len(message.splitlines()) == 1, message
    assert str(tmp_path) in message and f"{count} of 2" in message and "s3://" in message, message
    assert leftovers(tmp_path) == [], "the probe file must be removed even when the check fails"


def test_one_node_or_object_storage_is_not_probed(tmp_path):
    one = FakeRay(alive=1)
    check_shared_storage(str(tmp_path), one)
    check_shared_storage("s3://bucket/runs", FakeRay(alive=2, blind=(node_id(1),)))
    assert one.probed == [] and leftovers(tmp_path) == []


def test_probe_reads_only_the_drivers_token(tmp_path):
    probe = tmp_path / "probe"
    assert not _read_token(str(probe), "abc")  # missing
    probe.write_text("xyz")
    assert not _read_token(str(probe), "abc")  # a stale or foreign file
    probe.write_text("abc")
    assert _read_token(str(probe), "abc")


# ---------------------------------------------------------------- a real two-node cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """A head and worker nodes, each a ``ray start --block`` child process in its own session.

    ``--block`` keeps ``ray start`` in the foreground as the parent of its node's processes
    (raylet, GCS, agents); SIGTERM to it drains and stops them. Its own session lets the test
    kill the node abruptly (SIGKILL to the process group), which is how a machine dies.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rmn-", dir="/tmp"))  # short: Ray's socket paths must fit
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def _start(self, name: str, *flags: str) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        node = subprocess.Popen([RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--block",
                                 "--disable-usage-stats", "--temp-dir", str(self.root / name), *flags],
                                cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.nodes.append(node)
        return node

    def start(self, storage: Path, workers: int = 1) -> dict:
        """Start the head and ``workers`` workers; returns the node ids once all are alive and see ``storage``."""
        self._start("head", "--head", "--port", str(self.port), "--include-dashboard=false")
        for i in range(workers):
            self._start(f"worker{i}", "--address", self.address)
        return self.check(1 + workers, storage)

    def check(self, expected: int, storage: Path) -> dict:
        """Wait until ``expected`` nodes are alive, run the shared-storage check, return the node ids.

        In a subprocess, like every driver here: this test session may hold another Ray.
        """
        script = f"""
import json, sys, time
import ray
from tuner.preflight import check_shared_storage
for attempt in range(60):
    try:
        ray.init(address={self.address!r}, log_to_driver=False, configure_logging=False)
        break
    except Exception:
        time.sleep(1)
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= {expected}:
        break
    time.sleep(0.5)
check_shared_storage({str(storage)!r}, ray)  # the real check: both nodes share this file system
head = [n["NodeID"] for n in alive if "node:__internal_head__" in n["Resources"]]
print(json.dumps({{"head": head, "workers": [n["NodeID"] for n in alive if n["NodeID"] not in head]}}))
"""
        for node in self.nodes:
            assert node.poll() is None, f"a Ray node exited early; see the logs in {self.root}"
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, f"cannot use the test cluster:\n{done.stderr[-3000:]}"
        ids = json.loads(done.stdout.strip().splitlines()[-1])
        assert len(ids["head"]) == 1 and len(ids["workers"]) == expected - 1, f"nodes not all alive: {ids}"
        return {"head": ids["head"][0], "workers": ids["workers"]}

    def kill(self, node: subprocess.Popen) -> None:
        """Kill a node abruptly: its ``ray start`` process and everything in its session."""
        kill_session(node.pid)
        node.wait(timeout=30)

    def stop(self) -> None:
        """Stop every node this test started: SIGTERM (Ray drains and exits), then SIGKILL."""
        for node in reversed(self.nodes):  # workers first, then the head
            if node.poll() is None:
                node.terminate()
        for node in self.nodes:
            try:
                node.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
            kill_session(node.pid)  # whatever of the node outlived its ray start process
            node.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def cluster():
    nodes = LocalCluster()
    try:
        yield nodes
    finally:
        nodes.stop()


def session_members(sid: int) -> list[int]:
    """Process ids of the session ``sid`` (from /proc: field 6 of each process's stat line)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp session
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session this test started (a node's ``ray start`` leads its own).

    Ray's worker processes, trials among them, run in their own process groups inside the node's
    session, so killing the node's process group alone would leave them training: a trial of a
    "dead" node could then report and checkpoint after Tune had already restarted it elsewhere.
    """
    for pid in session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def search_argv(data: Path, address: str, storage: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tuner", "search", "--space", "effnet_cls", "--smoke-test", "--data", str(data),
            "--address", address, "--storage", str(storage), "--name", name, *extra]


def trials(run_dir: Path):
    return pq.read_table(run_dir / "trials.parquet").to_pandas().set_index("trial_id")


def results_so_far(run_dir: Path) -> dict[str, list[dict]]:
    """Every trial's reported results, read from the result.json files Tune writes as it goes."""
    out = {}
    for path in run_dir.glob("*/result.json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        try:
            results = [json.loads(line) for line in lines]
        except json.JSONDecodeError:  # a line being written right now
            results = [json.loads(line) for line in lines[:-1]]
        if results:
            out[path.parent.name] = results
    return out


@pytest.mark.long
@pytest.mark.slow
@pytest.mark.ray
def test_search_runs_trials_on_both_nodes(cluster, sim_model2_tiny, tmp_path):
    nodes = cluster.start(tmp_path, workers=1)
    driver = subprocess.run(search_argv(sim_model2_tiny, cluster.address, tmp_path, "mn", "--num-samples", "6"),
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert driver.returncode == 0, f"search failed:\n{driver.stdout[-3000:]}\n{driver.stderr[-3000:]}"

    table = trials(tmp_path / "mn")
    assert len(table) == 6
    assert set(table["status"]) <= FINISHED, f"not every trial finished: {table['status'].to_dict()}"
    used = set(table["node"])
    assert used == {nodes["head"], *nodes["workers"]}, f"trials ran on {used}, not on both nodes {nodes}"


@pytest.mark.slow
@pytest.mark.ray
def test_search_survives_losing_a_worker_node(cluster, sim_model2_tiny, tmp_path):
    """Kill the worker node while one of its trials is mid-run: that trial is retried on the head
    from its checkpoint, and every trial still finishes. ``--grace-period`` = ``--max-epochs`` turns
    ASHA's stopping off, so every trial must complete every epoch and none can slip out by being
    stopped; the victim is killed at epoch 1 or 2 of 8 (epochs take about half a second here)."""
    nodes = cluster.start(tmp_path, workers=1)
    worker_id, run_dir = nodes["workers"][0], tmp_path / "loss"
    argv = search_argv(sim_model2_tiny, cluster.address, tmp_path, "loss", "--num-samples", "4",
                       "--max-epochs", str(EPOCHS), "--grace-period", str(EPOCHS))
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        # Wait until both nodes run trials and a trial on the worker has just reported epoch 1 or 2.
        deadline, victim = time.monotonic() + 180, None
        while victim is None and time.monotonic() < deadline and driver.poll() is None:
            seen = results_so_far(run_dir)
            on = {r["node_id"] for rs in seen.values() for r in rs}
            running = [t for t, rs in seen.items() if rs[-1]["node_id"] == worker_id and rs[-1]["epoch"] <= 2]
            if len(on) == 2 and running:
                victim = running[0]
                cluster.kill(cluster.nodes[1])  # the worker: ray start, raylet, and the trial processes on it
                before = results_so_far(run_dir)
            time.sleep(0.1)
        assert victim is not None, ("trials never ran on both nodes at once; driver output:\n"
                                    + (tmp_path / "driver.log").read_text()[-3000:])
        driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)  # only the driver this test started, and its session
            driver.wait()
    output = (tmp_path / "driver.log").read_text()
    assert driver.returncode == 0, f"the search did not survive the node loss:\n{output[-4000:]}"

    table = trials(run_dir)
    assert len(table) == 4
    assert (table["status"] == "completed").all(), f"not every trial completed: {table['status'].to_dict()}"
    assert (table["epochs"] == EPOCHS).all()
    after = results_so_far(run_dir)
    for name, old in before.items():  # nothing reported before the kill is lost or rewritten
        assert after[name][: len(old)] == old, f"{name} lost results it had before the node died"
    # The interrupted trial finished on the head, resuming after its last checkpoint (not from epoch 1):
    # its results are a run of epochs on the worker, then the rest on the head, with no epoch twice.
    curve = after[victim]
    assert [r["epoch"] for r in curve] == list(range(1, EPOCHS + 1)), f"{victim} epochs: {[r['epoch'] for r in curve]}"
    where = [r["node_id"] for r in curve]
    moved = where.index(nodes["head"]) if nodes["head"] in where else len(where)
    assert moved >= len(before[victim]) >= 1 and set(where[:moved]) == {worker_id}, where
    assert set(where[moved:]) == {nodes["head"]} and moved < len(where), f"{victim} did not finish on the head"
    assert curve[moved]["pid"] != curve[moved - 1]["pid"]
    assert table.loc[victim.removeprefix("effnet_cls_"), "node"] == nodes["head"]
