"""PySCF systems and Kohn-Sham objects for a :class:`~deepks_es.structure.Structure`.

Clusters: molecular ``Mole`` + RKS with density fitting. Periodic boxes: Γ-point
``pbc.gto.Cell`` + RKS with ``MultiGridNumInt2`` for semilocal functionals (the
route with analytic forces in PySCF) or Gaussian density fitting for hybrids
(energies only). Same basis and pseudopotentials for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyscf import dft, gto
from pyscf.dft import libxc
from pyscf.pbc import dft as pbc_dft
from pyscf.pbc import gto as pbc_gto

from ..errors import SettingsError, StructureError, first_line
from ..pyscf_compat import is_cell, uses_multigrid
from ..structure import Structure

# Hartree: the multigrid cutoff of periodic runs (the SCF main job, labels, benchmarks, validation). Below it PBE's
# energy ripples as the atoms move against the mesh (egg-box): a rigid 0.16-Bohr shift of an 8-water box changes
# the forces by 164 meV/Å RMS at 100 Ha, 99 at 200, 39 at 300, 8 at 400, 1.5 at 500 (README, "The periodic
# cutoff"; examples/periodic_cutoff.py).
PERIODIC_KE_CUTOFF = 500.0


@dataclass(frozen=True)
class SCFSettings:
    """Kohn-Sham calculation settings (atomic units).

    Attributes:
        xc: exchange-correlation functional (PySCF/libxc name), e.g. PBE or HSE06.
        basis: AO basis; the GTH bases go with ``pseudo``.
        pseudo: pseudopotential (None for all-electron, clusters only).
        charge: total charge (electrons).
        conv_tol: SCF energy convergence (Hartree).
        conv_tol_grad: orbital-gradient convergence (norm of the occupied-virtual Fock block, Hartree);
            None: sqrt(conv_tol), PySCF's default. Forces err by ~2-5 meV/Å per 1e-3 of it (README
            Performance), so MD runs a loose conv_tol with a tight conv_tol_grad.
        max_cycle: SCF iterations per solver stage (DIIS, then level shift, then second order).
        second_order: whether the solver ends with the second-order (Newton) stage; without it an SCF
            still unconverged after DIIS and level shifting is given up sooner.
        grid_level: molecular DFT grid level (0-9).
        ke_cutoff: periodic plane-wave cutoff for the multigrid XC/Coulomb (Hartree); None lets
            PySCF choose from the basis.
        verbose: PySCF verbosity (0 silent).
    """

    xc: str = "PBE"
    basis: str = "gth-dzvp"
    pseudo: str | None = "gth-pbe"
    charge: int = 0
    conv_tol: float = 1e-9
    conv_tol_grad: float | None = None
    max_cycle: int = 50
    second_order: bool = True
    grid_level: int = 3
    ke_cutoff: float | None = None
    verbose: int = 0


def build_system(structure: Structure, settings: SCFSettings):
    """The PySCF ``Mole`` (cluster) or ``Cell`` (periodic) of ``structure``, positions in Bohr."""
    atoms = [(s, tuple(p)) for s, p in zip(structure.symbols, structure.positions)]
    kwargs = dict(atom=atoms, unit="Bohr", basis=settings.basis, charge=settings.charge, spin=0,
                  verbose=settings.verbose)
    if settings.pseudo:
        kwargs["pseudo"] = settings.pseudo
    try:
        if structure.is_periodic:
            if not settings.pseudo:
                raise SettingsError("periodic boxes need a GTH pseudopotential (e.g. --pseudo gth-pbe): "
                                    "PySCF has no periodic all-electron forces")
            kwargs["a"] = np.asarray(structure.cell)
            if settings.ke_cutoff:
                kwargs["ke_cutoff"] = settings.ke_cutoff
            return pbc_gto.M(**kwargs)
        return gto.M(**kwargs)
    except SettingsError:
        raise
    except (KeyError, RuntimeError, ValueError) as exc:
        text = first_line(exc, type(exc).__name__)
        raise StructureError(f"cannot set up basis {settings.basis!r}/pseudo {settings.pseudo!r} for "
                             f"{', '.join(sorted(set(structure.symbols)))}: {text}") from None


def overlap_matrix(system) -> np.ndarray:
    """The AO overlap of a ``Mole``, or the Γ-point (lattice-summed) overlap of a ``Cell``."""
    if is_cell(system):
        return np.asarray(system.pbc_intor("int1e_ovlp", hermi=1))
    return np.asarray(system.intor_symmetric("int1e_ovlp"))


DENSE_MATRICES = 40  # nao x nao float64 arrays alive at once in an SCF and its gradient (a floor, not a peak)
GRID_ARRAYS = 30  # float64 arrays on the periodic FFT mesh


def memory_floor(system) -> float:
    """A lower bound of the memory an SCF of ``system`` needs (bytes): its dense AO matrices and, for a Cell,
    its FFT mesh. Density-fitting tensors and grids come on top."""
    floor = 8.0 * DENSE_MATRICES * system.nao_nr() ** 2
    if is_cell(system):
        floor += 8.0 * GRID_ARRAYS * float(np.prod(system.mesh))
    return floor


def available_memory() -> float | None:
    """MemAvailable of this machine (bytes), None where /proc/meminfo does not tell."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    return None


def check_memory(system) -> None:
    """A one-line :class:`SettingsError` when even :func:`memory_floor` exceeds the memory available."""
    needed, available = memory_floor(system), available_memory()
    if available is not None and needed > available:
        raise SettingsError(f"this calculation ({system.natm} atoms, {system.nao_nr()} AOs) needs at least "
                            f"{needed / 2**30:.1f} GiB, the machine has {available / 2**30:.1f} GiB available: "
                            "use a smaller system, or a machine with more memory")


def make_rks(system, settings: SCFSettings):
    """Restricted Kohn-Sham object: DF for clusters, multigrid (GGA) or GDF (hybrid) at Γ for cells."""
    if system.nelectron % 2:
        raise SettingsError(f"odd number of electrons ({system.nelectron}): restricted closed-shell "
                            "Kohn-Sham needs an even count; check the structure or --charge")
    if is_cell(system):
        mf = pbc_dft.RKS(system, xc=settings.xc)
        if libxc.is_hybrid_xc(settings.xc):
            mf = mf.density_fit()
        else:
            mf = mf.multigrid_numint()
    else:
        mf = dft.RKS(system, xc=settings.xc).density_fit()
        mf.grids.level = settings.grid_level
    mf.conv_tol = settings.conv_tol
    if settings.conv_tol_grad is not None:
        mf.conv_tol_grad = settings.conv_tol_grad
    mf.max_cycle = settings.max_cycle
    mf.verbose = settings.verbose
    return mf


def has_analytic_forces(mf) -> bool:
    """Whether PySCF provides analytic nuclear gradients for this Kohn-Sham object."""
    return not is_cell(mf.mol) or uses_multigrid(mf)
