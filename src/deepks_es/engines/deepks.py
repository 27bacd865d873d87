"""DeePKSEngine: self-consistent base functional + DeePKS-ES correction (PySCF + PyTorch)."""

from __future__ import annotations

import numpy as np

from ..errors import SettingsError
from ..model.network import CorrectionModel
from ..scf.correction import add_correction
from ..scf.extrapolation import DEFAULT_PREDICTOR
from ..scf.systems import SCFSettings
from ..structure import Structure
from .reference import ReferenceEngine


class DeePKSEngine(ReferenceEngine):
    """:class:`ReferenceEngine` with V_delta in the Fock matrix and E_delta in the energy.

    ``settings`` default to the model's base functional, basis and pseudopotential; a
    mismatch between the two is a :class:`SettingsError`.
    """

    def __init__(self, model: CorrectionModel, settings: SCFSettings | None = None,
                 extrapolation: str = DEFAULT_PREDICTOR):
        settings = settings or SCFSettings(xc=model.base_xc, basis=model.basis, pseudo=model.pseudo)
        for what, ours, theirs in (("functional", settings.xc, model.base_xc),
                                   ("basis", settings.basis, model.basis),
                                   ("pseudopotential", settings.pseudo, model.pseudo)):
            if str(ours).lower() != str(theirs).lower():
                raise SettingsError(f"model was trained on {what} {theirs!r} but the run uses {ours!r}: "
                                    f"run with the model's {what} or use --model none")
        super().__init__(settings, extrapolation)
        self.model = model

    def make_scf(self, structure: Structure):
        return add_correction(super().make_scf(structure), self.model)

    def nuclear_gradient(self, mf) -> np.ndarray:
        return super().nuclear_gradient(mf) + mf.nuc_grad_delta()

    def correction_energy(self, mf, dm) -> float:
        return mf.correction.energy_potential(dm)[0]
