"""Shared fixtures: shipped structures, test models and small helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepks_es.model import CorrectionModel
from deepks_es.structure import read_structure

REPO = Path(__file__).resolve().parents[1]
STRUCTURES = REPO / "inputs" / "structures"
TEST_KE_CUTOFF = 60.0  # Hartree: a coarse periodic mesh keeps the box tests fast; FD consistency holds at any cutoff


@pytest.fixture(scope="session")
def dimer():
    return read_structure(STRUCTURES / "water_dimer.xyz")


@pytest.fixture(scope="session")
def tetramer():
    return read_structure(STRUCTURES / "water_tetramer.xyz")


@pytest.fixture(scope="session")
def box():
    return read_structure(STRUCTURES / "water_box_2.xyz")


@pytest.fixture(scope="session")
def random_model():
    return CorrectionModel.random(seed=1, scale=0.05)


def central_difference(energy, structure, atom, axis, step=1e-3):
    """-(E(x+h) - E(x-h)) / 2h for one Cartesian component (Hartree/Bohr)."""
    values = []
    for sign in (1, -1):
        positions = np.array(structure.positions)
        positions[atom, axis] += sign * step
        values.append(energy(structure.with_positions(positions)))
    return -(values[0] - values[1]) / (2 * step)
