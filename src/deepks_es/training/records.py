"""One self-consistent calculation turned into training data: energies, forces, Hamiltonian, orbitals.

A record is a flat dict of numpy arrays (the keys of the HDF5 frame groups), all
for the *total* Hamiltonian the SCF converged in. A DeePKS-corrected calculation
adds the correction's own parts, so the base is recovered as E - e_delta,
F - forces_delta and fock - v_delta: what the training loss adds the trainable
correction to.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..constants import HARTREE_EV
from ..engines.reference import ReferenceEngine
from ..structure import Structure


def scf_record(engine: ReferenceEngine, structure: Structure, dm0: np.ndarray | None = None, nvirt: int = 4,
               correction_terms: bool = True) -> dict:
    """Converge ``engine``'s Kohn-Sham problem for ``structure`` and collect the record (Hartree, Bohr).

    Keys: ``energy``, ``forces`` (when analytic forces exist), ``fock`` (nao, nao), ``mo_energy`` (nmo,),
    ``mo_coeff`` (nao, nocc + nvirt), ``dm`` (total), ``overlap``, ``nocc``, ``converged``, ``scf_cycles``;
    with a correction also ``e_delta``, ``v_delta`` and ``forces_delta``: the correction's share of the
    force, -dE_delta/dR at fixed dm plus V_delta's share of the energy-weighted density-matrix term
    (``correction_terms=False`` leaves those three out).
    Orbitals are the eigenpairs of ``fock`` at the final density, so they match what the loss diagonalises.
    """
    mf, outcome = engine.solve(structure, dm0)
    dm = np.asarray(mf.make_rdm1())
    overlap, hcore = np.asarray(mf.get_ovlp()), mf.get_hcore()
    veff = mf.get_veff(mf.mol, dm)  # energy, Fock and orbitals all at the final density
    fock = np.asarray(mf.get_fock(hcore, overlap, veff, dm))
    mo_energy, mo_coeff = scipy.linalg.eigh(fock, overlap)
    nocc = mf.mol.nelectron // 2
    record = {"energy": np.float64(mf.energy_tot(dm, hcore, veff)), "fock": fock, "mo_energy": mo_energy,
              "mo_coeff": np.ascontiguousarray(mo_coeff[:, :nocc + nvirt]), "dm": dm, "overlap": overlap,
              "nocc": np.int64(nocc), "converged": np.bool_(outcome.converged),
              "scf_cycles": np.int64(outcome.cycles)}
    forces = engine.forces(mf)
    if forces is not None:
        record["forces"] = forces
    correction = getattr(mf, "correction", None)
    if correction is not None and correction_terms:
        e_delta, v_delta = correction.energy_potential(dm)
        descriptors, _, jacobian = correction.descriptor_jacobians(dm)
        g = correction.descriptor_gradient(descriptors)
        record.update(e_delta=np.float64(e_delta), v_delta=v_delta,
                      forces_delta=-np.einsum("ik,ikax->ax", g, jacobian))
    return record


def record_levels_ev(record: dict) -> dict[str, np.ndarray]:
    """HOMO, LUMO, gap and the occupied levels of a record, in eV."""
    nocc, eps = int(record["nocc"]), np.asarray(record["mo_energy"]) * HARTREE_EV
    return {"homo": eps[nocc - 1], "lumo": eps[nocc], "gap": eps[nocc] - eps[nocc - 1], "occupied": eps[:nocc]}


def base_part(record: dict) -> dict:
    """The base functional's energy, forces and Fock matrix at the record's density (the identity for an
    uncorrected record). The corrected orbitals are not carried over."""
    if "e_delta" not in record:
        return record
    dropped = ("e_delta", "v_delta", "forces_delta", "mo_energy", "mo_coeff")
    base = {k: v for k, v in record.items() if k not in dropped}
    base["energy"] = record["energy"] - record["e_delta"]
    base["fock"] = record["fock"] - record["v_delta"]
    if "forces" in record:
        base["forces"] = record["forces"] - record["forces_delta"]
    return base
