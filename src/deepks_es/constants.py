"""Physical constants and unit conversions (CODATA 2018).

Everything inside deepks-es is in atomic units (Bohr, Hartree, Hartree/Bohr);
convert only at the edges with these factors.
"""

BOHR_ANGSTROM = 0.529177210903
"""One Bohr in Angstrom."""

ANGSTROM_BOHR = 1.0 / BOHR_ANGSTROM
"""One Angstrom in Bohr."""

HARTREE_EV = 27.211386245988
"""One Hartree in eV."""

FORCE_EV_ANGSTROM = HARTREE_EV / BOHR_ANGSTROM
"""One Hartree/Bohr in eV/Angstrom."""

HARTREE_KCAL_MOL = 627.5094740631
"""One Hartree in kcal/mol (CODATA 2018, thermochemical calorie)."""

AVOGADRO = 6.02214076e23
"""Avogadro's number, per mol (exact, SI 2019)."""
