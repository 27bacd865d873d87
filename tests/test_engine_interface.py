"""The Engine interface: a toy engine from a plugin runs unchanged through every front end; the SCF engines
give the same numbers as before the interface existed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ase import units
from ase.md.verlet import VelocityVerlet

from deepks_es.ase import DeePKSCalculator
from deepks_es.engines import Engine, EngineSpec, make_engine, register_engine
from deepks_es.errors import ModelError, SettingsError
from deepks_es.model.modelfile import write_model_file
from deepks_es.structure import read_structure

from conftest import CLI, INPUTS, REPO, STRUCTURES, TEST_KE_CUTOFF, central_difference, ipi_input

PLUGINS = REPO / "tests" / "plugins"
sys.path.insert(0, str(PLUGINS))
import toy_water_engine  # noqa: E402  (the plugin directory, as an installed package would be)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.pt"
    toy_water_engine.write_toy_model(path)
    return path


def plugin_env():
    """The environment of a process that has the toy plugin installed (on its path, with its entry point)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}


def test_toy_engine_is_found_by_its_model_file(toy_model, dimer):
    engine = make_engine(EngineSpec(model=str(toy_model)))
    assert isinstance(engine, Engine) and engine.describe().kind == toy_water_engine.KIND
    result = engine.compute(dimer)
    for atom, axis in ((0, 0), (2, 1), (4, 2)):
        assert result.forces[atom, axis] == pytest.approx(
            central_difference(lambda s: engine.compute(s).energy, dimer, atom, axis, step=1e-5), abs=1e-8)


def test_toy_virial_is_the_strain_derivative(toy_model, box):
    engine = make_engine(str(toy_model))
    result = engine.compute(box)
    step = 1e-5
    for a, b in ((0, 0), (1, 2), (2, 1)):
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[a, b] += sign * step
            energies.append(engine.compute(box.with_positions(box.positions @ strain, box.cell @ strain)).energy)
        assert result.virial[a, b] == pytest.approx(-(energies[0] - energies[1]) / (2 * step), abs=1e-8)


def test_registration_in_process_and_unknown_kind(tmp_path, dimer):
    calls = []

    def factory(spec, model_file):
        calls.append(spec.model)
        return toy_water_engine.make_toy_engine(spec, model_file)

    register_engine("toy-in-process", factory)
    path = tmp_path / "inprocess.pt"
    write_model_file(path, {"kind": "toy-in-process"}, {"k_bond": toy_water_engine.torch.tensor(0.5),
                                                         "r0": toy_water_engine.torch.tensor(1.8),
                                                         "k_angle": toy_water_engine.torch.tensor(0.1),
                                                         "theta0": toy_water_engine.torch.tensor(1.8)})
    assert make_engine(str(path)).compute(dimer).energy > 0 and calls == [str(path)]
    write_model_file(tmp_path / "alien.pt", {"kind": "no-such-engine"}, {})
    with pytest.raises(ModelError, match="no engine serves model files of kind 'no-such-engine'"):
        make_engine(str(tmp_path / "alien.pt"))


