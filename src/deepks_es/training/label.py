"""``deepks-es label``: target (HSE06) and base (PBE) calculations of every configuration, into HDF5.

With ``distill`` (a DeePKS-ES model name: ``default`` or a path) each frame gets one record instead,
the self-consistent DeePKS-ES solution as ``target/`` (energy, forces, Kohn-Sham matrix
H_base[rho] + V_delta, overlap, orbitals): the labels a surrogate is distilled from.

Each finished frame is first saved as ``<DATA>.parts/<index>.npz`` (compressed and compact:
:mod:`.parts`; written atomically), so a crashed or killed run resumes where it stopped and never
recomputes a finished frame, and labelling too long for one sitting is carried on
elsewhere with a copy of the parts directory (the repository keeps its periodic
HSE06 labels so: ``inputs/training/periodic/``); when every frame is done the parts
are gathered into ``DATA.h5`` (atomically). Under ``mpiexec -n K`` the ranks take frames
first come, first served (an exclusive ``.claim`` file per frame), and the
cores are divided between their PySCF threads. Claims left by a killed run are
cleared at start, so one ``label`` run writes an output at a time: a second one
started on it while the first lives stops with an error (``<DATA>.parts/run.lock``
holds the first's process id). ``finished_only`` gathers the frames finished so far
into ``DATA.h5`` without labelling (e.g. to train on a campaign still under way,
beside a live run); the file records how many of the configurations it holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DeePKSError
from ..fileio import write_json
from ..parallel import abort_all, barrier, cores_per_process, mpi_rank_size, set_threads
from ..scf.systems import PERIODIC_KE_CUTOFF, SCFSettings
from ..structure import Structure, read_structures
from .dataset import frame_arrays, write_dataset
from .parts import compact_parts, load_part, save_part
from .records import scf_record


@dataclass(frozen=True)
class LabelSettings:
    """Target and base functionals in one basis/pseudopotential (atomic units)."""

    target: SCFSettings = field(default_factory=lambda: SCFSettings(xc="HSE06", conv_tol=1e-9))
    base: SCFSettings = field(default_factory=lambda: SCFSettings(xc="PBE", conv_tol=1e-9))
    nvirt: int = 4
    periodic_ke_cutoff: float = PERIODIC_KE_CUTOFF
    distill: str | None = None

    def for_structure(self, structure: Structure) -> tuple[SCFSettings, SCFSettings]:
        """(target, base) settings for one structure: periodic boxes get the multigrid cutoff."""
        if not structure.is_periodic:
            return self.target, self.base
        return (replace(self.target, ke_cutoff=self.periodic_ke_cutoff),
                replace(self.base, ke_cutoff=self.periodic_ke_cutoff))

    def at_periodic_cutoff(self, ke_cutoff: float | None) -> LabelSettings:
        """These settings with periodic frames at the multigrid cutoff ``ke_cutoff`` (Hartree); None keeps this one.
        Runs of a model on labelled boxes take it: the HSE06 targets (Gaussian density fitting) do not use the mesh."""
        return self if ke_cutoff is None else replace(self, periodic_ke_cutoff=float(ke_cutoff))

    @classmethod
    def from_attrs(cls, attrs: dict) -> LabelSettings:
        """The settings a dataset was labelled with (its file attributes)."""
        raw = json.loads(attrs["settings"])
        return cls(target=SCFSettings(**raw["target"]), base=SCFSettings(**raw["base"]), nvirt=raw["nvirt"],
                   periodic_ke_cutoff=raw["periodic_ke_cutoff"], distill=raw.get("distill"))

    def as_attrs(self) -> dict:
        target = "DeePKS-ES" if self.distill else self.target.xc
        return {"target_xc": target, "base_xc": self.base.xc, "basis": self.base.basis,
                "pseudo": str(self.base.pseudo), "settings": json.dumps(asdict(self))}

    def distill_engine(self):
        """The DeePKS-ES engine of ``distill`` at the base settings (multigrid cutoff for boxes)."""
        from ..engines import make_engine
        from ..engines.spec import EngineSpec

        return make_engine(EngineSpec(model=self.distill, conv_tol=self.base.conv_tol,
                                      ke_cutoff=self.periodic_ke_cutoff))


def label_structure(structure: Structure, settings: LabelSettings, engine=None) -> dict[str, np.ndarray]:
    """Base then target SCF (the target starts from the base density): the frame's arrays; with
    ``settings.distill``, the DeePKS-ES record of ``engine`` (:meth:`LabelSettings.distill_engine`) alone."""
    from ..engines import ReferenceEngine

    if settings.distill:
        return frame_arrays(structure, scf_record(engine, structure, nvirt=settings.nvirt,
                                                  correction_terms=False))
    target_settings, base_settings = settings.for_structure(structure)
    base = scf_record(ReferenceEngine(base_settings), structure, nvirt=settings.nvirt)
    target = scf_record(ReferenceEngine(target_settings), structure, dm0=base["dm"], nvirt=settings.nvirt)
    return frame_arrays(structure, target, base)


def energies_comparable(structure: Structure) -> bool:
    """Whether target and base total energies of ``structure`` can be compared: not for periodic boxes, whose
    hybrid target (GDF) and semilocal base (multigrid) come from PySCF routes whose absolute energies differ
    by a route-dependent constant (~0.44 eV per water here)."""
    return not structure.is_periodic


def _fingerprint(configs: Path, settings: LabelSettings) -> dict:
    return {"configs_sha256": hashlib.sha256(configs.read_bytes()).hexdigest(), "settings": asdict(settings)}


def _difference(stored: dict, requested: dict) -> str:
    """What differs between a parts folder's fingerprint and this run's, as text for an error line."""
    if stored.get("configs_sha256") != requested["configs_sha256"]:
        return "other configurations"
    theirs, ours = stored.get("settings", {}), requested["settings"]
    changed = [f"{key} {theirs.get(key)!r} (here {ours.get(key)!r})" for key in sorted(set(theirs) | set(ours))
               if theirs.get(key) != ours.get(key)]
    return "other settings: " + ", ".join(changed)


def label(configs: str | os.PathLike, output: str | os.PathLike, settings: LabelSettings = LabelSettings(),
          progress: bool = True, finished_only: bool = False) -> Path:
    """Label every frame of ``configs`` into ``output`` (HDF5); resumable, MPI-parallel over frames.
    With ``finished_only``, only gather the frames already finished (no labelling, no lock taken)."""
    configs, output = Path(configs), Path(output)
    structures = read_structures(configs)
    rank, size = mpi_rank_size()
    set_threads(cores_per_process(size))
    parts = output.with_name(output.name + ".parts")
    fingerprint = _fingerprint(configs, settings)
    stamp = parts / "fingerprint.json"
    stored = json.loads(stamp.read_text()) if stamp.is_file() else fingerprint
    if stored != fingerprint:
        raise DeePKSError(f"{parts} holds frames of {_difference(stored, fingerprint)}: label with those settings, "
                          "remove it or choose another output")
    names = [f"{i:06d}" for i in range(len(structures))]
    if finished_only:
        finished = _finished(parts, names)
        if not stamp.is_file() or not finished:
            raise DeePKSError(f"no finished frames in {parts}: label some first")
        if rank == 0:
            _gather(output, parts, finished, settings, configs, len(names))
        return output
    lock = parts / "run.lock"
    if rank == 0:
        parts.mkdir(parents=True, exist_ok=True)
        try:
            _lock(lock)
            compact_parts(parts)  # parts written before the compact form, rewritten in it
        except Exception as exc:  # a lock left by a failed compaction is taken over by the next run
            _stop_all_ranks(exc, rank, size)
            raise
        write_json(stamp, fingerprint)
        for claim in parts.glob("*.claim"):  # left by a killed run
            claim.unlink()
    barrier(size)
    try:
        _label_parts(structures, names, parts, settings, rank, size, progress)
        if rank == 0:
            _gather(output, parts, names, settings, configs, len(names))
    finally:
        if rank == 0:
            lock.unlink(missing_ok=True)
    return output


def _label_parts(structures, names, parts: Path, settings, rank: int, size: int, progress: bool) -> None:
    """This rank's share of the frames, each saved as ``parts/<name>.npz``; returns after every rank is done."""

    def done() -> int:
        return len(_finished(parts, names))

    bar = _progress_bar(len(structures), done()) if progress and rank == 0 else None
    engine = settings.distill_engine() if settings.distill else None
    try:
        for i, name in enumerate(names):
            if (parts / f"{name}.npz").is_file() or not _claim(parts / f"{name}.claim"):
                continue
            arrays = label_structure(structures[i], settings, engine)
            arrays["source_index"] = np.int64(i)
            save_part(parts / f"{name}.npz", arrays)
            (parts / f"{name}.claim").unlink()
            if bar is not None:
                bar.update(done() - bar.n)
    except Exception as exc:
        _stop_all_ranks(exc, rank, size)
        raise
    barrier(size)
    if bar is not None:
        bar.close()


