"""One labelled frame as a compressed ``.npz`` (``label``'s ``<DATA>.parts/<index>.npz``), stored compactly.

A part holds the flat arrays of :func:`.dataset.frame_arrays`. To keep label campaigns small enough for a
repository (a 16-water periodic frame: 6.3 MB as plain arrays, 2.9 MB so), a symmetric matrix (Fock, density,
overlap, correction potential: symmetric to round-off, ≤ 1e-13 of its largest element) is stored as its upper
triangle under ``<key>@upper``, and an array identical to one stored before it (the base's overlap, the same as
the target's) as the name of that key under ``<key>@same``. Both are lossless up to the matrices' own
round-off asymmetry (~1e-16 Ha); :func:`load_part` returns the full arrays, and reads plain parts too.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DeePKSError
from ..fileio import atomic_path

SYMMETRIC = ("fock", "dm", "overlap", "v_delta")
UPPER, SAME = "@upper", "@same"
ROUND_OFF = 1e-13


def _symmetric(value: np.ndarray) -> bool:
    return (value.ndim == 2 and value.shape[0] == value.shape[1] > 1
            and np.abs(value - value.T).max() <= ROUND_OFF * max(np.abs(value).max(), 1.0))


def pack(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The compact form of one frame's arrays (see the module docstring)."""
    packed, matrices = {}, []
    for key, value in arrays.items():
        value = np.asarray(value)
        twin = next((name for name, matrix in matrices if matrix.shape == value.shape
                     and np.array_equal(matrix, value)), None) if value.ndim == 2 else None
        if twin is not None:
            packed[key + SAME] = np.array(twin)
            continue
        if key.rsplit("/", 1)[-1] in SYMMETRIC and _symmetric(value):
            packed[key + UPPER] = value[np.triu_indices(value.shape[0])]
        else:
            packed[key] = value
        if value.ndim == 2:
            matrices.append((key, value))
    return packed


def unpack(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The frame's full arrays from :func:`pack`'s form (a plain part is returned as it is)."""
    arrays = {}
    for key, value in packed.items():
        if key.endswith(UPPER):
            n = int(round((np.sqrt(8 * value.size + 1) - 1) / 2))
            full = np.zeros((n, n), dtype=value.dtype)
            full[np.triu_indices(n)] = value
            arrays[key[:-len(UPPER)]] = full + np.triu(full, 1).T
        elif key.endswith(SAME):
            arrays[key[:-len(SAME)]] = str(value)
        else:
            arrays[key] = value
    return {key: arrays[value] if isinstance(value, str) else value for key, value in arrays.items()}


def save_part(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write one frame's arrays to ``path`` compactly and atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **pack(arrays))


def _read(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a part as stored; an unreadable file is a DeePKSError."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DeePKSError(f"unreadable label part {path} ({type(exc).__name__}: {exc}): remove it to label "
                          "that frame again") from None


def load_part(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One frame's full arrays from a part written by :func:`save_part` (or a plain ``.npz`` of them)."""
    return unpack(_read(path))


def compact_parts(parts: str | os.PathLike) -> int:
    """Rewrite the plain parts in folder ``parts`` in the compact form (same arrays); returns how many."""
    rewritten = 0
    for path in sorted(Path(parts).glob("*.npz")):
        stored = _read(path)
        if not any(key.endswith((UPPER, SAME)) for key in stored):
            save_part(path, stored)
            rewritten += 1
    return rewritten
