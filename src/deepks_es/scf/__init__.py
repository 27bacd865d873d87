"""PySCF layer: systems, the DeePKS correction mixin, and a fall-back SCF driver."""

from .correction import Correction, DeePKSMixin, add_correction
from .solver import SCFOutcome, run_scf
from .systems import SCFSettings, build_system, make_rks

__all__ = ["Correction", "DeePKSMixin", "add_correction", "SCFOutcome", "run_scf", "SCFSettings",
           "build_system", "make_rks"]