def _finished(parts: Path, names) -> list[str]:
    """The frames of ``names`` whose part is saved in ``parts``."""
    return [name for name in names if (parts / f"{name}.npz").is_file()]


def _stop_all_ranks(exc: Exception, rank: int, size: int) -> None:
    """Under MPI, report ``exc`` and end every rank (the others would wait at a barrier forever)."""
    if size > 1:
        print(f"deepks-es label: error on rank {rank}: {type(exc).__name__}: {exc}; aborting all ranks "
              "(rerun to resume)", file=sys.stderr, flush=True)
        abort_all(1)


def _gather(output: Path, parts: Path, names, settings, configs: Path, total: int) -> None:
    """Write the parts of frames ``names`` (of ``total`` configurations) into ``output`` (HDF5, atomically);
    a missing part is a DeePKSError."""
    missing = sorted(set(names) - set(_finished(parts, names)))
    if missing:
        raise DeePKSError(f"frames {', '.join(missing)} were not labelled (another label run on the same "
                          "output still working?): rerun to finish them")
    frames = {}
    for name in names:
        frames[name] = load_part(parts / f"{name}.npz")
    write_dataset(output, frames, {**settings.as_attrs(), "configs": str(configs), "configurations": total})
    if len(names) < total:
        print(f"deepks-es label: {output} holds the {len(names)} of {total} frames finished so far",
              file=sys.stderr)
    unconverged = [n for n, f in frames.items() if not all(f[k] for k in ("target/converged", "base/converged")
                                                              if k in f)]
    if unconverged:
        print(f"deepks-es label: {len(unconverged)} frame(s) with an unconverged SCF (flagged in the file, "
              f"left out of training): {', '.join(unconverged)}", file=sys.stderr)


def _lock(path: Path) -> None:
    """Take the output's run lock for this process; a live holder is a DeePKSError, a dead one's lock is taken over."""
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        holder = None
    if holder and holder != me:
        alive = holder.get("host") != me["host"] or _process_alive(int(holder.get("pid", 0)))
        if alive:
            raise DeePKSError(f"another deepks-es label run (process {holder.get('pid')} on {holder.get('host')}) "
                              f"is writing this output; wait for it, or remove {path} if it is gone")
    write_json(path, me)


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` (> 0) exists on this host (signal 0 checks, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _claim(path: Path) -> bool:
    """Atomically take a frame (first come, first served between ranks)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _progress_bar(total: int, done: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="frame", desc="label", file=sys.stderr, dynamic_ncols=True)
