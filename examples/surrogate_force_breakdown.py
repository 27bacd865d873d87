"""Where a surrogate's force error sits in liquid water: intramolecular (O-H stretch and H-O-H bend) or
intermolecular (each water's net force and torque), against the DeePKS-ES labels of ``label --distill``.
Member 0 of the committee stands for the surrogate.

Per water (atoms as consecutive O, H, H), the 9 force-error components split into the 6 rigid-body modes
(translations, rotations about the molecule's centroid) and the 3 internal ones; the two parts' RMS per
component add in quadrature to the total RMSE. The O-H stretch part is the error of each bond's relative force
along the bond. The model's physical baseline alone (q-SPC/Fw) is shown beside the surrogate. With ``--refit
TRAIN.h5 ...`` also the ``qspcfw-refit`` baseline fitted to TRAIN as a training would fit it
(:func:`~deepks_es.training.surrogate.fit_intramolecular`: polynomials of degree 1-4 in each O-H length and in the
H-O-H angle plus the stretch-stretch and stretch-bend couplings, least squares against the labels' forces minus
q-SPC/Fw's), then applied to DATA.

    python examples/surrogate_force_breakdown.py MODEL DATA.h5 [DATA.h5 ...] [--refit TRAIN.h5 ...]
"""

import argparse
from dataclasses import replace

import numpy as np
import torch

from deepks_es.constants import BOHR_ANGSTROM, HARTREE_EV
from deepks_es.engines.registry import resolve_model
from deepks_es.errors import StructureError
from deepks_es.structure import Structure
from deepks_es.surrogate.committee import Committee
from deepks_es.surrogate.network import SurrogateModel
from deepks_es.training.surrogate import baseline_labels, fit_intramolecular, load_frames

EV_PER_ANGSTROM = HARTREE_EV / BOHR_ANGSTROM


def rigid_basis(water: np.ndarray) -> np.ndarray:
    """(9, 6) orthonormal basis of one water's rigid-body displacements (3 translations, 3 rotations)."""
    arm = water - water.mean(0)
    modes = [np.tile(np.eye(3)[k], 3) for k in range(3)] + [np.cross(np.eye(3)[k], arm).reshape(-1) for k in range(3)]
    q, _ = np.linalg.qr(np.array(modes).T)
    return q


def split(errors: np.ndarray, waters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-water rigid and internal parts of (nmol, 3, 3) force ``errors``, and the (2 nmol,) O-H stretch parts."""
    rigid, internal, stretch = [], [], []
    for error, water in zip(errors, waters):
        basis = rigid_basis(water)
        flat = error.reshape(-1)
        part = basis @ (basis.T @ flat)
        rigid.append(part)
        internal.append(flat - part)
        for h in (1, 2):
            bond = (water[h] - water[0]) / np.linalg.norm(water[h] - water[0])
            stretch.append(0.5 * (error[h] - error[0]) @ bond)
    return np.array(rigid), np.array(internal), np.array(stretch)


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def fitted_refit(committee: Committee, paths) -> SurrogateModel:
    """A model of ``committee``'s settings with the ``qspcfw-refit`` baseline, its coefficients fitted to ``paths``."""
    refit = SurrogateModel(replace(committee.settings, baseline="qspcfw-refit")).double()
    fit_intramolecular(refit, load_frames(paths, refit, torch.float64))
    return refit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="surrogate model file or 'surrogate'")
    parser.add_argument("data", nargs="+", help="label --distill datasets")
    parser.add_argument("--refit", nargs="+", metavar="TRAIN.h5", default=None,
                        help="also show the baseline with its intramolecular terms refitted on these datasets")
    args = parser.parse_args()
    committee = Committee.from_file(resolve_model(args.model))
    member = committee.members[0]
    refit = None if args.refit is None else fitted_refit(committee, args.refit)
    parts = {"surrogate": [], "baseline": [], "baseline + refit": []}
    for frame in load_frames(args.data, member, torch.float64):
        structure = Structure(tuple(member.settings.elements[i] for i in frame.species.tolist()),
                              frame.positions.numpy(), None if frame.cell is None else frame.cell.numpy())
        try:
            waters = structure.whole_waters()
        except StructureError as exc:
            raise SystemExit(f"{frame.name}: {exc}") from None
        reference = frame.forces.double().numpy()
        predicted = {"surrogate": committee.predict(structure, hamiltonian=False).forces[0],
                     "baseline": baseline_labels(member, frame)[1].numpy()}
        if refit is not None:
            predicted["baseline + refit"] = baseline_labels(refit, frame)[1].numpy()
        for name, forces in predicted.items():
            parts[name].append(split(((forces - reference) * EV_PER_ANGSTROM).reshape(-1, 3, 3), waters))
    print(f"{len(parts['surrogate'])} frames; force error RMS per component (eV/A):")
    for name, pieces in parts.items():
        if not pieces:
            continue
        rigid, internal, stretch = (np.concatenate([f[k] for f in pieces]) for k in range(3))
        print(f"  {name:16s} total {np.hypot(rms(rigid), rms(internal)):.3f} = rigid-body "
              f"{rms(rigid):.3f} (+) internal {rms(internal):.3f}; O-H stretch {rms(stretch):.3f}")


if __name__ == "__main__":
    main()
