"""PySCF layer: systems, the DeePKS correction mixin, and a fall-back SCF driver."""

from .correction import Correction, DeePKSMixin, add_correction
from .solver import SCFOutcome, run_scf
from .systems import SCFSettings, build_system, make_rks

__all__ = ["Correction", "DeePKSMixin", "SCFOutcome", "SCFSettings", "add_correction", "build_system", "make_rks",
           "run_scf"]
