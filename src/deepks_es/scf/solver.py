"""SCF with fall-backs: DIIS, then level shift with damping, then second-order (Newton).

Each stage starts from where the previous one stopped; the second-order stage is
skipped where PySCF cannot run it (Γ-point multigrid). The outcome says which
stage converged (or that none did): an unconverged SCF is flagged, never passed
off as converged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL_SHIFT = 0.3  # Hartree
DAMPING = 0.5
DAMPED_CYCLES = 8


@dataclass
class SCFOutcome:
    converged: bool
    cycles: int
    stage: str


def supports_newton(mf) -> bool:
    """PySCF's second-order solver fails inside the Γ-point multigrid XC kernel (PySCF 2.14)."""
    from pyscf.pbc.dft.multigrid import MultiGridNumInt2

    return not isinstance(getattr(mf, "_numint", None), MultiGridNumInt2)


def run_scf(mf, dm0=None, second_order: bool = True) -> SCFOutcome:
    """Converge ``mf`` in place from the initial density matrix ``dm0`` (None, or one of another shape than
    the system's AO basis: PySCF's guess); the second-order stage runs only if ``second_order`` and PySCF
    supports it for ``mf``.

    A warm start's own Fock matrix enters the DIIS subspace (``diis_start_cycle = 0``): from an
    extrapolated density PySCF's second plain Roothaan step overshoots, DIIS over the first two Fock
    matrices does not (mean SCF cycles of an 8-water MD segment 5.25 -> 5.05, README Performance).
    """
    nao = mf.mol.nao_nr()
    if dm0 is not None and np.shape(dm0) != (nao, nao):
        dm0 = None
    cycles = 0

    def count(_envs):
        nonlocal cycles
        cycles += 1

    mf.callback = count
    if dm0 is not None:
        mf.diis_start_cycle = 0
    try:
        mf.kernel(dm0=dm0)
        if mf.converged:
            return SCFOutcome(True, cycles, "diis")

        saved = mf.level_shift, mf.damp, mf.diis_start_cycle
        mf.level_shift, mf.damp, mf.diis_start_cycle = LEVEL_SHIFT, DAMPING, DAMPED_CYCLES
        try:
            mf.kernel(dm0=mf.make_rdm1())
        finally:
            mf.level_shift, mf.damp, mf.diis_start_cycle = saved
        if mf.converged:
            return SCFOutcome(True, cycles, "level_shift")
        if not (second_order and supports_newton(mf)):
            return SCFOutcome(False, cycles, "level_shift")

        newton = mf.newton()
        newton.callback = count
        newton.kernel(mf.mo_coeff, mf.mo_occ)
        for name in ("converged", "e_tot", "mo_energy", "mo_coeff", "mo_occ"):
            setattr(mf, name, getattr(newton, name))
        return SCFOutcome(bool(mf.converged), cycles, "newton")
    finally:
        mf.callback = None
