"""The ASE calculator in-process and the drive client behind ASE's SocketIOCalculator."""

import os

import numpy as np
import pytest
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.socketio import SocketIOCalculator
from ase.md.verlet import VelocityVerlet

from deepks_es.ase import DeePKSCalculator, DriveLauncher
from deepks_es.constants import BOHR_ANGSTROM, HARTREE_EV
from deepks_es.engines import EngineSpec, make_engine

from conftest import TEST_KE_CUTOFF


@pytest.fixture(scope="module")
def dimer_result(dimer):
    return make_engine("none").compute(dimer)


def test_calculator_units_and_observables(dimer, dimer_result):
    atoms = dimer.to_ase()
    atoms.calc = DeePKSCalculator()
    assert atoms.get_potential_energy() == pytest.approx(dimer_result.energy * HARTREE_EV, abs=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), dimer_result.forces * HARTREE_EV / BOHR_ANGSTROM, atol=1e-5)
    results = atoms.calc.results
    assert results["gap"] == pytest.approx(dimer_result.gap * HARTREE_EV)
    assert results["dos"].shape == results["dos_energies"].shape and results["scf_converged"]


def test_ase_velocity_verlet(dimer):
    atoms = dimer.to_ase()
    atoms.calc = DeePKSCalculator()
    atoms.set_velocities(np.random.default_rng(0).normal(0, 0.005, (6, 3)))
    energies = []
    md = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    md.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    md.run(3)
    assert len(energies) == 4 and np.ptp(energies) < 2e-3  # eV
    assert atoms.calc.results["scf_cycles"] < 9  # warm-started from the previous step


def test_periodic_stress_is_refused_not_zero(box):
    atoms = box.to_ase()
    atoms.calc = DeePKSCalculator(ke_cutoff=TEST_KE_CUTOFF)
    assert "stress" not in atoms.calc.implemented_properties  # PySCF has no periodic multigrid stress
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_socketio_calculator_with_drive_client(dimer, dimer_result):
    atoms = dimer.to_ase()
    with SocketIOCalculator(launch_client=DriveLauncher(EngineSpec(threads=1)),
                            unixsocket=f"deepks-es-test-{os.getpid()}") as calc:
        atoms.calc = calc
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
    # ASE converts with CODATA 2014 constants, deepks-es with CODATA 2018: 8e-9 relative
    assert energy == pytest.approx(dimer_result.energy * HARTREE_EV, rel=2e-8)
    np.testing.assert_allclose(forces, dimer_result.forces * HARTREE_EV / BOHR_ANGSTROM, atol=1e-5)
