"""Density-matrix extrapolation across MD steps and the benchmark suite built on it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import CLI, pyscf_engine
from deepks_es.engines import make_engine
from deepks_es.errors import SettingsError
from deepks_es.scf.extrapolation import (DensityHistory, aspc_coefficients, geometry_coefficients,
                                         idempotent_projection, parse_predictor)
from deepks_es.scf.solver import run_scf
from deepks_es.structure import Structure


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
def test_aspc_coefficients_reproduce_linear_trends(order):
    b = aspc_coefficients(order)
    j = np.arange(1, order + 3)
    assert b.sum() == pytest.approx(1.0)
    assert (j * b).sum() == pytest.approx(0.0, abs=1e-12)  # D(t) = a + c t is predicted exactly
    if order == 0:
        np.testing.assert_allclose(b, [2.0, -1.0])


def test_geometry_fit_is_exact_inside_the_span_of_the_history():
    rng = np.random.default_rng(1)
    history = rng.normal(size=(6, 12))
    weights = np.array([0.7, 0.6, -0.5, 0.4, -0.3, 0.1])  # sum 1: an affine combination
    target = weights @ history
    c = geometry_coefficients(history - history[0], target - history[0])
    assert c.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(c @ history, target, atol=1e-6)
    outside = geometry_coefficients(history[:2] - history[0], 3.0 * history[1] - 2.0 * history[0] - history[0])
    np.testing.assert_allclose(outside, [-2.0, 3.0], atol=1e-6)  # two points: linear extrapolation of the step


def test_geometry_predictor_follows_densities_linear_in_the_positions(dimer):
    """D(R) = M + L(R): the geometry fit predicts D exactly for any new R in the span of the stored ones."""
    rng = np.random.default_rng(2)
    nao, ncoord = 4, dimer.positions.size
    base, slope = rng.normal(size=(nao, nao)), rng.normal(size=(ncoord, nao, nao)) * 0.1

    def density(structure):
        return base + np.tensordot(structure.positions.ravel() - dimer.positions.ravel(), slope, axes=1)

    steps = [dimer.with_positions(dimer.positions + rng.normal(scale=0.02, size=dimer.positions.shape))
             for _ in range(3)]
    history = DensityHistory("geometry:3")
    for step in steps:
        history.push(step, density(step))
    new = dimer.with_positions(1.5 * steps[2].positions - 0.2 * steps[1].positions - 0.3 * steps[0].positions)
    c = history.coefficients(new)
    guess = sum(cj * density(s) for cj, s in zip(c, reversed(steps)))
    np.testing.assert_allclose(guess, density(new), atol=1e-8)


@pytest.mark.parametrize("spec, message", [("quadratic", "unknown density predictor"), ("aspc:x", "not an integer"),
                                           ("geometry:0", "N >= 1"), ("previous:2", "takes no argument")])
def test_bad_predictor_specs_are_rejected(spec, message):
    with pytest.raises(SettingsError, match=message):
        parse_predictor(spec)
    with pytest.raises(SettingsError, match=message):
        make_engine("none", extrapolation=spec)


def _trajectory(dimer, steps):
    """A smooth dimer trajectory: each atom on its own slow oscillation (Bohr)."""
    rng = np.random.default_rng(3)
    amplitude, frequency = rng.normal(scale=0.05, size=(2, *dimer.positions.shape))
    return [dimer.with_positions(dimer.positions + amplitude * np.sin(0.3 * frequency * t)) for t in range(steps)]


def test_projection_gives_an_idempotent_density_of_the_new_geometry(dimer):
    result = make_engine("none").compute(dimer)
    moved = dimer.with_positions(dimer.positions + np.random.default_rng(0).normal(scale=0.05, size=(6, 3)))
    mf = make_engine("none").make_scf(moved)
    overlap, nocc = mf.get_ovlp(), mf.mol.nelectron // 2
    guess = idempotent_projection(1.3 * result.scf.density_matrix, overlap, nocc)  # wrong metric, wrong norm
    np.testing.assert_allclose(guess @ overlap @ guess, 2.0 * guess, atol=1e-10)
    assert np.trace(guess @ overlap) == pytest.approx(2 * nocc)
    own = make_engine("none").make_scf(dimer).get_ovlp()
    np.testing.assert_allclose(idempotent_projection(result.scf.density_matrix, own, nocc), result.scf.density_matrix,
                               atol=1e-6)  # a converged density is its own projection (to SCF accuracy)


def _run(engine, trajectory):
    return [engine.compute(structure) for structure in trajectory]


@pytest.mark.slow
def test_extrapolation_saves_cycles_and_changes_no_result(dimer, random_model):
    trajectory = _trajectory(dimer, 8)
    previous, aspc, geometry = (_run(pyscf_engine(random_model, extrapolation=spec), trajectory)
                                for spec in ("previous", "aspc:3", "geometry:6"))
    cold = [pyscf_engine(random_model).compute(s) for s in trajectory[-2:]]
    for extrapolated in (aspc, geometry):
        for result, reference in zip(extrapolated[-2:], cold):
            assert result.energy == pytest.approx(reference.energy, abs=1e-8)
            np.testing.assert_allclose(result.forces, reference.forces, atol=2e-5)
    later = slice(5, None)  # once the histories are full
    assert sum(r.scf.cycles for r in geometry[later]) < sum(r.scf.cycles for r in previous[later])
    assert sum(r.scf.cycles for r in aspc[later]) < sum(r.scf.cycles for r in previous[later])


def test_warm_start_schedule_leaves_the_scf_object_as_it_was(dimer):
    converged = make_engine("none").compute(dimer).scf.density_matrix
    mf = make_engine("none").make_scf(dimer)
    outcome = run_scf(mf, converged)
    assert outcome.converged and outcome.cycles <= 2
    assert "get_fock" not in vars(mf) and mf.diis_start_cycle == 1 and mf.conv_check


def test_orbital_gradient_tolerance_is_met_without_the_closing_check(dimer, random_model):
    """A warm start skips PySCF's closing diagonalisation: the converged density is the one whose orbital
    gradient met conv_tol_grad, and its force error shrinks with that tolerance."""
    start = pyscf_engine(random_model, conv_tol=1e-11).compute(dimer).scf.density_matrix
    shift = np.zeros((dimer.natoms, 3))
    shift[0, 0] = 0.05  # Bohr
    moved = dimer.with_positions(dimer.positions + shift)
    tight = pyscf_engine(random_model, conv_tol=1e-11).compute(moved).forces
    errors = []
    for grad_tol in (3e-3, 1e-5):
        engine = pyscf_engine(random_model, conv_tol=1e-3, conv_tol_grad=grad_tol)
        mf = engine.make_scf(moved)
        assert run_scf(mf, start).converged and mf.conv_check
        fock = mf.get_fock(dm=mf.make_rdm1())
        assert np.linalg.norm(mf.get_grad(mf.mo_coeff, mf.mo_occ, fock)) < grad_tol
        errors.append(np.abs(-engine.nuclear_gradient(mf) - tight).max())
    assert errors[1] < errors[0] / 10


def test_history_restarts_after_a_jump_and_skips_repeats():
    cell = np.eye(3) * 10.0
    start = Structure(("O", "H", "H"), [[0.1, 0, 0], [1.8, 0, 0], [-0.4, 1.7, 0]], cell)
    dm, overlap = np.eye(4), np.eye(4)
    history = DensityHistory("aspc:2")
    history.push(start, dm)
    history.push(start, 2 * dm)  # the same geometry again: replaces, no new step
    assert len(history) == 1
    np.testing.assert_array_equal(history.predict(start, overlap, 1), 2 * dm)
    wrapped = start.with_positions(start.positions - [[10.0, 0, 0], [0, 0, 0], [0, 0, 0]] + 0.01)
    history.push(wrapped, dm)  # an atom re-entering through the cell face is not a jump
    assert len(history) == 2
    far = start.with_positions(start.positions + 1.0)
    assert history.predict(far, overlap, 1) is None
    history.push(far, dm)
    assert len(history) == 1


def test_profile_adds_the_correction_set_up_to_its_scf_evaluations(dimer, random_model):
    import cProfile
    import pstats

    from deepks_es.bench.profile import part_times
    from deepks_es.scf.correction import Correction
    from deepks_es.scf.systems import SCFSettings, build_system

    system = build_system(dimer, SCFSettings())
    dm = np.eye(system.nao)

    def set_up_and_evaluate():
        correction = Correction(random_model, system)
        for _ in range(3):
            correction.energy_potential(dm)

    profiler = cProfile.Profile()
    profiler.runcall(set_up_and_evaluate)
    stats = pstats.Stats(profiler)
    cumulative = {name: entry[3] for (path, _, name), entry in stats.stats.items() if path.endswith("correction.py")}
    assert min(cumulative["__init__"], cumulative["energy_potential"]) > 0
    assert part_times(stats)["correction"] == pytest.approx(cumulative["__init__"] + cumulative["energy_potential"])


@pytest.mark.slow
def test_bench_cli_tiny_run_and_resume(tmp_path, random_model):
    model = tmp_path / "model.pt"
    random_model.save(model)
    out = tmp_path / "bench"
    argv = [*CLI, "bench", "--model", str(model), "--clusters", "1", "--boxes", "none", "--methods", "PBE,DeePKS-ES",
            "--md-molecules", "1", "--md-steps", "4", "--check-every", "2", "--tolerances", "1e-6", "-o", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "bench.json").read_text())
    assert {r["name"] for r in data["results"]} == {"single/PBE/cluster/1", "single/DeePKS-ES/cluster/1",
                                                    "md/cluster/1", "tolerance/cluster/1"}
    deepks = next(r for r in data["results"] if r["name"] == "single/DeePKS-ES/cluster/1")
    assert deepks["converged"] and deepks["parts_s"]["correction"] > 0 and deepks["peak_rss_mib"] > 50
    assert sum(v for k, v in deepks["parts_s"].items() if k != "total") == pytest.approx(deepks["wall_s"], rel=0.05)
    md = next(r for r in data["results"] if r["kind"] == "md")
    assert len(md["steps"]) == 4 and [c["step"] for c in md["checks"]] == [2, 4]
    assert max(c["force_error_mev_a"] for c in md["checks"]) < 1.0
    assert "| cluster 1 |" in done.stdout and "DeePKS-ES / PBE" in done.stdout

    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)  # resume: nothing left to do
    assert again.returncode == 0 and "..." not in again.stderr
    changed = subprocess.run([*argv, "--conv-tol", "1e-8"], capture_output=True, text=True, timeout=120)
    assert changed.returncode == 1 and "other settings" in changed.stderr


def test_bench_resumes_a_file_written_before_a_setting_existed_and_names_a_changed_one(tmp_path):
    """A bench.json from before a plan setting existed resumes (the setting had its default then); a changed
    setting is refused with its name."""
    from dataclasses import asdict

    from deepks_es.bench.suite import BenchPlan, run_bench
    from deepks_es.errors import SettingsError

    plan = BenchPlan(model="default", clusters=(), boxes=(), md_steps=0, tolerances=())
    old = {k: v for k, v in asdict(plan).items() if k != "committee_every"}
    (tmp_path / "bench.json").write_text(json.dumps({"plan": old, "machine": {}, "results": []}))
    assert run_bench(plan, tmp_path, log=lambda _: None)["results"] == []
    with pytest.raises(SettingsError, match=r"other settings \(conv_tol\)"):
        run_bench(BenchPlan(model="default", clusters=(), boxes=(), md_steps=0, tolerances=(), conv_tol=1e-8),
                  tmp_path, log=lambda _: None)


KILLED_PARENT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from deepks_es.parallel import die_with_parent

def report_pid():
    return os.getpid()

if __name__ == "__main__":
    pool = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=die_with_parent,
                               initargs=(os.getpid(),))
    print(pool.submit(report_pid).result(), flush=True)
    pool.submit(time.sleep, 600)
    time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_measuring_process_dies_with_a_killed_bench(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(KILLED_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the measuring process outlived the killed bench process")
