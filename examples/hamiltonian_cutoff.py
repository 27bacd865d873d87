"""How far the Kohn-Sham matrix must reach: the HOMO, LUMO and gap of labelled boxes when every block between
two atoms farther apart than a cutoff is zeroed, against the full label (eV). The floor that a Hamiltonian
model with that pair cutoff cannot beat (the surrogate's ``hamiltonian_cutoff``, README, surrogate round 6).

    python examples/hamiltonian_cutoff.py DATA.h5 [--cutoffs 8 9 10 11]

Distances are minimum-image ones, so the cutoffs must stay below half the cell's shortest width (one image
of each pair within reach): the script refuses longer ones. Clusters are taken as they are (no images).
"""

import argparse
import json

import numpy as np
import scipy.linalg

from deepks_es.constants import HARTREE_EV
from deepks_es.linalg import ao_atoms
from deepks_es.rdf import largest_radius
from deepks_es.scf.systems import SCFSettings, build_system
from deepks_es.structure import Structure
from deepks_es.training.dataset import read_dataset


def pair_distances(structure: Structure) -> np.ndarray:
    """(N, N) minimum-image distances (Bohr); plain distances without a cell."""
    positions = np.asarray(structure.positions)
    return np.linalg.norm(structure.minimum_image(positions[:, None] - positions[None]), axis=-1)


def frontier(fock: np.ndarray, overlap: np.ndarray, nocc: int) -> np.ndarray:
    """HOMO, LUMO and gap (eV) of the generalised eigenproblem."""
    levels = scipy.linalg.eigh(fock, overlap, eigvals_only=True, subset_by_index=(nocc - 1, nocc)) * HARTREE_EV
    return np.array([levels[0], levels[1], levels[1] - levels[0]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="labelled HDF5 file (deepks-es label)")
    parser.add_argument("--cutoffs", type=float, nargs="+", default=[8.0, 9.0, 10.0, 11.0], help="Bohr")
    args = parser.parse_args()
    raw, attrs = read_dataset(args.data)
    base = json.loads(attrs["settings"])["base"]
    settings = SCFSettings(basis=base["basis"], pseudo=base["pseudo"])
    shifts = {cutoff: [] for cutoff in args.cutoffs}
    for frame in raw:
        record, structure = frame.target, frame.structure
        if not record.get("converged", True):
            continue
        cell = None if structure.cell is None else np.asarray(structure.cell)
        if cell is not None and max(args.cutoffs) >= largest_radius(cell):
            parser.error(f"{frame.name}: a cutoff of {max(args.cutoffs):g} Bohr reaches beyond half the cell's "
                         f"width ({largest_radius(cell):.2f} Bohr)")
        atom = ao_atoms(build_system(structure, settings))
        distance = pair_distances(structure)[atom][:, atom]
        fock, overlap, nocc = record["fock"], record["overlap"], int(record["nocc"])
        full = frontier(fock, overlap, nocc)
        for cutoff in args.cutoffs:
            shifts[cutoff].append(frontier(np.where(distance <= cutoff, fock, 0.0), overlap, nocc) - full)
    print(f"{args.data}: {len(shifts[args.cutoffs[0]])} frames; label with blocks beyond the cutoff zeroed "
          "minus the full label, mean (largest |.|), eV")
    for cutoff, rows in shifts.items():
        rows = np.array(rows)
        print(f"  {cutoff:5.1f} Bohr: " + ", ".join(
            f"{name} {rows[:, k].mean():+.3f} ({np.abs(rows[:, k]).max():.3f})"
            for k, name in enumerate(("HOMO", "LUMO", "gap"))))


if __name__ == "__main__":
    main()
