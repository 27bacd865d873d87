"""DeePKSEngine: self-consistent base functional + DeePKS-ES correction (PySCF + PyTorch)."""

from __future__ import annotations

from dataclasses import replace
from typing import Hashable

import numpy as np

from ..errors import SettingsError
from ..model.modelfile import ModelFile
from ..model.network import CorrectionModel
from ..scf.correction import add_correction
from ..scf.extrapolation import DEFAULT_PREDICTOR
from ..scf.systems import SCFSettings
from ..structure import Structure
from .base import EngineInfo
from .reference import ReferenceEngine, scf_settings
from .result import Result
from .spec import EngineSpec


E_DELTA_LIMIT = 0.05  # Hartree per atom: |E_delta| beyond this is far outside any trained range (~1 mHa/atom)


class DeePKSEngine(ReferenceEngine):
    """:class:`ReferenceEngine` with V_delta in the Fock matrix and E_delta in the energy.

    ``settings`` default to the model's base functional, basis and pseudopotential; a
    mismatch between the two is a :class:`SettingsError`.
    """

    kind = "deepks"

    def __init__(self, model: CorrectionModel, settings: SCFSettings | None = None,
                 extrapolation: str = DEFAULT_PREDICTOR, model_name: str = "in memory"):
        settings = settings or SCFSettings(xc=model.base_xc, basis=model.basis, pseudo=model.pseudo)
        for what, ours, theirs in (("functional", settings.xc, model.base_xc),
                                   ("basis", settings.basis, model.basis),
                                   ("pseudopotential", settings.pseudo, model.pseudo)):
            if str(ours).lower() != str(theirs).lower():
                raise SettingsError(f"model was trained on {what} {theirs!r} but the run uses {ours!r}: "
                                    f"run with the model's {what} or use --model none")
        super().__init__(settings, extrapolation)
        self.model = model
        self.model_name = model_name

    @classmethod
    def from_spec(cls, spec: EngineSpec, model_file: ModelFile | None = None) -> DeePKSEngine:
        """Registry factory: the correction model in ``model_file`` with the settings of ``spec``."""
        model = CorrectionModel.from_file(model_file)
        settings = scf_settings(spec, xc=model.base_xc, basis=model.basis, pseudo=model.pseudo or "none")
        return cls(model, settings, spec.extrapolation or DEFAULT_PREDICTOR, str(model_file.path))

    def describe(self) -> EngineInfo:
        return replace(super().describe(), name="DeePKS-ES", model=self.model_name)

    def make_scf(self, structure: Structure):
        return add_correction(super().make_scf(structure), self.model)

    def compute(self, structure: Structure, key: Hashable = None, observables: bool = True,
                dm0: np.ndarray | None = None) -> Result:
        """:meth:`ReferenceEngine.compute`, flagged where |E_delta| per atom exceeds :data:`E_DELTA_LIMIT`."""
        result = super().compute(structure, key, dm0=dm0)
        per_atom = abs(result.scalars["e_delta_hartree"]) / structure.natoms
        if not per_atom <= E_DELTA_LIMIT:
            result.flag(f"the correction is {per_atom:.3g} Ha per atom, far outside the model's range "
                        f"(> {E_DELTA_LIMIT} Ha/atom; ~0.001 for water): a corrupt model or a geometry unlike its "
                        "training data")
        return result

    def nuclear_gradient(self, mf) -> np.ndarray:
        return super().nuclear_gradient(mf) + mf.nuc_grad_delta()

    def scalars(self, mf, dm) -> dict:
        return {"e_delta_hartree": mf.correction.energy_potential(dm)[0]}
