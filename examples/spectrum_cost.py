"""What the levels and DOS of a large box cost, dense against sparse, with the shipped surrogate's Hamiltonian.

    python examples/spectrum_cost.py [--molecules 256] [--model surrogate]

On a replica of the shipped 64-water box (see ``deepks-es bench --scaling``): the dense generalised
eigensolver (what the engine does), the spectral range of (H, S) (what a Chebyshev / kernel-polynomial DOS
has to cover), the overlap's condition number and sparsity (what every application of S^-1 costs), the
fill-in of its sparse LU, and shift-invert Lanczos for HOMO and LUMO (``scipy.sparse.linalg.eigsh`` with
``M=S`` and ``sigma`` at mid-gap) against the dense levels. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg

from deepks_es.bench.suite import replicated_box
from deepks_es.constants import HARTREE_EV
from deepks_es.engines import make_engine
from deepks_es.scf.systems import build_system, overlap_matrix

KPM_RESOLUTION = 0.2  # eV: the DOS broadening of the logged observables


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=256, help="box size, 64 x 2^k waters (default: 256)")
    parser.add_argument("--model", default="surrogate", help="surrogate model (default: the shipped one)")
    args = parser.parse_args()
    box = replicated_box(args.molecules)
    engine = make_engine(args.model)
    prediction, predict_s = timed(engine.predict, box)
    system = build_system(box, engine.settings)
    overlap, overlap_s = timed(overlap_matrix, system)
    hamiltonian = prediction.hamiltonians.mean(axis=0)
    levels, dense_s = timed(scipy.linalg.eigh, hamiltonian, overlap, eigvals_only=True)
    nocc = system.nelectron // 2
    s_levels = np.linalg.eigvalsh(overlap)
    h_sparse = sparse.csr_matrix(hamiltonian)  # exactly zero beyond the Hamiltonian cutoff
    s_sparse = sparse.csc_matrix(np.where(np.abs(overlap) > 1e-7, overlap, 0.0))
    lu, lu_s = timed(sparse_linalg.splu, s_sparse)
    sigma = 0.5 * (levels[nocc - 1] + levels[nocc])
    nearest, shift_invert_s = timed(sparse_linalg.eigsh, h_sparse, k=4, M=s_sparse, sigma=sigma, which="LM",
                                    return_eigenvectors=False)  # the 4 levels nearest mid-gap: HOMO, LUMO among them
    width_ev = (levels[-1] - levels[0]) * HARTREE_EV
    print(json.dumps({
        "molecules": args.molecules, "nao": len(levels), "surrogate_predict_s": predict_s,
        "overlap_s": overlap_s, "dense_eigh_s": dense_s,
        "spectrum_ev": [levels[0] * HARTREE_EV, levels[-1] * HARTREE_EV],
        "chebyshev_moments_for_resolution": int(np.ceil(np.pi * 0.5 * width_ev / KPM_RESOLUTION)),
        "overlap_condition": float(s_levels[-1] / s_levels[0]),
        "hamiltonian_fill": h_sparse.nnz / hamiltonian.size, "overlap_fill_1e-7": s_sparse.nnz / overlap.size,
        "overlap_lu_s": lu_s, "overlap_lu_fill_factor": (lu.L.nnz + lu.U.nnz) / s_sparse.nnz,
        "shift_invert_s": shift_invert_s,
        "shift_invert_homo_lumo_error_hartree": max(float(np.abs(nearest - level).min())
                                                    for level in levels[nocc - 1:nocc + 1]),
    }, indent=1))


if __name__ == "__main__":
    main()
