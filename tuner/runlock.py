"""One driver per run directory.

Two drivers on one run (say ``--resume`` while the search still runs) both train the same trials and
overwrite each other's experiment state: a trial that finished 4 epochs was recorded as an error
after 1. A search holds an exclusive ``flock`` on ``RUN_DIR/.driver.lock`` for its whole life; the
kernel drops it when the process ends, however it ends (SIGKILL included), so a crash never leaves
a stale lock. The file holds the holder's process id and host so the refusal can name them.

``flock`` is advisory and local to one machine's kernel (and unreliable on some network file
systems): it keeps out a second driver on the same machine, which is where a resumed run starts.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from tuner.errors import ConfigError

LOCK_NAME = ".driver.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's driver lock, or refuse in one line naming the holder.

    A run directory left holding nothing but the lock (a start that failed before writing anything)
    is removed when the lock is let go, so a failed start leaves no folder behind. Removing it races
    a driver that opened the lock file just before: that driver checks, once it holds the lock, that
    the file is still the one at the path, and otherwise takes the lock again.

    Raises:
        ConfigError: another live process holds the lock, or the directory cannot be written.
    """
    import fcntl

    lock = run_dir / LOCK_NAME
    for _ in range(10):  # a lost race is retried; ten in a row would take ten drivers ending at once
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fh = open(lock, "a+")  # noqa: SIM115 - closed in the finally below
        except FileNotFoundError:  # the holder that let go removed the empty run directory meanwhile
            continue
        except OSError as err:
            raise ConfigError(f"cannot write to the run directory {run_dir} ({err.strerror}); "
                              "choose a writable --storage") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "an unknown process"
            fh.close()
            raise ConfigError(f"run {run_dir} is in use by another search ({holder}); wait for it to end "
                              "or stop it, then --resume; two drivers on one run would train the same trials "
                              "twice") from None
        if _same_file(fh, lock):
            break
        fh.close()  # the holder that let go removed the file (and its empty run directory): lock the new one
    else:
        raise ConfigError(f"run {run_dir} is being started and ended by other drivers; try again")
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):  # nothing but the lock in it: a start that failed; leave no folder
            if [path.name for path in run_dir.iterdir()] == [LOCK_NAME]:
                lock.unlink()
                run_dir.rmdir()
        fh.close()  # closing drops the lock; a file that stays is taken by the next driver as it is


def _same_file(fh, path: Path) -> bool:
    """Whether the open file ``fh`` is still the file at ``path``."""
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
    except OSError:
        return False
