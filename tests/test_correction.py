"""The correction's derivatives and symmetries, checked against finite differences and transformations."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepks_es.engines import make_engine
from deepks_es.scf.correction import Correction
from deepks_es.scf.systems import SCFSettings, build_system

from conftest import TEST_KE_CUTOFF, central_difference, pyscf_engine


@pytest.fixture(scope="module")
def dimer_dm(dimer):
    return make_engine("none").compute(dimer).scf.density_matrix


def test_potential_is_density_matrix_derivative(dimer, dimer_dm, random_model):
    correction = Correction(random_model, build_system(dimer, SCFSettings()))
    _, potential = correction.energy_potential(dimer_dm)
    rng = np.random.default_rng(0)
    step = 1e-5
    for _ in range(3):
        direction = rng.standard_normal(dimer_dm.shape)
        direction = direction + direction.T
        direction /= np.linalg.norm(direction)
        e_plus = correction.energy_potential(dimer_dm + step * direction)[0]
        e_minus = correction.energy_potential(dimer_dm - step * direction)[0]
        assert np.sum(potential * direction) == pytest.approx((e_plus - e_minus) / (2 * step), rel=1e-6, abs=1e-10)


@pytest.mark.parametrize("name", ["dimer", "box"])
def test_explicit_gradient_at_fixed_density_matrix(request, name, random_model):
    structure = request.getfixturevalue(name)
    settings = SCFSettings(ke_cutoff=TEST_KE_CUTOFF)
    system = build_system(structure, settings)
    rng = np.random.default_rng(1)
    dm = rng.standard_normal((system.nao, system.nao)) * 0.05
    dm = dm + dm.T + np.eye(system.nao)
    grad = Correction(random_model, system).nuclear_gradient(dm)

    def e_delta(moved):
        return Correction(random_model, build_system(moved, settings)).energy_potential(dm)[0]

    for atom, axis in [(0, 0), (1, 1), (4, 2)]:
        assert -central_difference(e_delta, structure, atom, axis, step=1e-4) == pytest.approx(
            grad[atom, axis], abs=1e-8)


@pytest.fixture(scope="module")
def corrected_dimer(dimer, random_model):
    return pyscf_engine(random_model).compute(dimer)


def test_rotation_and_translation(dimer, random_model, corrected_dimer):
    rotation = Rotation.from_euler("zyx", [0.7, -0.4, 1.9]).as_matrix()
    moved = dimer.with_positions(dimer.positions @ rotation.T + np.array([1.3, -0.8, 2.1]))
    result = pyscf_engine(random_model).compute(moved)
    assert result.scalars["e_delta_hartree"] == pytest.approx(corrected_dimer.scalars["e_delta_hartree"], abs=1e-7)
    assert result.energy == pytest.approx(corrected_dimer.energy, abs=2e-6)  # DFT grids are not rotation invariant
    np.testing.assert_allclose(result.forces, corrected_dimer.forces @ rotation.T, atol=5e-5)


def test_permutation_of_like_atoms(dimer, random_model, corrected_dimer):
    order = [3, 5, 4, 0, 2, 1]  # swap the two waters and, inside each, the two hydrogens
    swapped = dimer.__class__(tuple(dimer.symbols[i] for i in order), dimer.positions[order])
    result = pyscf_engine(random_model).compute(swapped)
    assert result.scalars["e_delta_hartree"] == pytest.approx(corrected_dimer.scalars["e_delta_hartree"], abs=1e-9)
    assert result.energy == pytest.approx(corrected_dimer.energy, abs=1e-9)
    np.testing.assert_allclose(result.forces, corrected_dimer.forces[order], atol=1e-7)


def test_descriptors_vary_with_geometry(dimer, random_model, dimer_dm):
    correction = Correction(random_model, build_system(dimer, SCFSettings()))
    d = correction.descriptors(dimer_dm)
    assert d.shape == (6, random_model.spec.ndescriptor)
    # the two waters are inequivalent (donor/acceptor): their oxygen descriptors differ
    assert np.abs(d[0] - d[3]).max() > 1e-3
    assert np.all(np.isfinite(d))


@pytest.mark.parametrize("name", ["dimer", "box"])
def test_projector_derivative_is_minus_the_ao_derivative(request, name, random_model):
    """<phi|d alpha> = -<d phi|alpha>: the overlap is translation invariant (image by image for a cell);
    for a cell the screened lattice sums match PySCF's unscreened ``intor_cross``."""
    from pyscf import gto
    from pyscf.pbc import gto as pbc_gto

    from deepks_es.model.projectors import projector_overlaps, projector_system

    system = build_system(request.getfixturevalue(name), SCFSettings(ke_cutoff=TEST_KE_CUTOFF))
    spec = random_model.spec
    proj = projector_system(system, spec)
    unscreened = pbc_gto.intor_cross if name == "box" else gto.intor_cross
    overlaps = projector_overlaps(system, spec, with_derivatives=True)
    np.testing.assert_allclose(overlaps.ovlp.reshape(system.nao, -1),
                               np.asarray(unscreened("int1e_ovlp", system, proj)).real, atol=1e-10)
    direct = np.asarray(unscreened("int1e_ipovlp", proj, system, comp=3)).real
    direct = direct.transpose(0, 2, 1).reshape(overlaps.ip_ao.shape)
    np.testing.assert_allclose(-overlaps.ip_ao, direct, atol=1e-10)
    assert np.abs(direct).max() > 0.1
