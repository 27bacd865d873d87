"""Density-matrix extrapolation across MD steps and the benchmark suite built on it."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import CLI
from deepks_es.engines import make_engine
from deepks_es.errors import SettingsError
from deepks_es.scf.extrapolation import DensityHistory, aspc_coefficients, idempotent_projection
from deepks_es.structure import Structure


@pytest.mark.parametrize("order", [0, 1, 2, 3, 4])
def test_aspc_coefficients_reproduce_linear_trends(order):
    b = aspc_coefficients(order)
    j = np.arange(1, order + 3)
    assert b.sum() == pytest.approx(1.0)
    assert (j * b).sum() == pytest.approx(0.0, abs=1e-12)  # D(t) = a + c t is predicted exactly
    if order == 0:
        np.testing.assert_allclose(b, [2.0, -1.0])


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
    guess = idempotent_projection(1.3 * result.density_matrix, overlap, nocc)  # wrong metric, wrong norm
    np.testing.assert_allclose(guess @ overlap @ guess, 2.0 * guess, atol=1e-10)
    assert np.trace(guess @ overlap) == pytest.approx(2 * nocc)
    own = make_engine("none").make_scf(dimer).get_ovlp()
    np.testing.assert_allclose(idempotent_projection(result.density_matrix, own, nocc), result.density_matrix,
                               atol=1e-6)  # a converged density is its own projection (to SCF accuracy)


def _run(engine, trajectory):
    return [engine.compute(structure) for structure in trajectory]


def test_extrapolation_saves_cycles_and_changes_no_result(dimer, random_model):
    trajectory = _trajectory(dimer, 8)
    previous, extrapolated = (_run(make_engine(random_model, extrapolation=order), trajectory) for order in (-1, 3))
    cold = [make_engine(random_model).compute(s) for s in trajectory[-2:]]
    for result, reference in zip(extrapolated[-2:], cold):
        assert result.energy == pytest.approx(reference.energy, abs=1e-8)
        np.testing.assert_allclose(result.forces, reference.forces, atol=2e-5)
    later = slice(4, None)  # once the history is full
    assert sum(r.scf_cycles for r in extrapolated[later]) < sum(r.scf_cycles for r in previous[later])


def test_history_restarts_after_a_jump_and_skips_repeats():
    cell = np.eye(3) * 10.0
    start = Structure(("O", "H", "H"), [[0.1, 0, 0], [1.8, 0, 0], [-0.4, 1.7, 0]], cell)
    dm, overlap = np.eye(4), np.eye(4)
    history = DensityHistory(order=2)
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
    with pytest.raises(SettingsError, match="order must be >= -1"):
        DensityHistory(order=-2)


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
