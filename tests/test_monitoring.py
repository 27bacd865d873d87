"""What a client logs besides energy and forces: orbital observables every k-th step (nulls between), on-the-fly
validation against a reference engine in a worker process, water clusters cut from a box, and their analysis."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from deepks_es.analysis import ValidationLimits, analyze
from deepks_es.engines import EngineSpec
from deepks_es.engines.result import Result
from deepks_es.errors import SettingsError, StructureError
from deepks_es.monitoring import VALIDATION_KEYS, MonitorSettings, Validator, deviations
from deepks_es.observables import DOSGrid
from deepks_es.observables_log import ObservablesLog
from deepks_es.parallel import compute_threads, set_threads
from deepks_es.structure import Structure, read_structure

from conftest import STRUCTURES


def test_water_cluster_is_whole_and_ignores_how_atoms_were_wrapped():
    liquid = read_structure(STRUCTURES / "water_liquid_64.xyz")
    cluster = liquid.water_cluster(5, 12)
    assert cluster.cell is None and cluster.natoms == 36
    water = cluster.positions.reshape(-1, 3, 3)
    assert np.all(np.linalg.norm(water[:, 1:] - water[:, :1], axis=2) < 2.3)  # every O-H bond whole (Bohr)
    np.testing.assert_allclose(water[0, 0], 0.0, atol=1e-12)  # centred on the chosen water's O
    distances = np.linalg.norm(water[:, 0], axis=1)
    assert np.all(np.diff(distances) >= 0) and distances[-1] < 0.5 * liquid.cell[0, 0]
    fractional = liquid.positions @ np.linalg.inv(liquid.cell)
    wrapped = liquid.with_positions((fractional % 1.0) @ liquid.cell)  # every atom into the cell, as LAMMPS does
    np.testing.assert_allclose(wrapped.water_cluster(5, 12).positions, cluster.positions, atol=1e-9)
    with pytest.raises(StructureError, match="consecutive O, H, H"):
        Structure(("H", "O", "H"), liquid.positions[:3]).water_cluster(0, 1)


def test_observables_without_orbitals_keep_every_key_and_are_null():
    result = Result(energy=-1.0, forces=np.zeros((3, 3)), virial=None, mo_energy=np.array([-0.5, 0.1]),
                    mo_occ=np.array([2.0, 0.0]), element_weights={"H": np.array([0.2, 0.6]), "O": np.array([0.8, 0.4])})
    full, skipped = result.observables(DOSGrid()), result.observables(DOSGrid(), orbitals=False)
    assert set(full) == set(skipped)
    assert all(skipped[key] is None for key in ("gap_ev", "homo_ev", "lumo_ev"))
    assert all(skipped[key] == [None] * DOSGrid().npoints for key in ("dos", "dos_H", "dos_O"))
    assert skipped["energy_hartree"] == full["energy_hartree"] and full["gap_ev"] == pytest.approx(0.6 * 27.211386, 1e-6)
    empty = Result(energy=-1.0, forces=None, virial=None, mo_energy=np.empty(0), mo_occ=np.empty(0))
    assert not empty.has_orbitals and empty.homo is None and empty.gap is None
    assert empty.observables(DOSGrid())["dos"][0] is None


def test_monitor_settings_refuse_nonsense_and_round_trip_the_command_line():
    with pytest.raises(SettingsError, match="observables-every must be at least 1"):
        MonitorSettings(observables_every=0)
    with pytest.raises(SettingsError, match="validate-every must be 0 or more"):
        MonitorSettings(validate_every=-1)
    settings = MonitorSettings(observables_every=5, validate_every=20, reference="none", validate_cluster=8, seed=3)
    argv = settings.argv()
    options = {flag.lstrip("-").replace("-", "_"): value for flag, value in zip(argv[::2], argv[1::2])}
    options = {k: (v if k == "validate_model" else int(v)) for k, v in options.items()}
    assert MonitorSettings.from_options(options) == settings


def test_deviations_are_candidate_minus_reference_per_atom():
    def result(energy, force, homo):
        return Result(energy=energy, forces=np.full((3, 3), force), virial=None, mo_energy=np.array([homo, 0.1]),
                      mo_occ=np.array([2.0, 0.0]))

    record = deviations(result(-10.0, 0.01, -0.3), result(-10.003, 0.0, -0.31), step=40, natoms=3)
    assert set(record) == set(VALIDATION_KEYS) and record["validation_step"] == 40
    assert record["validation_energy_mev_per_atom"] == pytest.approx(0.001 * 27211.386, 1e-6)
    assert record["validation_force_rmse_ev_per_angstrom"] == pytest.approx(0.01 * 51.42208, 1e-5)
    assert record["validation_homo_ev"] == pytest.approx(0.01 * 27.211386, 1e-6)
    assert record["validation_gap_ev"] == pytest.approx(-0.01 * 27.211386, 1e-6)


def test_validator_compares_in_a_worker_without_blocking(dimer):
    """The MD goes on while the worker compares, one comparison at a time, ceding the worker's thread."""
    md_threads = compute_threads()
    set_threads(3)
    validator = Validator(MonitorSettings(validate_every=2, reference="none", validate_cluster=1),
                          EngineSpec(model="surrogate"), log=lambda message: None)
    try:
        assert validator.extras() == dict.fromkeys(VALIDATION_KEYS)  # nulls before the first comparison
        assert not validator.offer(1, dimer)  # not due
        started = time.perf_counter()
        assert validator.offer(2, dimer)
        assert time.perf_counter() - started < 5
        assert compute_threads() == 2  # the worker's one thread ceded
        assert not validator.offer(4, dimer)
        deadline = time.monotonic() + 240
        while validator.done == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
            validator.collect()
        extras = validator.extras()
        assert extras["validation_step"] == 2 and extras["validation_atoms"] == 3  # one water cut from the dimer
        assert extras["validation_reference_trusted"] and extras["validation_force_rmse_ev_per_angstrom"] > 0
        assert compute_threads() == 3  # taken back
    finally:
        validator.close()
        set_threads(md_threads)


