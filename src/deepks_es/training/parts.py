"""One labelled frame as a compressed ``.npz`` (``label``'s ``<DATA>.parts/<index>.npz``), stored compactly.

A part holds the flat arrays of :func:`.dataset.frame_arrays`. To keep label campaigns small enough for a
repository (a 16-water periodic frame: 6.3 MB as plain arrays, 2.9 MB so), a symmetric matrix (Fock, density,
overlap, correction potential: symmetric to round-off, ``|A - Aᵀ| ≤ 1e-13 max|A|``) is stored as its upper
triangle under ``<key>@upper``, and an array equal to one stored before it (the base's overlap, the same as the
target's) as the name of that key under ``<key>@same``. Read back, a symmetric matrix's lower triangle is its
upper one: it changes by its own round-off asymmetry (≤ 1.4e-15 on the repository's periodic labels), nothing
else changes. :func:`load_part` returns the full arrays, and reads plain parts too.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DeePKSError
from ..fileio import atomic_path

SYMMETRIC = ("fock", "dm", "overlap", "v_delta")
UPPER, SAME = "@upper", "@same"
ROUND_OFF = 1e-13
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _symmetric(value: np.ndarray) -> bool:
    return (value.ndim == 2 and value.shape[0] == value.shape[1] > 1
            and np.abs(value - value.T).max() <= ROUND_OFF * np.abs(value).max())


def pack(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The compact form of one frame's arrays (see the module docstring)."""
    packed, matrices = {}, []
    for key, value in arrays.items():
        if key.endswith((UPPER, SAME)):
            raise ValueError(f"array name {key!r} ends in a suffix of the compact form")
        value = np.asarray(value)
        twin = next((name for name, matrix in matrices if matrix.shape == value.shape
                     and matrix.dtype == value.dtype and np.array_equal(matrix, value)), None)
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
    arrays, twins = {}, {}
    for key, value in packed.items():
        if key.endswith(UPPER):
            n = int(round((np.sqrt(8 * value.size + 1) - 1) / 2))
            full = np.zeros((n, n), dtype=value.dtype)
            full[np.triu_indices(n)] = value
            arrays[key[:-len(UPPER)]] = full + np.triu(full, 1).T
        elif key.endswith(SAME):
            arrays[key[:-len(SAME)]] = None  # keeps the order; filled below
            twins[key[:-len(SAME)]] = str(value)
        else:
            arrays[key] = value
    for key, twin in twins.items():
        arrays[key] = arrays[twin].copy()
    return arrays


def _write(path: str | os.PathLike, packed: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **packed)


def save_part(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write one frame's arrays to ``path`` compactly and atomically."""
    _write(path, pack(arrays))


def _read(path: Path, keys_only: bool = False):
    """The arrays of a part as stored (or only their names); an unreadable file is a DeePKSError."""
    try:
        with np.load(path) as data:
            return list(data.files) if keys_only else {key: data[key] for key in data.files}
    except _UNREADABLE as exc:
        raise DeePKSError(f"unreadable label part {path} ({type(exc).__name__}: {exc}): remove it to label "
                          "that frame again") from None


def load_part(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """One frame's full arrays from a part written by :func:`save_part` (or a plain ``.npz`` of them)."""
    return unpack(_read(Path(path)))


def compact_parts(parts: str | os.PathLike) -> int:
    """Rewrite the plain parts in folder ``parts`` that the compact form shrinks; returns how many."""
    rewritten = 0
    for path in sorted(Path(parts).glob("*.npz")):
        if any(key.endswith((UPPER, SAME)) for key in _read(path, keys_only=True)):
            continue
        stored = _read(path)
        packed = pack(stored)
        if set(packed) != set(stored):
            _write(path, packed)
            rewritten += 1
    return rewritten