def test_toy_engine_through_compute(toy_model, dimer):
    run = subprocess.run([*CLI, "compute", str(STRUCTURES / "water_dimer.xyz"), "--model", str(toy_model), "--json"],
                         capture_output=True, text=True, env=plugin_env(), timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    expected = make_engine(str(toy_model)).compute(dimer)
    assert out["engine"] == "toy harmonic water" and out["energy_hartree"] == pytest.approx(expected.energy, abs=1e-12)
    assert "scf_cycles" not in out and out["mean_stretch_bohr"] == pytest.approx(expected.scalars["mean_stretch_bohr"])
    text = subprocess.run([*CLI, "compute", str(STRUCTURES / "water_dimer.xyz"), "--model", str(toy_model)],
                          capture_output=True, text=True, env=plugin_env(), timeout=120)
    assert text.returncode == 0 and "toy harmonic water" in text.stdout and "SCF" not in text.stdout


def test_toy_engine_through_ipi_and_analyze(toy_model, tmp_path):
    """The real i-PI server, the deepks-es client processes, the extras and the analysis: unchanged code."""
    (tmp_path / "toy.xml").write_text(ipi_input("nvt_cluster.xml", 20, {
        "<trajectory filename='scf' stride='1' extra_type='scf_cycles'> extras </trajectory>":
        "<trajectory filename='stretch' stride='1' extra_type='mean_stretch_bohr'> extras </trajectory>"}))
    run = subprocess.run([*CLI, "run", str(tmp_path / "toy.xml"), "--run-dir", str(tmp_path / "run"), "--model",
                          str(toy_model)], capture_output=True, text=True, env=plugin_env(), timeout=300)
    assert run.returncode == 0, run.stderr + (tmp_path / "run" / "i-pi.log").read_text()
    stretch = np.loadtxt(tmp_path / "run" / "simulation.stretch_0", comments="#")
    assert len(stretch) == 21 and np.ptp(stretch) > 0
    analysis = subprocess.run([*CLI, "analyze", str(tmp_path / "run"), "--json"], capture_output=True, text=True,
                              env=plugin_env(), timeout=120)
    assert analysis.returncode == 0, analysis.stderr
    summary = json.loads(analysis.stdout)
    assert summary["steps_logged"] == 21 and summary["dos"]["elements"] == ["H", "O"]
    assert 7.0 < summary["levels_ev"]["gap"]["mean"] < 8.5  # the toy's made-up gap, 0.28 Ha, moved by stretches


def test_template_asking_for_extras_the_engine_lacks_is_a_clear_error(toy_model, tmp_path):
    """The NVT template logs scf_cycles, which the toy engine (no SCF) does not give: one line names it,
    instead of i-PI's KeyError and a hung run."""
    run = subprocess.run([*CLI, "run", str(INPUTS / "nvt_cluster.xml"), "--run-dir", str(tmp_path / "run"),
                          "--model", str(toy_model)], capture_output=True, text=True, env=plugin_env(), timeout=300)
    assert run.returncode != 0
    assert "logs extras scf_cycles, which toy harmonic water does not give" in run.stderr
    assert "Traceback" not in run.stderr


def test_toy_engine_through_ase(toy_model, box):
    engine = make_engine(str(toy_model))
    atoms = box.to_ase()
    atoms.calc = DeePKSCalculator(engine)
    assert "stress" in atoms.calc.implemented_properties
    stress = atoms.get_stress()
    assert np.abs(stress).max() > 0 and atoms.calc.results["mean_stretch_bohr"] is not None
    atoms.set_velocities(np.random.default_rng(0).normal(0, 0.01, atoms.positions.shape))
    energies = []
    md = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    md.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    md.run(40)
    assert np.ptp(energies) < 1e-3  # eV: velocity Verlet conserves the toy energy


def test_pyscf_engine_lists_no_stress(box):
    calc = DeePKSCalculator("none", ke_cutoff=TEST_KE_CUTOFF)
    assert "stress" not in calc.implemented_properties


@pytest.mark.parametrize("case", ["water_dimer/none", "water_dimer/default", "water_box_2/none",
                                  "water_box_2/default"])
def test_same_numbers_as_before_the_interface(case):
    """Energies and forces of the code before the Engine interface (commit 70cdae2; measured here: equal to 8e-14)."""
    reference = json.loads((REPO / "tests" / "data" / "engine_regression.json").read_text())["results"][case]
    name, model = case.split("/")
    result = make_engine(EngineSpec(model=model, ke_cutoff=TEST_KE_CUTOFF)).compute(
        read_structure(STRUCTURES / f"{name}.xyz"))
    assert result.energy == pytest.approx(reference["energy_hartree"], abs=1e-8)
    np.testing.assert_allclose(result.forces, reference["forces_hartree_per_bohr"], atol=1e-8)


def test_all_electron_model_file_keeps_its_settings(tmp_path):
    """A model trained without a pseudopotential runs without one when picked by its file."""
    from deepks_es.model import CorrectionModel

    path = tmp_path / "all_electron.pt"
    CorrectionModel.random(seed=3, basis="def2-svp", pseudo=None).save(path)
    engine = make_engine(EngineSpec(model=str(path)))
    assert engine.settings.pseudo is None and engine.settings.basis == "def2-svp"
    with pytest.raises(SettingsError, match="unknown engine option"):
        make_engine("none", grid_level=4)
