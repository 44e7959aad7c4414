"""Preflight: everything checked before the first trial starts, so a search fails in one line or not at all.

- :func:`connect_ray`: the cluster the user named (``--address`` / ``RAY_ADDRESS``), else a fresh
  local Ray, never a silent attachment to whatever ran last on the machine;
- :func:`check_resources`: requests the cluster can never meet are refused (instead of trials
  waiting in PENDING for ever), and concurrency is capped to what fits at once;
- :func:`check_storage`: the results directory is writable;
- :func:`check_shared_storage`: on several nodes, every node sees the results directory. Tune saves
  every trial's checkpoints and results under ``storage_path``, and a trial that moves to another
  node (after a failure, or when a search resumes) reads them back from there; a node-local path
  would fail much later, with errors about missing checkpoints;
- :func:`check_task_fits`: the data can serve the space's task;
- :func:`check_init_fits`: the ``--init-from`` model can start the space's models.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from lensdata.redact import first_line, redact
from tuner.errors import ConfigError
from tuner.experiment import Experiment
from tuner.storage import is_uri

if TYPE_CHECKING:
    from lensdata import LensingData

# With reused trial processes, Tune waits this long for the previous trial's thread to finish
# before handing the process to the next trial; past it, Ray fails the trial instead of starting a
# new process. Its default (2 s) is too short on a busy machine: seen here as randomly failed trials.
TRIAL_ENV = {"TUNE_FUNCTION_THREAD_TIMEOUT_S": "30"}

# Ray starts every worker process at nice 15 (its raylet's worker_niceness), below anything else the user
# runs: on a shared laptop a trial then yields its core to any process at normal priority, and trained at
# half the bare loop's speed (bench/overhead.py under load: 0.47). A local Ray started here leaves its workers at
# the driver's own priority instead, so `nice python -m tuner search` is how a user gives the search less.
# Set RAY_worker_niceness yourself to keep Ray's choice; a cluster keeps what its raylets were started with.
LOCAL_RAY_ENV = {"RAY_worker_niceness": "0"}


def start_local_ray(**kwargs) -> None:
    """``ray.init(address="local")`` with the workers at the driver's priority (:data:`LOCAL_RAY_ENV`)."""
    import ray

    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)  # read by the raylet this call starts
    ray.init(address="local", **kwargs)


def connect_ray(address: str | None, verbose: bool) -> bool:
    """Attach to the cluster the user named (``--address`` or ``RAY_ADDRESS``), else start a local Ray.

    A plain ``ray.init()`` silently attaches to whatever cluster was last started on the machine,
    even a dead one; being explicit avoids that surprise. An already initialised Ray (a caller's
    own, e.g. a test's) is used as it is. Returns whether this call started the connection.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(log_to_driver=verbose, include_dashboard=False, configure_logging=verbose,
                  runtime_env={"env_vars": TRIAL_ENV})
    if address:
        probe_address(address)
    try:
        if address:
            ray.init(address=address, **{k: v for k, v in kwargs.items() if k != "include_dashboard"})
        else:
            start_local_ray(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = redact(address) if address else "a new local instance"
        why = first_line(err)
        raise ConfigError(f"cannot reach the Ray cluster at {where} ({why}); "
                          "check --address / RAY_ADDRESS, that the head is running, and RAY_AUTH_MODE=token "
                          "if the cluster uses token authentication") from None
    return True


PROBE_TIMEOUT_S = 5.0  # a head that does not accept a TCP connection, or answer on it, in this long is not there
# The first line of an HTTP/2 client's preface. A gRPC server, Ray's GCS among them, greets every connection
# with a SETTINGS frame (type 4: the fourth byte of the frame) whatever it is sent; an HTTP/1 server reads
# this line as a whole request and answers "HTTP/1.x 505" (or 400). Sent whole, the preface would leave an
# HTTP/1 server bytes it never reads, and its close would then reset the connection before its answer is read.
HTTP2_GREETING = b"PRI * HTTP/2.0\r\n\r\n"
GRPC_UNIMPLEMENTED = 12  # the status a gRPC server gives a call to a service it does not have
GCS_PORTS = "give the head's GCS port, 6379 by default, or ray://HOST:10001 for Ray Client"


def probe_address(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address where nothing listens or no Ray GCS answers.

    ``ray.init(address=...)`` retries for ever (and, inside Ray's client, does not hear SIGTERM) a GCS
    that does not answer, so a mistyped ``--address``, a stale ``RAY_ADDRESS`` or another Ray port (the
    dashboard's 8265, Ray Client's 10001) would hang the search with no message. Three checks, each
    bounded: a TCP connection; the HTTP/2 greeting every gRPC server answers (the dashboard answers
    HTTP/1); and Ray's own GCS client, which another gRPC server (Ray Client's) answers "unimplemented".
    ``auto`` (Ray's own lookup of the cluster last started here) and anything without a port are left
    to Ray; a ``ray://`` address (Ray Client) and a TLS cluster (``RAY_USE_TLS``) get the TCP check only.
    """
    import socket

    target = address.removeprefix("ray://").rpartition("@")[2]  # the host, without any user:token@
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    host = host.strip("[]") or "127.0.0.1"
    plain_gcs = not address.startswith("ray://") and os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            answer = _greeting_answer(sock, timeout) if plain_gcs else b""
    except OSError as err:
        why = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ConfigError(f"nothing answers at Ray address {redact(address)} ({redact(why)} within {timeout:g} s); "
                          "start the head (`ray start --head`) or fix --address / RAY_ADDRESS, "
                          "or leave both unset for a local Ray") from None
    if not plain_gcs:
        return
    if len(answer) < 4 or answer[3] != 4:  # no SETTINGS frame: not HTTP/2, so not gRPC
        looks = ("it answers HTTP/1, so it looks like the dashboard's HTTP port" if answer.startswith((b"HTTP/", b"<"))
                 else "it answers in another protocol than gRPC" if answer
                 else f"it sent no gRPC greeting within {timeout:g} s")
        raise ConfigError(f"{redact(address)} answers but is not a Ray GCS ({looks}); {GCS_PORTS}")
    _check_gcs(address)


