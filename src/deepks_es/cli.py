"""``deepks-es <verb>``: the command-line interface.

Exit codes: 0 success; 1 a user-facing error (one line on stderr); 2 bad command
line (argparse); 3 the SCF did not converge (result printed, flagged).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import __version__
from .constants import HARTREE_EV
from .errors import DeePKSError

EXIT_ERROR = 1
EXIT_UNCONVERGED = 3


def _add_calculation_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every verb that runs the engine."""
    parser.add_argument("--model", default="none",
                        help="model file PATH, 'default' (the shipped model) or 'none' (plain functional); "
                             "default: none")
    parser.add_argument("--xc", default=None,
                        help="functional, e.g. PBE or HSE06 (default: the model's base functional, else PBE)")
    parser.add_argument("--basis", default=None, help="AO basis (default: the model's, else gth-dzvp)")
    parser.add_argument("--pseudo", default=None,
                        help="pseudopotential, 'none' for all-electron clusters (default: the model's, else gth-pbe)")
    parser.add_argument("--charge", type=int, default=0, help="total charge (default: 0)")
    parser.add_argument("--conv-tol", type=float, default=1e-9, help="SCF energy tolerance in Hartree (default: 1e-9)")
    parser.add_argument("--max-cycle", type=int, default=50, help="SCF iterations per solver stage (default: 50)")
    parser.add_argument("--ke-cutoff", type=float, default=None,
                        help="periodic multigrid cutoff in Hartree (default: chosen by PySCF from the basis)")


def engine_from_args(args):
    """Build the engine that ``_add_calculation_options`` describes."""
    from .engines import make_engine

    settings = {"charge": args.charge, "conv_tol": args.conv_tol, "max_cycle": args.max_cycle,
                "ke_cutoff": args.ke_cutoff}
    if args.xc is not None:
        settings["xc"] = args.xc
    if args.basis is not None:
        settings["basis"] = args.basis
    if args.pseudo is not None:
        settings["pseudo"] = None if args.pseudo.lower() == "none" else args.pseudo
    return make_engine(args.model, **settings)


def cmd_compute(args) -> int:
    from .structure import read_structure

    structure = read_structure(args.structure, index=args.index)
    engine = engine_from_args(args)
    result = engine.compute(structure)
    if args.json:
        print(json.dumps({"structure": str(args.structure), "natoms": structure.natoms,
                          "xc": engine.settings.xc, "model": args.model, **result.to_json_dict()}))
    else:
        _print_summary(structure, engine, args.model, result)
    if not result.converged:
        print("deepks-es: warning: SCF did not converge; the result is flagged (converged: false)",
              file=sys.stderr)
        return EXIT_UNCONVERGED
    return 0


def _print_summary(structure, engine, model_name, result) -> None:
    def ev(x):
        return "n/a" if x is None else f"{x * HARTREE_EV:.4f} eV"

    lines = [
        f"structure      {structure.natoms} atoms, {'periodic' if structure.is_periodic else 'cluster'}",
        f"method         {engine.settings.xc}/{engine.settings.basis}, model: {model_name}",
        f"energy         {result.energy:.10f} Ha",
        f"E_delta        {'n/a' if result.e_delta is None else f'{result.e_delta:.10f} Ha'}",
        f"HOMO / LUMO    {ev(result.homo)} / {ev(result.lumo)}",
        f"gap            {ev(result.gap)}",
        f"SCF            {'converged' if result.converged else 'NOT converged'} in {result.scf_cycles} "
        f"cycles ({result.scf_stage}), {result.wall_s:.1f} s",
    ]
    if result.forces is not None:
        lines.append(f"max |force|    {np.abs(result.forces).max():.6f} Ha/Bohr")
    lines += [f"note           {note}" for note in result.notes]
    print("\n".join(lines))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepks-es", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepks-es {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    compute = verbs.add_parser("compute", help="single point: energy, forces and orbitals of a structure",
                               description="Self-consistent single point of one structure (XYZ/extended "
                                           "XYZ, Angstrom) with DeePKS-ES or a plain functional.")
    compute.add_argument("structure", help="structure file (extended XYZ; last frame unless --index)")
    compute.add_argument("--index", type=int, default=-1, help="frame of a multi-frame file (default: -1)")
    compute.add_argument("--json", action="store_true", help="print one JSON object (atomic units, eV)")
    _add_calculation_options(compute)
    compute.set_defaults(func=cmd_compute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DeePKSError as exc:
        print(f"deepks-es: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("deepks-es: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
