"""Inter-process file locks: serialise the first use of a SQLite file, claim a run.

SQLite has no lock that spans "create the tables, stamp the schema version": two
processes opening a new MLflow or Optuna store at once both see an empty file and both
migrate it (``_alembic_tmp_tags already exists``, ``UNIQUE constraint failed:
alembic_version``). A lock file beside the database makes them take turns; the second one
then finds the tables made. ``fcntl.flock`` locks die with their process, so a crash never
leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class LockBusy(RuntimeError):
    """Another process holds the lock (raised only by non-blocking acquisition)."""


@contextlib.contextmanager
def file_lock(path: str | Path, *, blocking: bool = True) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing) for the block.

    Raises:
        LockBusy: ``blocking=False`` and another process holds it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockBusy(str(path)) from None
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other URLs and ``:memory:``)."""
    if not uri.startswith("sqlite:") or ":///" not in uri:
        return None
    rest = uri.split(":///", 1)[1].split("?", 1)[0]
    if not rest or rest.startswith(":memory:"):
        return None
    return Path(rest)


@contextlib.contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Serialise schema creation of a SQLite store (``<file>.lock`` beside it); a no-op
    for other stores, whose servers serialise themselves."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    with file_lock(path.parent / f".{path.name}.lock"):
        yield
