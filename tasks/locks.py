"""Cross-process locks over one ``GANVIRT_HOME``: concurrent ``ganvirt`` processes on one
machine (or on one shared file system with working locks) take turns where turns matter.

- ``stores`` and ``stores-prefect``: the first use of the embedded stores (MLflow's SQLite
  schema, Prefect's database migrations) happens once; every later process skips the lock.
- ``name:<dataset>``: moving a dataset's ``champion`` and publishing from it is one step, so the
  newest catalog version always comes from the champion at the time it was published.
- ``extractor:<folder>``: a snapshot's feature extractor is trained and registered once.

Locks are ``filelock`` locks on files under ``GANVIRT_HOME/locks`` (``flock`` on POSIX,
``msvcrt`` on Windows): the operating system drops them when the holder dies, so a killed
process never leaves a stale lock behind.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from tasks.home import home


def lock_path(key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)
    return home() / "locks" / f"{safe}.lock"


@contextmanager
def held(key: str, log=None) -> Iterator[None]:
    """Hold the exclusive lock ``key`` for the block (waits for it; ``log`` is told once when
    another process holds it)."""
    path = lock_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)  # a new instance each time: two holders in one process also take turns
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if log is not None:
            log(f"waiting for another ganvirt process ({key})")
        start = time.monotonic()
        lock.acquire()
        if log is not None:
            log(f"got {key} after {time.monotonic() - start:.1f} s")
    try:
        yield
    finally:
        lock.release()


def first_time(key: str, mark: Path, init, always: bool = False) -> None:
    """``init()`` under the lock ``key`` until ``mark`` exists, then write the mark: concurrent
    first runs would otherwise race to do the same one-time work. With ``always``, ``init()``
    also runs (without the lock) once the mark is there."""
    if mark.exists():
        if always:
            init()
        return
    with held(key):
        if mark.exists() and not always:
            return
        init()
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text("prepared\n")
