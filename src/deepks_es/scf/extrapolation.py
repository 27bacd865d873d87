"""Density-matrix extrapolation across MD steps: the SCF of step t starts from a prediction, not from t-1.

:class:`DensityHistory` keeps the converged AO density matrices of the last steps of one trajectory (one
i-PI bead) and predicts the next as a linear combination D_p = sum_j c_j D(t-j), sum_j c_j = 1, with one of

- ``geometry[:N]`` (default, N = 8 stored steps): the c_j that best reproduce the *new* geometry from the
  stored ones, least squares sum_j c_j R(t-j) ~ R(t) (the Grassmann-extrapolation papers' choice of
  coefficients, Polack et al., JCTC 17, 6965 (2021), applied to the AO density matrix). The new positions
  are known before the SCF starts, so the prediction follows the actual step (its length and direction)
  instead of assuming a smooth polynomial in time;
- ``aspc[:K]``: Kolafa's always-stable predictor of order K (J. Comput. Chem. 25, 335 (2004)), K + 2 steps;
- ``previous``: the last converged density matrix.

The AO basis moves with the atoms, so the prediction is then made a valid density of the *new* geometry:
its ``nocc`` natural orbitals in the new overlap metric (largest eigenvalues of S D_p S c = n S c) get
occupation 2, everything else 0 — an idempotent, N-electron guess whatever the extrapolation error.

A history is restarted when a geometry jumps (an atom moves more than ``max_step`` Bohr, minimum image for
a cell: a new trajectory, a replica exchange) and a repeated geometry replaces its last entry instead of
adding a step.
"""

from __future__ import annotations

from collections import deque
from math import comb

import numpy as np
import scipy.linalg

from ..errors import SettingsError

DEFAULT_PREDICTOR = "geometry:8"
PREDICTORS = {"geometry": 8, "aspc": 3, "previous": None}  # name -> default argument
MAX_STEP = 0.5  # Bohr: larger single-step displacements restart the history
RIDGE = 1e-9  # relative Tikhonov weight of the geometry fit (keeps nearly collinear histories solvable)


def aspc_coefficients(order: int) -> np.ndarray:
    """Kolafa's B_j, j = 1..order+2 (sum to 1); order 0 is linear extrapolation (2, -1)."""
    k = order
    return np.array([(-1) ** (j + 1) * j * comb(2 * k + 4, k + 2 - j) / comb(2 * k + 2, k + 1)
                     for j in range(1, k + 3)])


def geometry_coefficients(history: np.ndarray, target: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """c (summing to 1) minimising |sum_j c_j x_j - x|^2 + ridge tr(G)/n |c|^2, G_ij = x_i.x_j.

    ``history`` (n, 3N) holds the stored geometries x_j (newest first) and ``target`` (3N,) the new one, all
    as displacements from one reference geometry (e.g. the newest stored, minimum image).
    """
    n = len(history)
    gram = history @ history.T
    gram += ridge * max(np.trace(gram), np.finfo(float).tiny) / n * np.eye(n)
    kkt = np.block([[gram, np.ones((n, 1))], [np.ones((1, n)), np.zeros((1, 1))]])
    rhs = np.append(history @ target, 1.0)
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:n]


def idempotent_projection(dm: np.ndarray, overlap: np.ndarray, nocc: int) -> np.ndarray:
    """The closed-shell density matrix (2 C C^T, C^T S C = 1) of the ``nocc`` natural orbitals of ``dm``."""
    sds = overlap @ dm @ overlap
    _, vectors = scipy.linalg.eigh(0.5 * (sds + sds.T), overlap)
    occupied = vectors[:, -nocc:]
    return 2.0 * occupied @ occupied.T


def parse_predictor(spec: str) -> tuple[str, int | None]:
    """``"geometry:8"`` -> ("geometry", 8); a bare name takes its default argument."""
    name, _, argument = str(spec).partition(":")
    if name not in PREDICTORS:
        raise SettingsError(f"unknown density predictor {spec!r}: use geometry[:N], aspc[:K] or previous")
    if name == "previous":
        if argument:
            raise SettingsError(f"density predictor 'previous' takes no argument, got {spec!r}")
        return name, None
    try:
        value = int(argument) if argument else PREDICTORS[name]
    except ValueError:
        raise SettingsError(f"density predictor {spec!r}: {argument!r} is not an integer") from None
    if value < (1 if name == "geometry" else 0):
        raise SettingsError(f"density predictor {spec!r}: geometry needs N >= 1 steps, aspc an order K >= 0")
    return name, value


class DensityHistory:
    """Converged density matrices of one trajectory and the extrapolated guess for its next step.

    Args:
        predictor: ``geometry[:N]``, ``aspc[:K]`` or ``previous`` (module docstring).
        max_step: largest single-atom displacement (Bohr) still treated as the next step of the trajectory.
    """

    def __init__(self, predictor: str = DEFAULT_PREDICTOR, max_step: float = MAX_STEP):
        self.method, self.argument = parse_predictor(predictor)
        depth = {"geometry": self.argument, "aspc": (self.argument or 0) + 2, "previous": 1}[self.method]
        self.max_step = max_step
        self._steps: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=depth)  # (positions, dm)

    def __len__(self) -> int:
        return len(self._steps)

    def _from_last(self, positions: np.ndarray, structure) -> np.ndarray:
        """Displacement (Bohr) of ``positions`` from the newest stored step, minimum image in ``structure``'s cell."""
        return structure.minimum_image(positions - self._steps[-1][0])

    def _step_length(self, structure) -> float:
        """Largest Cartesian component (Bohr) of any atom's displacement from the newest stored step."""
        return float(np.abs(self._from_last(structure.positions, structure)).max())

    def _continues(self, structure) -> bool:
        return bool(self._steps) and self._steps[-1][0].shape == structure.positions.shape \
            and self._step_length(structure) <= self.max_step

    def coefficients(self, structure) -> np.ndarray:
        """c_j of the stored steps, newest first, for predicting ``structure``."""
        depth = len(self._steps)
        if self.method == "previous" or depth == 1:
            return np.ones(1)
        if self.method == "aspc":
            return aspc_coefficients(depth - 2)
        history = np.array([self._from_last(positions, structure).ravel()
                            for positions, _ in reversed(self._steps)])
        return geometry_coefficients(history, self._from_last(structure.positions, structure).ravel())

    def predict(self, structure, overlap: np.ndarray, nocc: int) -> np.ndarray | None:
        """Initial density matrix for ``structure`` (overlap ``overlap``), or None without a usable history."""
        if not self._continues(structure) or self._steps[-1][1].shape != overlap.shape:
            return None
        if self._step_length(structure) == 0.0:
            return self._steps[-1][1]
        guess = sum(c * dm for c, (_, dm) in zip(self.coefficients(structure), reversed(self._steps)))
        return idempotent_projection(guess, overlap, nocc)

    def clear(self) -> None:
        """Forget the trajectory (e.g. after an unconverged step)."""
        self._steps.clear()

    def push(self, structure, dm: np.ndarray) -> None:
        """Record the converged ``dm`` of ``structure`` (restarting the history after a jump)."""
        if not self._continues(structure):
            self._steps.clear()
        elif self._step_length(structure) == 0.0:
            self._steps.pop()
        self._steps.append((np.array(structure.positions), np.asarray(dm)))