def _greeting_answer(sock, timeout: float) -> bytes:
    """The first bytes (up to a frame header's 9) a server sends back to the HTTP/2 greeting, within ``timeout``."""
    answer = b""
    try:
        sock.settimeout(timeout)
        sock.sendall(HTTP2_GREETING)
        while len(answer) < 9:
            part = sock.recv(64)
            if not part:
                break
            answer += part
    except OSError:  # it reset the connection, or kept silent: what came before still tells
        pass
    return answer


def _check_gcs(address: str) -> None:
    """Refuse a gRPC server that is not a GCS: Ray's own GCS client asks it for the cluster's id.

    A GCS answers at once. Another gRPC server answers "unimplemented" at once too, which is refused
    here; any other failure (a token the cluster refuses, say) is left to ``ray.init``, which names it.
    """
    try:  # Ray's internal client: if a Ray release moves it, the check is skipped, not the search
        from ray._raylet import GcsClient
        from ray.exceptions import RpcError
    except ImportError:
        return
    try:
        GcsClient(address=address)
    except RpcError as err:
        if getattr(err, "rpc_code", None) == GRPC_UNIMPLEMENTED:
            raise ConfigError(f"{redact(address)} answers gRPC but is not a Ray GCS (it looks like Ray Client's "
                              f"port, 10001 by default, or another Ray process's); {GCS_PORTS}") from None
    except Exception:  # noqa: BLE001, S110 - ray.init meets the same failure and says it in its own words
        pass


def trial_resources(exp: Experiment) -> dict:
    """What Tune reserves for one trial's own process.

    A trial of several workers only drives a ``TorchTrainer``, whose workers hold the CPUs and GPUs
    (Ray Train's controller asks for none). Its driver asks for no CPU at all, so that ``workers x
    cpus`` can fill a node: with even 0.01 CPU, 2 workers x 1 CPU never fit on a 2-CPU node and the
    trial waited for ever. Tune needs a non-empty request, hence the 1 MiB of memory.
    """
    if exp.workers_per_trial > 1:
        return {"cpu": 0, "memory": 2**20}
    return {"cpu": exp.cpus_per_trial, "gpu": exp.gpus_per_trial}


