"""Every use of PySCF internals, behind small functions: a PySCF upgrade touches this file only.

Known to work with PySCF 2.8 to 2.14; the tests that exercise each function (projector overlaps,
multigrid forces, the warm-start schedule, the tagged veff) fail loudly if a release changes what
they rely on.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np


def is_cell(system) -> bool:
    """Whether ``system`` is a periodic ``pbc.gto.Cell`` (else a molecular ``Mole``)."""
    from pyscf.pbc import gto as pbc_gto

    return isinstance(system, pbc_gto.Cell)


def uses_multigrid(mf) -> bool:
    """Whether a Kohn-Sham object integrates XC and Coulomb with ``MultiGridNumInt2`` (private ``_numint``):
    the one periodic route with analytic gradients, and one the second-order solver cannot run."""
    from pyscf.pbc.dft.multigrid import MultiGridNumInt2

    return isinstance(getattr(mf, "_numint", None), MultiGridNumInt2)


def intor_cross(system):
    """Cross-integral function ``f(intor, a, b, comp=None)`` for a Mole (open) or a Cell (image-summed, Γ).

    For a Cell it is PySCF's neighbour-list screened lattice sum (private ``_intor_cross_screened``, what
    ``Cell.pbc_intor`` uses with ``use_loose_rcut``): the same integrals as ``pbc.gto.intor_cross`` to ~1e-13,
    3-5x faster for the dense AO x projector blocks of a liquid box.
    """
    if is_cell(system):
        from pyscf.pbc.gto.cell import _intor_cross_screened

        def cell_cross(intor, a, b, comp=None):
            return np.asarray(_intor_cross_screened(intor, a, b, comp=comp)).real

        return cell_cross
    from pyscf.gto import intor_cross as mole_cross

    return mole_cross


@contextmanager
def replaced_fock(mf, make_fock):
    """Within the block ``mf.get_fock`` is ``make_fock(plain, h1e, s1e, vhf, dm, cycle, diis, fock_last)``.

    Relies on PySCF's SCF loop passing ``cycle`` and ``fock_last`` (keyword) to ``get_fock``.
    """
    plain = mf.get_fock

    def get_fock(h1e=None, s1e=None, vhf=None, dm=None, cycle=-1, diis=None, *args, fock_last=None, **kwargs):
        return make_fock(plain, h1e, s1e, vhf, dm, cycle, diis, fock_last, *args, **kwargs)

    mf.get_fock = get_fock
    try:
        yield mf
    finally:
        del mf.get_fock


def add_to_veff(veff, potential: np.ndarray, **tags):
    """``veff + potential`` keeping PySCF's tags on veff (``ecoul``, ``exc``, ``vj``, ...) plus ``tags``."""
    from pyscf import lib

    return lib.tag_array(np.asarray(veff) + potential, **{**getattr(veff, "__dict__", {}), **tags})
