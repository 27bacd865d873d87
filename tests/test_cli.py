"""``deepks-es compute`` as a user runs it: a real subprocess, JSON out, one-line errors."""

import argparse
import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, STRUCTURES

KEYS = {"energy_hartree", "forces_hartree_per_bohr", "virial_hartree", "gap_ev", "homo_ev", "lumo_ev",
        "orbital_energies_ev", "converged", "scf_cycles", "wall_s"}


def deepks_es(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "deepks_es.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def pbe_json():
    run = deepks_es("compute", STRUCTURES / "water_dimer.xyz", "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_compute_json_keys(pbe_json):
    assert KEYS <= set(pbe_json)
    assert len(pbe_json["forces_hartree_per_bohr"]) == 6
    assert np.shape(pbe_json["virial_hartree"]) == (3, 3) and pbe_json["converged"] is True
    levels = pbe_json["orbital_energies_ev"]
    assert levels == sorted(levels) and len(levels) == 46
    assert pbe_json["gap_ev"] == pytest.approx(pbe_json["lumo_ev"] - pbe_json["homo_ev"])


def test_hse06_through_same_path(pbe_json):
    run = deepks_es("compute", STRUCTURES / "water_dimer.xyz", "--model", "none", "--xc", "HSE06", "--json")
    assert run.returncode == 0, run.stderr
    hse = json.loads(run.stdout)
    assert hse["engine"] == "HSE06" and hse["model"] == "none" and hse["converged"]
    assert hse["gap_ev"] > pbe_json["gap_ev"] + 1.0  # the hybrid opens the gap by ~2 eV


def test_model_file_from_cli(tmp_path, random_model):
    path = tmp_path / "random.pt"
    random_model.save(path)
    run = deepks_es("compute", STRUCTURES / "water_dimer.xyz", "--model", path, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["e_delta_hartree"] != 0.0


def _bad_inputs(tmp_path):
    unknown = tmp_path / "unknown.xyz"
    unknown.write_text("2\n\nO 0 0 0\nQq 0 0 1\n")
    malformed = tmp_path / "malformed.xyz"
    malformed.write_text("3\n\nO 0 0 0\nH 0 1\n")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    dimer = STRUCTURES / "water_dimer.xyz"
    return [
        (["compute", unknown], "Qq"),
        (["compute", malformed], "cannot read"),
        (["compute", dimer, "--model", tmp_path / "missing.pt"], "not found"),
        (["compute", dimer, "--model", corrupt], "corrupt"),
        (["compute", STRUCTURES / "water_box_2.xyz", "--pseudo", "none"], "pseudopotential"),
        (["compute", dimer, "--model", tmp_path], "is a directory"),
        (["compute", dimer, "--conv-tol", "-1"], "--conv-tol must be positive"),
        (["drive", "--inet", "localhost:port", "--structure", dimer], "port in 1-65535"),
        (["drive", "--inet", "localhost:99999", "--structure", dimer], "port in 1-65535"),
        (["drive", "--unix", "x", "--structure", dimer, "--dos-sigma", "0"], "positive broadening"),
        (["drive", "--unix", "no-server-here", "--structure", dimer, "--wait", "0"], "cannot connect"),
    ]


def _assert_one_line_error(status, stdout, stderr, message):
    assert status == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deepks-es: error:") and message in lines[0], stderr
    assert stdout == ""


def test_bad_input_one_line_error(tmp_path, capsys, monkeypatch):
    """Every bad input through ``main`` (in this process); the first also as the real command, whose stderr
    must hold nothing else (no traceback, no library chatter)."""
    from deepks_es.cli import main

    monkeypatch.chdir(REPO)
    cases = _bad_inputs(tmp_path)
    for args, message in cases:
        status = main(list(map(str, args)))
        _assert_one_line_error(status, *capsys.readouterr(), message)
    args, message = cases[0]
    run = deepks_es(*args)
    _assert_one_line_error(run.returncode, run.stdout, run.stderr, message)
    assert not (REPO / "dos_grid.json").exists()  # a client that never connected writes nothing


def test_unconverged_exit_code():
    run = deepks_es("compute", STRUCTURES / "water_dimer.xyz", "--max-cycle", "1", "--json")
    assert run.returncode == 3
    assert json.loads(run.stdout)["converged"] is False
    assert "did not converge" in run.stderr


def readme_command(pattern: str, section: str = "") -> list[str]:
    """The first README command line matching ``pattern`` (after any ``&&``) from the heading ``section`` on,
    comment stripped."""
    readme = (REPO / "README.md").read_text()
    readme = readme[readme.index(section):]
    line = re.search(rf"^(?:.*&& )?({pattern}[^\n#]*)", readme, re.MULTILINE).group(1)
    return shlex.split(line)


def test_readme_single_point_as_written():
    command = readme_command("deepks-es compute ", "## Single points")
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "converged" in run.stdout and "gap" in run.stdout


@pytest.mark.mainjob
def test_readme_main_job_as_written(tmp_path):
    """The README's first set-up command ends in the main job: run it as a new user (~8 min on 2 cores): 1 ps of 64
    waters with the surrogate, levels every 10th step, four validations against DeePKS-ES, the analysis with the
    RDF; nothing but the progress bar on stderr (no warning from the validation worker)."""
    command = readme_command("deepks-es run")
    assert command == ["deepks-es", "run"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    assert run.returncode == 0, run.stderr
    analysis = tmp_path / "runs" / "liquid-water" / "analysis"
    summary = json.loads((analysis / "summary.json").read_text())
    assert summary["steps_logged"] == 1001 and summary["steps_skipped"] == 200
    assert 0 < summary["levels_ev"]["gap"]["mean"] < 10 and summary["dos"]["elements"] == ["H", "O"]
    assert summary["rdf_OO"]["frames"] == 81 and 2.4 < summary["rdf_OO"]["first_peak_angstrom"] < 3.2
    assert summary["validation"]["comparisons"] >= 2
    assert summary["conserved"]["atoms"] == 192
    for name in ("gap_timeseries.png", "gap_histogram.png", "dos.png", "rdf_OO.png", "validation.png"):
        assert (analysis / name).stat().st_size > 10000
    levels = np.loadtxt(analysis / "levels.csv", delimiter=",", skiprows=1)
    assert levels.shape == (1001, 5) and np.isfinite(levels[::10, 2]).all() and np.isnan(levels[1::10, 2]).all()
    assert "gap" in run.stdout and "O-O RDF" in run.stdout and "MD" in run.stderr
    assert "Warning" not in run.stderr, run.stderr


def test_main_job_follows_the_model_kind_and_keeps_given_options():
    from deepks_es.ipi.mainjob import SCF_MAIN_JOB, SURROGATE_MAIN_JOB, main_job
    from deepks_es.monitoring import MonitorSettings

    assert main_job(None) is SURROGATE_MAIN_JOB and main_job("surrogate") is SURROGATE_MAIN_JOB
    assert main_job("default") is SCF_MAIN_JOB and main_job("none") is SCF_MAIN_JOB
    for job in (SURROGATE_MAIN_JOB, SCF_MAIN_JOB):
        assert job.input_path.is_file()
    options = SURROGATE_MAIN_JOB.engine_options({"model": None, "committee_every": 5, "threads": None})
    assert options == {"model": "surrogate", "committee_every": 5, "threads": None}
    scf = SCF_MAIN_JOB.engine_options({"model": "none", "conv_tol": 1e-9})
    assert scf["model"] == "none" and scf["conv_tol"] == 1e-9 and scf.get("conv_tol_grad") is None
    assert scf["ke_cutoff"] == SCF_MAIN_JOB.engine.ke_cutoff
    monitor = SURROGATE_MAIN_JOB.monitor_settings(MonitorSettings(observables_every=2))
    assert monitor.observables_every == 2 and monitor.validate_every == 250 and monitor.validate_cluster == 5
    assert SCF_MAIN_JOB.monitor_settings(MonitorSettings()) == MonitorSettings()


def test_help_for_every_verb(capsys):
    """``deepks-es --help`` as a command; each verb's help through ``main``."""
    from deepks_es.cli import VERBS, main

    run = deepks_es("--help")
    assert run.returncode == 0 and "usage: deepks-es" in run.stdout
    verbs = argparse.ArgumentParser().add_subparsers()  # the verbs' names, through argparse's public API
    for add_verb in VERBS:
        add_verb(verbs)
    assert len(verbs.choices) == len(VERBS)
    for verb in verbs.choices:
        with pytest.raises(SystemExit) as stop:
            main([verb, "--help"])
        assert stop.value.code == 0 and f"usage: deepks-es {verb}" in capsys.readouterr().out


@pytest.mark.slow  # an example script end to end (~30 s): the slow suite
def test_compare_functionals_example():
    run = subprocess.run([sys.executable, "examples/compare_functionals.py"], cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    rows = {line.split("  ")[0]: line.split() for line in run.stdout.splitlines()[1:]}
    assert set(rows) == {"PBE", "HSE06", "DeePKS-ES"}
    gap = {name: float(row[-3]) for name, row in rows.items()}
    assert gap["HSE06"] > gap["PBE"] + 1.0 and abs(gap["DeePKS-ES"] - gap["HSE06"]) < 0.2


@pytest.mark.slow  # an example script end to end (~30 s): the slow suite
def test_dos_comparison_example(tmp_path, random_model):
    """PBE, HSE06 and DeePKS-ES (a random model here) on the water dimer; periodic HSE06 is the slow
    ``test_periodic_hybrid_is_energy_only``."""
    random_model.save(tmp_path / "model.pt")
    run = subprocess.run([sys.executable, str(REPO / "examples" / "dos_comparison.py"), "--structure",
                          str(STRUCTURES / "water_dimer.xyz"), "--model",
                          str(tmp_path / "model.pt"), "--out", str(tmp_path / "dos.png")],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert [line.split()[0] for line in run.stdout.splitlines()[:3]] == ["PBE", "HSE06", "DeePKS-ES"]
    assert (tmp_path / "dos.png").stat().st_size > 10000
