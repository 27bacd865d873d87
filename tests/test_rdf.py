"""The O-O radial distribution function of ``deepks-es analyze``, and sampling configurations from a run."""

import numpy as np
import pytest
from ase import Atoms

from deepks_es.rdf import RDFError, largest_radius, radial_distribution


def test_ideal_gas_is_one_and_a_cubic_lattice_has_six_neighbours():
    rng = np.random.default_rng(0)
    gas = [Atoms("O" * 400, positions=rng.uniform(0, 16.0, (400, 3)), cell=[16.0] * 3, pbc=True) for _ in range(4)]
    rdf = radial_distribution(gas, bins=32)
    assert rdf.frames == 4 and rdf.r[-1] < 8.0
    assert np.abs(rdf.g[8:] - 1).mean() < 0.05  # shells beyond 2 Å hold enough pairs for a 5 % check
    a, n = 2.5, 5  # simple cubic lattice, 125 atoms: 6 neighbours at a
    grid = np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    lattice = Atoms("O" * n ** 3, positions=grid, cell=[n * a] * 3, pbc=True)
    rdf = radial_distribution([lattice], rmax=3.0, bins=60)
    peak, _ = rdf.first_peak()
    assert peak == pytest.approx(a, abs=0.05)
    half = 0.5 * (rdf.r[1] - rdf.r[0])
    volumes = 4 / 3 * np.pi * ((rdf.r + half) ** 3 - (rdf.r - half) ** 3)  # g = counts / (ideal density x shell)
    shell = rdf.r < 0.5 * (a + a * np.sqrt(2))
    neighbours = (volumes * rdf.g)[shell].sum() * (n ** 3 - 1) / lattice.get_volume()
    assert neighbours == pytest.approx(6.0, abs=1e-9)


def test_largest_radius_is_half_the_smallest_width():
    assert largest_radius(np.diag([10.0, 12.0, 14.0])) == pytest.approx(5.0)
    skewed = np.array([[10.0, 0, 0], [5.0, 10.0, 0], [0, 0, 30.0]])  # width along y: 10, not |b| = 11.2
    assert largest_radius(skewed) == pytest.approx(10.0 / np.sqrt(1.25) / 2)


def test_rdf_refuses_clusters_and_missing_elements():
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    with pytest.raises(RDFError, match="periodic"):
        radial_distribution([water])
    water.cell, water.pbc = [8.0] * 3, True
    with pytest.raises(RDFError, match="no N-O pairs"):
        radial_distribution([water], pair=("N", "O"))
    with pytest.raises(RDFError, match="no frames"):
        radial_distribution([])
