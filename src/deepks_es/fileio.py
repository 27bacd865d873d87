"""Atomic file writes: a temp file beside the target, renamed over it only on success."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

RUN_INPUT = "input.xml"
"""The i-PI input that ``deepks-es run`` writes into a run directory (and ``analyze`` reads)."""

DOS_GRID_FILE = "dos_grid.json"
"""The DOS grid description a client writes beside a run."""


def existing_file(path: str | os.PathLike, what: str, error: type[Exception]) -> Path:
    """``path`` if it is a file; else ``error`` with a one-line message naming ``what`` (e.g. "model file")."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a directory, not a {what}")
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    return path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, else remove it.

    Missing parent directories are created.
    The file gets the permissions of an ordinary new file (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data) -> None:
    """JSON to ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        json.dump(data, handle, indent=1)
