"""Labelled frames on disk: one HDF5 group per frame.

Layout of ``DATA.h5``::

    attrs: format = "deepks-es-data", version, target_xc, base_xc, basis, pseudo, settings (JSON)
    frames/<index:06d>/  attrs: symbols (str)
        positions (natm, 3) Bohr, cell (3, 3) Bohr [periodic only], source_index (frame in the XYZ)
        target/  energy, forces [if analytic], fock, mo_energy, mo_coeff, dm, overlap, nocc, converged, ...
        base/    the same keys for the base functional

Energies in Hartree, forces in Hartree/Bohr, matrices in PySCF AO order.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DeePKSError
from ..fileio import atomic_path
from ..structure import Structure

FILE_TAG = "deepks-es-data"
VERSION = 1


@dataclass
class Frame:
    """One labelled configuration: the structure and its target/base records (see :mod:`.records`); a
    distillation frame (``deepks-es label --distill``) has no base. ``source``: the file it was read from."""

    name: str
    structure: Structure
    target: dict
    base: dict | None
    source: Path | None = None


def frame_arrays(structure: Structure, target: dict, base: dict | None = None) -> dict[str, np.ndarray]:
    """Flat ``{path: array}`` of one frame, paths relative to its group."""
    arrays = {"symbols": np.array(structure.symbols), "positions": np.asarray(structure.positions)}
    if structure.cell is not None:
        arrays["cell"] = np.asarray(structure.cell)
    arrays.update({f"target/{k}": np.asarray(v) for k, v in target.items()})
    arrays.update({f"base/{k}": np.asarray(v) for k, v in (base or {}).items()})
    return arrays


def write_dataset(path: str | os.PathLike, frames: dict[str, dict[str, np.ndarray]], attrs: dict) -> None:
    """Write ``{name: frame_arrays}`` as one HDF5 file, atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["format"] = FILE_TAG
        h5.attrs["version"] = VERSION
        for key, value in attrs.items():
            h5.attrs[key] = value if not isinstance(value, dict) else json.dumps(value)
        group = h5.create_group("frames")
        for name, arrays in frames.items():
            frame = group.create_group(name)
            frame.attrs["symbols"] = " ".join(str(s) for s in arrays["symbols"])
            for key, value in arrays.items():
                if key != "symbols":
                    frame.create_dataset(key, data=value)


def read_dataset(path: str | os.PathLike) -> tuple[list[Frame], dict]:
    """Frames (in file order) and the file attributes of a dataset written by :func:`write_dataset`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DeePKSError(f"dataset not found: {path}")
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FILE_TAG:
                raise DeePKSError(f"{path} is not a deepks-es dataset (made by deepks-es label)")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
            frames = [_read_frame(name, group, path) for name, group in h5["frames"].items()]
    except DeePKSError:
        raise
    except (OSError, KeyError) as exc:
        raise DeePKSError(f"cannot read dataset {path}: {exc}") from None
    return frames, attrs


def read_datasets(paths) -> tuple[list[Frame], dict]:
    """Frames of several datasets labelled alike (one list) and the first file's attributes. With more than one
    file each frame is named ``<file stem>/<frame>``, as :func:`qualified_name` gives; datasets labelled with
    other settings (functionals, basis, cutoffs), or two files of one stem, are a DeePKSError."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    if len(set(stems)) < len(stems):
        raise DeePKSError(f"datasets with the same file name ({', '.join(sorted(map(str, paths)))}): frames are "
                          "told apart by the file's stem; rename one")
    frames, first = [], None
    for path in paths:
        these, attrs = read_dataset(path)
        if first is None:
            first = attrs
        elif json.loads(attrs["settings"]) != json.loads(first["settings"]):
            raise DeePKSError(f"{path} was labelled with other settings than {paths[0]} "
                              "(functionals, basis or cutoff): one training or test set needs one kind of labels")
        for frame in these:
            frame.name = qualified_name(path, frame.name, several=len(paths) > 1)
        frames += these
    return frames, first


def qualified_name(path: str | os.PathLike, name: str, several: bool) -> str:
    """Frame ``name`` of the file at ``path`` in a training on one file (``name``) or on several
    (``<file stem>/<name>``)."""
    return f"{Path(path).stem}/{name}" if several else name


def _read_frame(name: str, group, source: Path) -> Frame:
    cell = group["cell"][()] if "cell" in group else None
    structure = Structure(tuple(group.attrs["symbols"].split()), group["positions"][()], cell)
    records = {part: {k: v[()] for k, v in group[part].items()} if part in group else None
               for part in ("target", "base")}
    return Frame(name, structure, records["target"], records["base"], source)
