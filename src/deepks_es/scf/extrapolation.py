"""Density-matrix extrapolation across MD steps: the SCF of step t starts from a prediction, not from t-1.

:class:`DensityHistory` keeps the converged AO density matrices of the last ``order + 2`` steps of one
trajectory (one i-PI bead) and predicts the next with Kolafa's always-stable predictor coefficients
(J. Comput. Chem. 25, 335 (2004)): D_p = sum_j B_j D(t-j). The AO basis moves with the atoms, so the
prediction is then made a valid density of the *new* geometry: its ``nocc`` natural orbitals in the new
overlap metric (largest eigenvalues of S D_p S c = n S c) get occupation 2, everything else 0 — an
idempotent, N-electron guess whatever the extrapolation error.

The prediction assumes equally spaced, consecutive steps. A history is restarted when a geometry jumps
(an atom moves more than ``max_step`` Bohr, minimum image for a cell: a new trajectory, a replica
exchange) and a repeated geometry replaces its last entry instead of adding a step.
"""

from __future__ import annotations

from collections import deque
from math import comb

import numpy as np
import scipy.linalg

from ..errors import SettingsError

DEFAULT_ORDER = 3
MAX_STEP = 0.5  # Bohr: larger single-step displacements restart the history


def aspc_coefficients(order: int) -> np.ndarray:
    """Kolafa's B_j, j = 1..order+2 (sum to 1); order 0 is linear extrapolation (2, -1)."""
    k = order
    return np.array([(-1) ** (j + 1) * j * comb(2 * k + 4, k + 2 - j) / comb(2 * k + 2, k + 1)
                     for j in range(1, k + 3)])


def idempotent_projection(dm: np.ndarray, overlap: np.ndarray, nocc: int) -> np.ndarray:
    """The closed-shell density matrix (2 C C^T, C^T S C = 1) of the ``nocc`` natural orbitals of ``dm``."""
    sds = overlap @ dm @ overlap
    _, vectors = scipy.linalg.eigh(0.5 * (sds + sds.T), overlap)
    occupied = vectors[:, -nocc:]
    return 2.0 * occupied @ occupied.T


class DensityHistory:
    """Converged density matrices of one trajectory and the extrapolated guess for its next step.

    Args:
        order: predictor order k (k + 2 stored steps); 0 is linear, -1 keeps only the last step
            (plain reuse of the previous density matrix).
        max_step: largest single-atom displacement (Bohr) still treated as the next step of the trajectory.
    """

    def __init__(self, order: int = DEFAULT_ORDER, max_step: float = MAX_STEP):
        if order < -1:
            raise SettingsError(f"extrapolation order must be >= -1, got {order}")
        self.order = order
        self.max_step = max_step
        self._steps: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=order + 2)  # (positions, dm)

    def __len__(self) -> int:
        return len(self._steps)

    def _displacement(self, structure) -> float:
        delta = structure.positions - self._steps[-1][0]
        if structure.cell is not None:
            fractional = delta @ np.linalg.inv(structure.cell)
            delta = (fractional - np.round(fractional)) @ structure.cell
        return float(np.abs(delta).max())

    def _continues(self, structure) -> bool:
        return bool(self._steps) and self._steps[-1][0].shape == structure.positions.shape \
            and self._displacement(structure) <= self.max_step

    def predict(self, structure, overlap: np.ndarray, nocc: int) -> np.ndarray | None:
        """Initial density matrix for ``structure`` (overlap ``overlap``), or None without a usable history."""
        if not self._continues(structure):
            return None
        last = self._steps[-1][1]
        if last.shape != overlap.shape:
            return None
        if self._displacement(structure) == 0.0:
            return last
        depth = len(self._steps)
        if depth < 2:
            return last
        coefficients = aspc_coefficients(depth - 2)
        guess = sum(b * dm for b, (_, dm) in zip(coefficients, reversed(self._steps)))
        return idempotent_projection(guess, overlap, nocc)

    def clear(self) -> None:
        """Forget the trajectory (e.g. after an unconverged step)."""
        self._steps.clear()

    def push(self, structure, dm: np.ndarray) -> None:
        """Record the converged ``dm`` of ``structure`` (restarting the history after a jump)."""
        if not self._continues(structure):
            self._steps.clear()
        elif self._displacement(structure) == 0.0:
            self._steps.pop()
        self._steps.append((np.array(structure.positions), np.asarray(dm)))