def test_analysis_reads_null_steps_and_the_validation(tmp_path):
    grid = DOSGrid(npoints=11)
    log = ObservablesLog(tmp_path / "md", grid)
    for step in range(6):
        observed = step % 2 == 0
        extras = {"gap_ev": 6.0 + 0.1 * step if observed else None, "dos": [1.0 if observed else None] * 11,
                  "dos_O": [0.7 if observed else None] * 11,
                  **dict.fromkeys(VALIDATION_KEYS)}
        if step >= 2:  # the comparison of step 0 arrives at step 2 and repeats; that of step 4 at step 5
            first = step < 5
            extras.update(validation_step=0 if first else 4, validation_atoms=3,
                          validation_energy_mev_per_atom=2.0 if first else 30.0,
                          validation_force_rmse_ev_per_angstrom=0.1, validation_gap_ev=-0.05,
                          validation_homo_ev=0.2, validation_lumo_ev=0.15, validation_reference_trusted=True)
        log.write(step, step * 0.0005, -1.0, extras)
    log.close()
    with warnings.catch_warnings():  # a gap-only run: no HOMO/LUMO to name in the level plot's legend
        warnings.simplefilter("error", UserWarning)
        summary = analyze(tmp_path / "md", tmp_path / "analysis", limits=ValidationLimits(10.0, 0.2, 0.5))
    assert summary["levels_ev"]["gap"]["mean"] == pytest.approx(6.2)  # the three observed steps
    assert summary["dos"]["elements"] == ["O"]
    dos = np.loadtxt(tmp_path / "analysis" / "dos.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(dos[:, 1], 1.0)
    validation = summary["validation"]
    assert validation["comparisons"] == 2 and validation["md_steps"] == [0, 4]
    energy = validation["quantities"]["validation_energy_mev_per_atom"]
    assert energy["values"] == [2.0, 30.0] and energy["max_abs"] == 30.0
    assert energy["mean_abs"] == pytest.approx(16.0) and energy["rms"] == pytest.approx(np.sqrt((4 + 900) / 2))
    assert len(validation["warnings"]) == 1 and "energy" in validation["warnings"][0]
    assert (tmp_path / "analysis" / "validation.png").is_file()
