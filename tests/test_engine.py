"""The self-consistent engines: reproduce PySCF, forces = -dE/dR, robust SCF, warm starts."""

import numpy as np
import pytest
from pyscf import dft, gto

from deepks_es.engines import make_engine
from deepks_es.model import CorrectionModel
from deepks_es.scf.systems import PERIODIC_KE_CUTOFF

from conftest import TEST_KE_CUTOFF, central_difference, pyscf_engine


def test_null_model_reproduces_plain_pyscf_pbe(dimer):
    mol = gto.M(atom=[(s, tuple(p)) for s, p in zip(dimer.symbols, dimer.positions)], unit="Bohr",
                basis="gth-dzvp", pseudo="gth-pbe", verbose=0)
    mf = dft.RKS(mol, xc="PBE").density_fit()
    mf.grids.level = 3
    mf.conv_tol = 1e-11
    energy = mf.kernel()
    forces = -mf.Gradients().kernel()

    result = pyscf_engine(CorrectionModel.null(), conv_tol=1e-11).compute(dimer)
    assert result.converged and result.scalars["e_delta_hartree"] == 0.0
    assert result.energy == pytest.approx(energy, abs=1e-8)
    np.testing.assert_allclose(result.forces, forces, atol=1e-6)


@pytest.mark.parametrize("name, components", [
    ("dimer", [(0, 0), (1, 1), (5, 2)]),
    ("box", [(0, 0), (4, 2)]),
])
def test_forces_match_finite_differences(request, random_model, name, components):
    structure = request.getfixturevalue(name)
    engine = pyscf_engine(random_model, conv_tol=1e-11, ke_cutoff=TEST_KE_CUTOFF)
    reference = engine.compute(structure)
    assert reference.converged and abs(reference.scalars["e_delta_hartree"]) > 1e-3

    def energy(moved):
        result = engine.compute(moved, dm0=reference.scf.density_matrix)
        assert result.converged
        return result.energy

    for atom, axis in components:
        assert central_difference(energy, structure, atom, axis) == pytest.approx(
            reference.forces[atom, axis], abs=1e-5)


@pytest.mark.slow
def test_periodic_forces_do_not_ripple_with_the_mesh(box):
    """At the default multigrid cutoff a rigid shift of the box by ~half a mesh spacing leaves the forces as they
    are (egg-box effect; at 100 Ha they moved by 5e-3 Ha/Bohr, 0.26 eV/Å) and their sum near zero."""
    engine = pyscf_engine(None, ke_cutoff=PERIODIC_KE_CUTOFF, conv_tol=1e-10)
    reference = engine.compute(box)
    shifted = engine.compute(box.with_positions(box.positions + np.array([0.053, 0.031, 0.042])),
                             dm0=reference.scf.density_matrix)
    assert reference.converged and shifted.converged
    np.testing.assert_allclose(shifted.forces, reference.forces, atol=3e-4)
    assert np.abs(reference.forces.sum(axis=0)).max() < 3e-4


def test_periodic_virial_is_flagged_not_zero(box, random_model):
    result = pyscf_engine(random_model, ke_cutoff=TEST_KE_CUTOFF).compute(box)
    assert result.forces is not None and result.forces.shape == (6, 3)
    assert result.virial is None
    assert any(note.startswith("virial unavailable") for note in result.notes)
    assert result.to_json_dict()["virial_hartree"] is None


def test_tetramer_with_random_model_converges(tetramer, random_model):
    result = pyscf_engine(random_model).compute(tetramer)
    assert result.converged, result.notes
    assert result.gap > 0 and result.forces.shape == (12, 3)
    assert np.all(np.diff(result.mo_energy) >= 0) and result.mo_occ.sum() == 32


def test_scf_fallback_stages(dimer, random_model):
    starved = pyscf_engine(random_model, max_cycle=1).compute(dimer)
    assert not starved.converged and starved.scf.stage == "newton"
    assert any("not converged" in note for note in starved.notes)
    without_newton = pyscf_engine(random_model, max_cycle=1, second_order=False).compute(dimer)
    assert not without_newton.converged and without_newton.scf.stage == "level_shift"
    assert without_newton.scf.cycles == 2  # one per stage that ran
    rescued = pyscf_engine(random_model, max_cycle=6).compute(dimer)
    assert rescued.converged and rescued.scf.stage in ("level_shift", "newton")
    assert rescued.energy == pytest.approx(pyscf_engine(random_model).compute(dimer).energy, abs=1e-7)


def test_warm_start_per_key(dimer, random_model):
    engine = pyscf_engine(random_model)
    cold = engine.compute(dimer, key="bead-0")
    bent = dimer.positions.copy()
    bent[1] += 0.05
    far = engine.compute(dimer.with_positions(bent), key="bead-1")  # new key: starts from bead-0's density
    near = engine.compute(dimer.with_positions(dimer.positions + 0.01), key="bead-0")
    assert far.scf.cycles < cold.scf.cycles and near.scf.cycles < cold.scf.cycles
    fresh = pyscf_engine(random_model).compute(dimer.with_positions(dimer.positions + 0.01))
    assert near.energy == pytest.approx(fresh.energy, abs=1e-8)
    assert fresh.scf.cycles == cold.scf.cycles


@pytest.mark.slow
def test_periodic_hybrid_is_energy_only(box):
    """Periodic HSE06 (Gaussian density fitting): energy and levels, forces and virial flagged (~45 s)."""
    result = make_engine("none", xc="HSE06", ke_cutoff=TEST_KE_CUTOFF).compute(box)
    assert result.converged and result.forces is None and result.virial is None
    assert any(note.startswith("forces unavailable") for note in result.notes)


def test_cluster_virial_matches_strain_derivative(dimer, random_model):
    engine = pyscf_engine(random_model, conv_tol=1e-11)
    reference = engine.compute(dimer)
    step = 1e-4
    for a, b in [(0, 0), (0, 1), (2, 1)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * step
            moved = dimer.with_positions(dimer.positions @ strain.T)
            energies.append(engine.compute(moved, dm0=reference.scf.density_matrix).energy)
        assert -(energies[0] - energies[1]) / (2 * step) == pytest.approx(reference.virial[a, b], abs=2e-5)
