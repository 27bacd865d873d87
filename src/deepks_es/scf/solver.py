"""SCF with fall-backs: DIIS, then level shift with damping, then second-order (Newton).

Each stage starts from where the previous one stopped; the second-order stage is
skipped where PySCF cannot run it (Γ-point multigrid). The outcome says which
stage converged (or that none did): an unconverged SCF is flagged, never passed
off as converged.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pyscf.scf import hf

from ..constants import HARTREE_EV
from ..pyscf_compat import replaced_fock, uses_multigrid

LEVEL_SHIFT = 0.3  # Hartree
DAMPING = 0.5
DAMPED_CYCLES = 8
WARM_DAMPING = 0.5  # weight of the first Fock matrix in the second cycle of a warm start
AUFBAU_TOL = 1e-4  # Hartree: a LUMO further below the HOMO than this violates the aufbau principle


@dataclass
class SCFOutcome:
    """How an SCF ended: converged or not, cycles over all stages, the last stage, and why it failed."""

    converged: bool
    cycles: int
    stage: str
    note: str = ""


def supports_newton(mf) -> bool:
    """PySCF's second-order solver fails inside the Γ-point multigrid XC kernel (PySCF 2.14)."""
    return not uses_multigrid(mf)


@contextmanager
def warm_start_schedule(mf, damping: float = WARM_DAMPING):
    """DIIS from the first cycle, and the second cycle's Fock matrix damped with the first's.

    From an extrapolated density one Roothaan step cuts the error ~8x, but the next one does not: the
    Roothaan map of these water systems has a mode with eigenvalue near -1 (the second step's density
    error equals the first's; DIIS over the first two Fock matrices does not fix it either). Mixing
    F2 <- (1 - d) F(D1) + d F1 with d = 0.5 cancels that mode; both Fock matrices still enter DIIS,
    which runs from the third cycle on. On an 8-water DeePKS-ES MD step the SCF then meets
    conv_tol 1e-7 after 3 cycles instead of 4 (README Performance).

    PySCF's closing check (``conv_check``: one more diagonalisation and Fock build after convergence) is
    off: it costs a Fock build per MD step, and the forces would then belong to a density whose orbital
    gradient was never tested (up to 2x the force error of the converged one, README Performance).
    """
    def damped_second(plain, h1e, s1e, vhf, dm, cycle, diis, fock_last, *args, **kwargs):
        fock = plain(h1e, s1e, vhf, dm, cycle, diis, *args, fock_last=fock_last, **kwargs)  # DIIS records it
        if cycle == 1 and fock_last is not None:
            fock = hf.damping(plain(h1e, s1e, vhf, dm), fock_last, damping)
        return fock

    saved = mf.diis_start_cycle, mf.conv_check
    mf.diis_start_cycle, mf.conv_check = 0, False
    try:
        with replaced_fock(mf, damped_second):
            yield mf
    finally:
        mf.diis_start_cycle, mf.conv_check = saved


def aufbau_violation(mf) -> float:
    """How far (Hartree) the lowest empty orbital of ``mf`` lies below its highest occupied one; 0 if none does."""
    energy, occ = np.asarray(mf.mo_energy), np.asarray(mf.mo_occ)
    if not (occ == 0).any():
        return 0.0
    return max(0.0, float(energy[occ > 0].max() - energy[occ == 0].min()))


def run_scf(mf, dm0=None, second_order: bool = True) -> SCFOutcome:
    """Converge ``mf`` in place from the initial density matrix ``dm0`` (None, or one of another shape than
    the system's AO basis: PySCF's guess); the second-order stage runs only if ``second_order`` and PySCF
    supports it for ``mf``.

    A warm start (``dm0`` given) runs :func:`warm_start_schedule` in its DIIS stage. A converged solution whose
    LUMO lies below its HOMO (by more than :data:`AUFBAU_TOL`) is no closed-shell ground state: the stages run
    once more from the aufbau occupation of its orbitals, and if that does not cure it, the outcome is
    flagged (not converged, stage ``aufbau``) with a note.
    """
    outcome = _run_stages(mf, dm0, second_order)
    first_violation = aufbau_violation(mf)
    if not (outcome.converged and first_violation > AUFBAU_TOL):
        return outcome
    aufbau = mf.make_rdm1(mf.mo_coeff, mf.get_occ(mf.mo_energy, mf.mo_coeff))
    retry = _run_stages(mf, aufbau, second_order=False)
    cycles, violation = outcome.cycles + retry.cycles, aufbau_violation(mf)
    if retry.converged and violation <= AUFBAU_TOL:
        return SCFOutcome(True, cycles, retry.stage)
    how = (f"the LUMO still lies {violation * HARTREE_EV:.2f} eV below the HOMO" if retry.converged
           else "the SCF from the aufbau occupation did not converge")
    return SCFOutcome(False, cycles, "aufbau",
                      f"aufbau violated: the LUMO lay {first_violation * HARTREE_EV:.2f} eV below the HOMO and {how}: "
                      "not a closed-shell ground state (an open-shell or broken system?); the result is flagged")


def _run_stages(mf, dm0, second_order: bool) -> SCFOutcome:
    """DIIS, level shift, second order (see :func:`run_scf`), without the aufbau check."""
    nao = mf.mol.nao_nr()
    if dm0 is not None and np.shape(dm0) != (nao, nao):
        dm0 = None
    cycles = 0

    def count(_envs):
        nonlocal cycles
        cycles += 1

    mf.callback = count
    try:
        if dm0 is None:
            mf.kernel()
        else:
            with warm_start_schedule(mf):
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