def check_resources(exp: Experiment, ray: ModuleType) -> int:
    """Refuse requests the cluster can never meet (instead of trials hanging in PENDING).

    Returns the concurrency actually used: capped so that every running trial fits at once.
    """
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [n["Resources"].get("CPU", 0) for n in nodes]
    gpus = [n["Resources"].get("GPU", 0) for n in nodes]
    if exp.cpus_per_trial > max(cpus, default=0):
        raise ConfigError(f"--cpus-per-trial {exp.cpus_per_trial:g} exceeds the largest node's "
                          f"{max(cpus, default=0):g} CPUs; ask for at most that")
    if exp.gpus_per_trial > 0 and sum(gpus) == 0:
        raise ConfigError(f"--gpus-per-trial {exp.gpus_per_trial:g} but the cluster has no GPU; "
                          "drop the flag to train on CPUs, or connect to a GPU cluster with --address")
    if exp.gpus_per_trial > max(gpus, default=0) > 0:
        raise ConfigError(f"--gpus-per-trial {exp.gpus_per_trial:g} exceeds the largest node's "
                          f"{max(gpus):g} GPUs; use at most that, or --workers-per-trial for several GPUs")
    # Trials (each of workers_per_trial workers) that fit at once: more would wait in PENDING.
    fits = int(sum(c // exp.cpus_per_trial for c in cpus))
    if exp.gpus_per_trial > 0:
        fits = min(fits, int(sum(g // exp.gpus_per_trial for g in gpus)))
    fits //= exp.workers_per_trial
    if fits == 0:
        raise ConfigError(f"one trial needs {exp.workers_per_trial} workers x {exp.cpus_per_trial:g} CPUs"
                          f"{f' and {exp.gpus_per_trial:g} GPUs' if exp.gpus_per_trial else ''}, more than the "
                          "cluster has; lower --workers-per-trial or the per-trial resources")
    return min(exp.concurrency, fits)


def check_storage(exp: Experiment) -> None:
    """The results directory must be writable before any trial starts."""
    if is_uri(exp.storage):
        return  # object storage: Ray checks its own credentials
    try:
        exp.run_dir.mkdir(parents=True, exist_ok=True)
        probe = exp.run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write results to {exp.run_dir} ({err.strerror}); "
                          "choose a writable --storage") from None


def check_task_fits(task: str, data: LensingData, splits: tuple[str, ...] = ("train", "val")) -> None:
    """Refuse, before any trial, data that cannot serve the task on each split it will read.

    What a task needs is its own (:attr:`trainables.loop.Task.check`): every split must hold images;
    classification two classes or more in each, regression finite targets of one quantity, anomaly
    detection ``no_sub`` images and, outside ``train``, substructure to score against them.
    """
    from trainables import get_task

    get_task(task).check(data, splits)


def check_init_fits(exp: Experiment, image_size: int) -> None:
    """Refuse, before any trial, an ``init_from`` model that cannot start the space's models.

    The space must search one backbone family (in a space that searches the family too, such as
    ``any_cls``, most trials would have another backbone), and its default point must take the
    source's backbone: same family, same image side (:func:`tuner.training.check_init_from`).
    A trial whose own architecture keys share no weight with the source fails when it starts.
    """
    if exp.init_from is None:
        return
    from search_spaces import param_names
    from tuner.training import build_config, check_init_from, source_model

    if "arch" in param_names(exp.space, size=exp.size, image_size=image_size):
        source = json.loads((Path(source_model(exp.init_from)) / "config.json").read_text())
        raise ConfigError(f"init_from starts every trial from one {source['arch']} backbone, but {exp.space} "
                          f"searches the backbone family too; search a {source['arch']} space")
    check_init_from(build_config(exp.space, {}, size=exp.size, image_size=image_size, epochs=exp.max_epochs,
                                 seed=exp.seed, data=exp.data, init_from=exp.init_from))


ANSWER_TIMEOUT_S = 60.0  # a node starts a Python worker for the probe: seconds, more on a busy node


def check_shared_storage(storage: str, ray_module: ModuleType) -> None:
    """Refuse a local ``storage`` path that some alive node of the cluster cannot see.

    The driver writes a file with a random token into ``storage``; a tiny task pinned to each
    alive node reads it back. One node, or object storage (``s3://``, ``gs://``...): nothing to
    check. The probe file is removed whatever happens.

    Raises:
        ConfigError: one or more nodes cannot read the file (or did not answer in time).
    """
    if is_uri(storage):
        return  # object storage: the same for every node by construction
    nodes = [node["NodeID"] for node in ray_module.nodes() if node.get("Alive")]
    if len(nodes) <= 1:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    directory = Path(storage)
    directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    probe = directory / f".shared-storage-probe-{token}"
    probe.write_text(token)
    try:
        read = ray_module.remote(num_cpus=0, max_retries=0)(_read_token)
        refs = [read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                .remote(str(probe), token) for node in nodes]
        answered, _ = ray_module.wait(refs, num_returns=len(refs), timeout=ANSWER_TIMEOUT_S)
        blind = len(refs) - sum(1 for ref in answered if _sees(ray_module, ref))
    finally:
        probe.unlink(missing_ok=True)
    if blind:
        raise ConfigError(
            f"--storage {storage} is not shared: {blind} of {len(nodes)} Ray nodes cannot read a file the "
            "driver wrote there (or did not answer); give a shared file system path mounted at the same "
            "place on every node, or object storage such as s3://bucket/runs")


def _read_token(path: str, token: str) -> bool:
    """Runs on one node: whether the driver's probe file is there, with the driver's token."""
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def _sees(ray_module, ref) -> bool:
    """The probe's answer; a probe that failed (its node died, say) counts as not seeing."""
    try:
        return bool(ray_module.get(ref))
    except Exception:  # noqa: BLE001 - any Ray task failure means this node was not confirmed
        return False
