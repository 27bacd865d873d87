"""Where the time of one engine evaluation goes, from cProfile cumulative times.

A part is a tuple of stages, each a tuple of (file path suffix, function name) aliases. A stage's time is
the largest cumulative time among the functions its aliases match, so a method and the module function it
wraps (same name, nested) or alternative implementations count once; a part's time is the sum over its
stages, which run one after the other (the correction's set-up, then its SCF-cycle evaluations). The parts
are disjoint by construction; ``other`` is the rest of the evaluation (system set-up, Python glue).
``coulomb_exchange`` includes a density-fitting tensor built lazily on the first call (hybrids; PBE's
density-fitted J contracts the 3-index integrals directly) and ``xc`` the Coulomb term on a multigrid.
A surrogate step's parts are ``network`` (the members' energy, forces, virial and Hamiltonian), ``overlap``
(PySCF's analytic S) and ``levels`` (S^-1/2, the members' dense eigenproblems, Löwdin weights).
"""

from __future__ import annotations

import cProfile
import pstats

from ..engines.result import Result
from ..structure import Structure

PARTS = {
    "grids": ((("dft/gen_grid.py", "build"),),),
    "coulomb_exchange": ((("df_jk.py", "get_jk"),),),
    "xc": ((("numint.py", "nr_rks"), ("multigrid.py", "nr_rks"), ("multigrid_pair.py", "nr_rks")),),
    "diagonalisation": ((("scf/hf.py", "eig"),),),
    "correction": ((("deepks_es/scf/correction.py", "__init__"),),
                   (("deepks_es/scf/correction.py", "energy_potential"),)),
    "gradients": ((("deepks_es/engines/reference.py", "nuclear_gradient"),),),
    "correction_gradient": ((("deepks_es/scf/correction.py", "nuclear_gradient"),),),
    "network": ((("deepks_es/surrogate/committee.py", "predict"),),),
    "overlap": ((("deepks_es/scf/systems.py", "overlap_matrix"),),),
    "levels": ((("deepks_es/engines/surrogate.py", "member_levels"),),),
}


def part_times(stats: pstats.Stats) -> dict[str, float]:
    """Seconds per part of :data:`PARTS` (0 where none of its functions ran)."""
    def stage_time(aliases) -> float:
        return max((cumulative for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items()
                    if any(filename.endswith(suffix) and function == name for suffix, name in aliases)),
                   default=0.0)

    return {part: sum(stage_time(aliases) for aliases in stages) for part, stages in PARTS.items()}


def profiled_compute(engine, structure: Structure, **kwargs) -> tuple[Result, dict[str, float]]:
    """``engine.compute(structure, **kwargs)`` and its time per part (s), with ``total`` and ``other``.

    ``correction`` and ``correction_gradient`` are the DeePKS-ES correction's share (descriptors,
    network, V_delta; its explicit force term), ``gradients`` the base functional's analytic gradient.
    """
    profiler = cProfile.Profile()
    result = profiler.runcall(engine.compute, structure, **kwargs)
    times = part_times(pstats.Stats(profiler))
    times["total"] = result.wall_s
    times["other"] = max(0.0, result.wall_s - sum(v for k, v in times.items() if k != "total"))
    return result, times
