import json

import numpy as np
import pytest

from deepks_es.engines import make_engine
from deepks_es.errors import SettingsError
from deepks_es.observables import DOSGrid


@pytest.fixture(scope="module")
def result(dimer):
    return make_engine("none").compute(dimer)


def test_element_weights_partition_each_orbital(result):
    assert set(result.element_weights) == {"H", "O"}
    total = result.element_weights["H"] + result.element_weights["O"]
    np.testing.assert_allclose(total, 1.0, atol=1e-10)
    assert np.all(result.element_weights["O"] >= 0)
    assert result.element_weights["O"][0] > 0.5  # the lowest level is oxygen 2s-like


def test_dos_normalisation_and_projection(result):
    wide = DOSGrid(emin_ev=-60, emax_ev=float(result.mo_energy.max() * 27.2114 + 5), npoints=40001, sigma_ev=0.2)
    energies = wide.energies_ev
    assert np.trapezoid(wide.dos(result.mo_energy), energies) == pytest.approx(2 * len(result.mo_energy), rel=1e-6)
    projected = sum(wide.dos(result.mo_energy, w) for w in result.element_weights.values())
    np.testing.assert_allclose(projected, wide.dos(result.mo_energy), atol=1e-9)


def test_extras_keys_and_json(result):
    extras = result.observables(DOSGrid())
    assert list(extras) == ["energy_hartree", "gap_ev", "homo_ev", "lumo_ev", "dos", "virial_available", "trusted",
                            "scf_converged", "scf_cycles", "scf_stage", "wall_s", "dos_H", "dos_O"]
    assert len(extras["dos"]) == len(extras["dos_O"]) == DOSGrid().npoints
    assert json.loads(json.dumps(extras))["gap_ev"] == pytest.approx(result.gap * 27.211386245988)


def test_bad_grid_rejected():
    with pytest.raises(SettingsError, match="emax > emin"):
        DOSGrid(emin_ev=5, emax_ev=-5)
