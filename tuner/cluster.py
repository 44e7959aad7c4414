"""Checks that a multi-node Ray cluster can run a search before any trial starts.

Tune saves every trial's checkpoints and results under ``storage_path``, and a trial that moves to
another node (after a failure, or when a search resumes) reads them back from there. On several
nodes that only works when the path is the same directory everywhere: a shared file system mounted
on every node, or object storage. A node-local path fails much later, with errors about missing
checkpoints; :func:`check_shared_storage` refuses it up front.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tuner.errors import ConfigError

ANSWER_TIMEOUT_S = 60.0  # a node starts a Python worker for the probe: seconds, more on a busy node


def check_shared_storage(storage: str, ray_module) -> None:
    """Refuse a local ``storage`` path that some alive node of the cluster cannot see.

    The driver writes a file with a random token into ``storage``; a tiny task pinned to each
    alive node reads it back. One node, or object storage (``s3://``, ``gs://``...): nothing to
    check. The probe file is removed whatever happens.

    Raises:
        ConfigError: one or more nodes cannot read the file (or did not answer in time).
    """
    if "://" in storage:
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
