"""``deepks-es analyze`` on real runs of the driver: one bead, several beads, a bare i-PI prefix."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from deepks_es.analysis import AnalysisError, analyze, block_standard_error

from conftest import CLI, deepks_es_run, ipi_input


def test_block_standard_error_iid_and_correlated():
    rng = np.random.default_rng(0)
    iid = rng.standard_normal(4096)
    assert block_standard_error(iid) == pytest.approx(1 / 64, rel=0.25)
    correlated = np.zeros(4096)
    for i in range(1, 4096):  # AR(1), phi = 0.9: true error ~ sqrt(19) times the naive one
        correlated[i] = 0.9 * correlated[i - 1] + rng.standard_normal()
    naive = correlated.std(ddof=1) / 64
    assert block_standard_error(correlated) > 2.5 * naive


def assert_plot_has_data(path):
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    ink = (image[..., :3].mean(axis=-1) < 0.9).mean()
    assert 0.01 < ink < 0.6  # axes, labels and curves, not an empty canvas


def test_analyze_single_bead_run(nvt_cluster_run, tmp_path):
    summary = analyze(nvt_cluster_run, tmp_path / "out")
    assert summary["beads"] == 1 and summary["steps_logged"] == 5
    gap = summary["levels_ev"]["gap"]
    assert 3 < gap["mean"] < 10 and gap["block_error"] >= 0 and gap["min"] <= gap["mean"] <= gap["max"]
    assert summary["dos"]["elements"] == ["H", "O"]
    rows = np.loadtxt(nvt_cluster_run / "simulation.out", ndmin=2)  # step, time/ps, conserved/eV, ...
    conserved = summary["conserved"]
    assert conserved["atoms"] == 6 and conserved["span_ps"] == pytest.approx(rows[-1, 1] - rows[0, 1])
    drift = np.polyfit(rows[:, 1], rows[:, 2], 1)[0]
    assert conserved["drift_ev_per_ps"] == pytest.approx(drift, rel=1e-4, abs=1e-9)
    assert conserved["drift_mev_per_atom_per_ps"] == pytest.approx(drift / 6 * 1e3, rel=1e-4, abs=1e-9)
    for name in ("gap_timeseries", "gap_histogram", "dos", "conserved"):
        assert_plot_has_data(summary["files"][name])
    levels = np.loadtxt(summary["files"]["levels_csv"], delimiter=",", skiprows=1)
    assert levels.shape == (5, 5) and np.allclose(levels[:, 2].mean(), gap["mean"])
    dos = np.loadtxt(summary["files"]["dos_csv"], delimiter=",", skiprows=1)
    np.testing.assert_allclose(dos[:, 3] + dos[:, 4], dos[:, 1], atol=1e-4)  # H + O = total
    assert np.all(dos[:, 2] == 0)  # one bead: no spread
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_analyze_pimd_run_from_bare_prefix(pimd_run, tmp_path):
    """Outputs alone (no input.xml): the prefix finds the four beads' files."""
    for path in pimd_run.iterdir():
        if path.name.startswith("simulation.") or path.name == "dos_grid.json":
            shutil.copy(path, tmp_path)
    summary = analyze(tmp_path / "simulation", skip=1)
    assert summary["beads"] == 4 and summary["steps_skipped"] == 1
    assert summary["scf"]["mean_cycles"] < 9
    dos = np.loadtxt(summary["files"]["dos_csv"], delimiter=",", skiprows=1)
    assert dos[:, 2].max() > 0  # the beads differ: a real spread
    assert_plot_has_data(summary["files"]["dos"])


def test_analyze_cli(pimd_run, tmp_path):
    run = subprocess.run([*CLI, "analyze", str(pimd_run), "--out", str(tmp_path), "--json"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["beads"] == 4
    empty = subprocess.run([*CLI, "analyze", str(tmp_path / "nothing")], capture_output=True, text=True,
                           timeout=300)
    assert empty.returncode == 1 and empty.stderr.startswith("deepks-es: error:")
    assert len(empty.stderr.strip().splitlines()) == 1


def test_density_of_a_constant_pressure_run(tmp_path):
    """The density section: the atoms' mass over i-PI's logged volume, from step ``skip`` on."""
    from deepks_es.analysis import RunFiles, _density_summary, _properties
    from deepks_es.ipi.outputs import OutputNames

    volumes = np.array([1000.0, 1100.0, 1200.0, 1300.0, 1400.0])  # Angstrom^3
    header = ["# column   1     --> step : The current simulation time step.",
              "# column   2     --> time{picosecond} : The elapsed simulation time.",
              "# column   3     --> volume{angstrom3} : The volume of the cell box."]
    rows = [f"{i:8d} {i * 5e-4:12.6e} {v:12.6e}" for i, v in enumerate(volumes)]
    (tmp_path / "simulation.out").write_text("\n".join(header + rows) + "\n")
    frame = ["6", "# CELL(abcABC):  18.89726  18.89726  18.89726  90.00000  90.00000  90.00000  Step:           0  "
             "Bead:       0 positions{angstrom}  cell{atomic_unit}"]
    frame += [f"{s:>8s} {0.1 * i:15.8e} {0.0:15.8e} {0.0:15.8e}" for i, s in enumerate("OHHOHH")]
    (tmp_path / "simulation.pos_0.xyz").write_text("\n".join(frame) + "\n")
    files = RunFiles(tmp_path, OutputNames(positions="pos"))
    density = _density_summary(_properties(files), files, skip=2)
    grams = 2 * 18.015 / 6.02214076e23
    expected = grams / (volumes[2:] * 1e-24)
    assert density["steps"] == 3
    np.testing.assert_allclose(density["g_per_cm3"], expected, rtol=1e-4)
    assert density["mean_g_per_cm3"] == pytest.approx(expected.mean(), rel=1e-4)
    assert _density_summary(({"time": [0.0]}, {"time": ("picosecond",)}), files, 0) is None  # no volume logged


def test_analyze_rejects_too_much_skipping(nvt_cluster_run, tmp_path):
    with pytest.raises(AnalysisError, match="nothing left"):
        analyze(nvt_cluster_run, tmp_path, skip=10)


def test_run_without_gap_extras_is_not_analysed(tmp_path):
    text = re.sub(r"\s*<trajectory [^>]*> extras </trajectory>", "", ipi_input("nvt_cluster.xml", 1))
    (tmp_path / "plain.xml").write_text(text)
    run = deepks_es_run(tmp_path / "plain.xml", tmp_path)
    assert run.returncode == 0, run.stderr
    assert len((tmp_path / "simulation.out").read_text().splitlines()) > 1
    assert not (tmp_path / "analysis").exists()
