"""``deepks-es <verb>``: the command-line interface. It parses, builds typed settings and calls the library.

Exit codes: 0 success; 1 a user-facing error (one line on stderr); 2 bad command
line (argparse); 3 the result is flagged: the SCF did not converge, or it is not to be
trusted (printed with ``trusted: false`` and the reason).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__
from .engines.spec import EngineSpec, add_engine_options
from .errors import DeePKSError, SettingsError, engine_failure
from .fileio import DOS_GRID_FILE
from .ipi.client import SOCKET_PREFIX
from .ipi.mainjob import MAIN_JOB_RUN_DIR, SCF_MAIN_JOB, SURROGATE_MAIN_JOB, main_job
from .monitoring import MonitorSettings
from .observables import DOSGrid
from .scf.extrapolation import DEFAULT_PREDICTOR
from .scf.systems import PERIODIC_KE_CUTOFF

EXIT_ERROR = 1
EXIT_UNCONVERGED = 3

DOS_OPTIONS = (  # (flag, DOSGrid field, type, help)
    ("--dos-emin", "emin_ev", float, "DOS grid start, eV"),
    ("--dos-emax", "emax_ev", float, "DOS grid end, eV"),
    ("--dos-points", "npoints", int, "DOS grid points"),
    ("--dos-sigma", "sigma_ev", float, "Gaussian broadening, eV"),
)


def _add_dos_options(parser: argparse.ArgumentParser) -> None:
    for flag, name, kind, text in DOS_OPTIONS:
        default = getattr(DOSGrid, name)
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default})")


def _add_monitor_options(parser: argparse.ArgumentParser) -> None:
    defaults = MonitorSettings()
    parser.add_argument("--observables-every", type=int, default=defaults.observables_every, metavar="K",
                        help="levels and DOS of every K-th step of each bead, null in between, where the surrogate "
                             "skips its Hamiltonian (default: 1)")
    parser.add_argument("--validate-every", type=int, default=defaults.validate_every, metavar="N",
                        help="every N-th step of bead 0, compare the engine with --validate-model in a worker "
                             "process (validation_* extras; default: 0, never)")
    parser.add_argument("--validate-model", default=defaults.reference,
                        help="reference of the validation: a model name or file, none for PBE (default: default, "
                             "the shipped DeePKS-ES)")
    parser.add_argument("--validate-cluster", type=int, default=defaults.validate_cluster, metavar="K",
                        help="validate on a cluster of K waters cut around a random water (default: 0, the whole "
                             "structure)")
    parser.add_argument("--validate-threads", type=int, default=defaults.validate_threads,
                        help="compute threads of the validation worker (default: 1)")
    parser.add_argument("--validate-seed", type=int, default=defaults.seed,
                        help="seed of the choice of the central water (default: 0)")


def _monitor(args) -> MonitorSettings:
    return MonitorSettings.from_options(vars(args))


def _grid(args) -> DOSGrid:
    return DOSGrid(**{name: getattr(args, flag.lstrip("-").replace("-", "_")) for flag, name, _, _ in DOS_OPTIONS})


def _engine_spec(args) -> EngineSpec:
    return EngineSpec.from_options(vars(args))


def cmd_compute(args) -> int:
    from .engines import make_engine
    from .structure import read_structure

    structure = read_structure(args.structure, index=args.index)
    engine = make_engine(_engine_spec(args))
    try:
        result = engine.compute(structure)
    except DeePKSError:
        raise
    except Exception as exc:  # a failure inside the engine's libraries: one line, never a traceback
        raise engine_failure(str(args.structure), exc) from None
    info = engine.describe()
    engine.close()
    if args.json:
        print(json.dumps({"structure": str(args.structure), "natoms": structure.natoms, "engine": info.name,
                          "model": info.model, **result.to_json_dict()}, allow_nan=False))
    else:
        _print_summary(structure, info, result)
    if not result.trusted:
        reason = "the SCF did not converge" if not result.converged else "; ".join(result.flags) or "non-finite numbers"
        print(f"deepks-es: warning: {reason}; the result is flagged (trusted: false)", file=sys.stderr)
        return EXIT_UNCONVERGED
    return 0


def _print_summary(structure, info, result) -> None:
    levels = {key: "n/a" if value is None else f"{value:.4f} eV" for key, value in result.levels_ev().items()}
    basis = info.settings.get("basis")
    lines = [
        f"structure      {structure.natoms} atoms, {'periodic' if structure.is_periodic else 'cluster'}",
        f"method         {info.name}{f'/{basis}' if basis else ''}, model: {info.model}",
        f"energy         {result.energy:.10f} Ha",
        *(f"{name:14s} {value}" for name, value in result.scalars.items()),
        f"HOMO / LUMO    {levels['homo_ev']} / {levels['lumo_ev']}",
        f"gap            {levels['gap_ev']}",
    ]
    if result.scf is not None:
        state = "converged" if result.scf.converged else "NOT converged"
        lines.append(f"SCF            {state} in {result.scf.cycles} "
                     f"cycles ({result.scf.stage})")
    lines.append(f"wall time      {result.wall_s:.1f} s")
    if result.forces is not None:
        lines.append(f"max |force|    {np.abs(result.forces).max():.6f} Ha/Bohr")
    lines += [f"note           {note}" for note in result.notes]
    print("\n".join(lines))


def cmd_drive(args) -> int:
    from .ipi.client import SocketAddress
    from .ipi.drive import ClientPlan, drive

    address = (SocketAddress(unix=args.unix, prefix=args.socket_prefix) if args.unix
               else SocketAddress.parse_inet(args.inet))
    if args.idle_timeout < 0:
        raise SettingsError(f"--idle-timeout must be positive (or 0: never), got {args.idle_timeout}")
    return drive(ClientPlan(address, Path(args.structure), args.pbc, _engine_spec(args), _grid(args),
                            Path(args.dos_metadata), args.wait, args.clients, args.idle_timeout or None,
                            tuple(key for key in args.require_extras.split(",") if key), _monitor(args)))


def cmd_run(args) -> int:
    from .ipi.launcher import RunPlan, resume, run

    if args.resume is not None:
        others = [flag for flag, given in (("INPUT", args.input is not None), ("--run-dir", args.run_dir is not None),
                                           ("--clients", args.clients != 1),
                                           ("engine options", _engine_spec(args) != EngineSpec()),
                                           ("monitoring options", _monitor(args) != MonitorSettings()))
                  if given]
        if others:
            raise SettingsError(f"--resume RUN_DIR continues with the plan recorded in RUN_DIR/run.json: give no "
                                f"{', '.join(others)} with it")
        code = resume(Path(args.resume))
        return _analyse_finished(code, Path(args.resume))
    options, run_dir, xml, monitor, skip = dict(vars(args)), args.run_dir, args.input, _monitor(args), 0
    if xml is None:  # the main job: an embedded liquid-water NVT run, its options where the user leaves them open
        job = main_job(args.model)
        xml, run_dir, skip = str(job.input_path), run_dir or MAIN_JOB_RUN_DIR, job.skip
        options, monitor = job.engine_options(options), job.monitor_settings(monitor)
    spec, run_dir = EngineSpec.from_options(options), Path(run_dir or ".")
    code = run(RunPlan(Path(xml), run_dir, spec, _grid(args), args.clients, args.timeout, args.wait, monitor))
    return _analyse_finished(code, run_dir, skip)


def _analyse_finished(code: int, run_dir: Path, skip: int = 0) -> int:
    """After a run: the analysis (from step ``skip`` on) of a finished run that logged the gap; ``code`` passed on."""
    from .analysis import locate_run

    if code == 0 and "gap_ev" in locate_run(run_dir).names.extras:
        _report_analysis(run_dir, skip)
    return code


def _report_analysis(run: Path | str, skip: int = 0) -> None:
    """Analyse a run (directory or output prefix) from step ``skip`` on; print its mean gap, the O-O RDF's first
    peak and where the plots went."""
    from .analysis import analyze

    summary = analyze(run, skip=skip)
    gap = summary["levels_ev"]["gap"]
    print(f"gap {gap['mean']:.3f} ± {gap['block_error']:.3f} eV over {summary['steps_logged']} steps x "
          f"{summary['beads']} bead(s); plots and summary in {Path(summary['files']['summary']).parent}")
    if "rdf_OO" in summary:
        rdf = summary["rdf_OO"]
        print(f"O-O RDF over {rdf['frames']} frames: first peak at {rdf['first_peak_angstrom']:.2f} Å, height "
              f"{rdf['first_peak_height']:.2f} (experiment: {rdf['experiment']['first_peak_angstrom']:.2f} Å, "
              f"{rdf['experiment']['first_peak_height']:.2f})")
    _report_sections(summary)


def _report_sections(summary: dict) -> None:
    """One line each on the density (constant-pressure runs) and the on-the-fly validation of an analysed run,
    where it has them."""
    if "density" in summary:
        density = summary["density"]
        print(f"density {density['mean_g_per_cm3']:.4f} ± {density['block_error_g_per_cm3']:.4f} g/cm³ over "
              f"{density['steps']} steps (block error; std {density['std_g_per_cm3']:.4f})")
    if "validation" in summary:
        validation = summary["validation"]
        print(f"validation: {validation['comparisons']} comparison(s) with the reference; "
              + ("; ".join(f"warning: {w}" for w in validation["warnings"]) or "all within the limits"))


def cmd_lammps(args) -> int:
    from .lammps import LammpsPlan, run_lammps

    type_map = None if args.type_map is None else tuple(s.strip() for s in args.type_map.split(","))
    plan = LammpsPlan(Path(args.input), _engine_spec(args), type_map, args.fix, Path(args.prefix), _grid(args),
                      Path(args.log), _monitor(args))
    steps = run_lammps(plan)
    print(f"deepks-es lammps: {steps} step(s) served; observables in {args.prefix}.*", file=sys.stderr)
    if steps:
        _report_analysis(args.prefix)
    return 0


def cmd_analyze(args) -> int:
    from .analysis import ValidationLimits, analyze

    limits = ValidationLimits(args.limit_energy, args.limit_forces, args.limit_gap)
    summary = analyze(args.run, args.out, skip=args.skip, limits=limits)
    if args.json:
        print(json.dumps(summary))
    else:
        for name, level in summary["levels_ev"].items():
            print(f"{name:5s} {level['mean']:9.4f} ± {level['block_error']:.4f} eV  (std {level['std']:.4f}, "
                  f"range {level['min']:.3f} .. {level['max']:.3f})")
        print(f"{summary['steps_logged']} steps x {summary['beads']} bead(s), skipped {summary['steps_skipped']}; "
              f"files in {Path(summary['files']['summary']).parent}")
        _report_sections(summary)
    return 0


def cmd_sample(args) -> int:
    from .structure import write_structures
    from .training.sample import SamplingPlan, sample

    lo, _, hi = args.sizes.partition("-")
    try:
        sizes = (int(lo), int(hi or lo))
    except ValueError:
        raise SettingsError(f"--sizes wants MIN-MAX molecules, e.g. 1-8; got {args.sizes!r}") from None
    plan = SamplingPlan(cluster_sizes=sizes, clusters=args.clusters, boxes=args.boxes,
                        liquid_boxes=args.liquid_boxes, box_molecules=args.box_molecules, md_molecules=args.md_molecules,
                        temperature=args.temperature, distortion=args.distortion, size_bias=args.size_bias,
                        seed=args.seed, source=args.from_run, skip=args.skip)
    frames = sample(plan)
    write_structures(args.output, frames)
    liquid = (f"{args.liquid_boxes} frames of {args.from_run}" if args.from_run
              else f"{args.liquid_boxes} liquid boxes of {args.md_molecules}")
    print(f"{len(frames)} configurations ({args.clusters} clusters of {args.sizes} molecules, {args.boxes} "
          f"random periodic boxes, {liquid}) -> {args.output}")
    return 0


def cmd_label(args) -> int:
    from .training.label import LabelSettings, label

    defaults = LabelSettings()
    common = dict(basis=args.basis, pseudo=None if args.pseudo.lower() == "none" else args.pseudo,
                  conv_tol=args.conv_tol)
    settings = LabelSettings(target=replace(defaults.target, xc=args.target_xc, **common),
                             base=replace(defaults.base, xc=args.base_xc, **common),
                             nvirt=args.nvirt, periodic_ke_cutoff=args.ke_cutoff, distill=args.distill)
    label(args.configs, args.output, settings, progress=not args.quiet, finished_only=args.finished_only)
    return 0


def cmd_train(args) -> int:
    from .training.train import train

    path = train(args.config, member=args.member, seed=args.seed)
    if path.suffix == ".pt" and path.name.startswith("checkpoint"):
        print(f"member {args.member} trained -> {path}; the model file is written when every member is done")
    else:
        print(f"model -> {path} (loss curves: {path.parent / 'loss.png'})")
    return 0


def cmd_ensemble(args) -> int:
    from .engines.registry import resolve_model
    from .model.ensemble import mean_model
    from .model.network import CorrectionModel

    files = [resolve_model(name) for name in args.models]
    if any(f is None for f in files):
        raise SettingsError("ensemble averages DeePKS-ES model files ('none' is not one)")
    ensemble = mean_model([CorrectionModel.from_file(f) for f in files], sources=[f.path for f in files])
    ensemble.save(args.output)
    print(f"ensemble of {len(files)} models (hidden {list(ensemble.hidden)}) -> {args.output}")
    return 0


def cmd_evaluate(args) -> int:
    from .engines.registry import resolve_model
    from .fileio import atomic_path, write_json
    from .model.modelfile import SURROGATE_KIND
    from .model.network import CorrectionModel
    from .training.dataset import read_dataset
    from .training.evaluate import evaluate, markdown_table
    from .training.train import fit_baselines

    model_file = resolve_model(args.model)
    if model_file is None:
        raise SettingsError("evaluate needs a model: a file path, 'default' or 'surrogate'")
    if model_file.kind == SURROGATE_KIND:
        return _evaluate_surrogate(args, model_file)
    model = CorrectionModel.from_file(model_file)
    baselines = None
    if args.baselines:
        frames, _ = read_dataset(args.baselines)
        baselines = fit_baselines(frames, model.elements)
    summary = evaluate(model, args.data, subset=args.subset, baselines=baselines, progress=not args.quiet,
                       ke_cutoff=args.ke_cutoff)
    table = markdown_table(summary)
    if args.output:
        write_json(f"{args.output}.json", summary)
        with atomic_path(f"{args.output}.md") as tmp, open(tmp, "w") as handle:
            handle.write(table)
    print(json.dumps(summary) if args.json else table, end="" if not args.json else "\n")
    return 0 if summary["scf_converged"] == summary["scf_attempted"] else EXIT_UNCONVERGED


def _evaluate_surrogate(args, model_file) -> int:
    from .engines import SurrogateEngine
    from .training.evaluate_surrogate import evaluate_surrogate, markdown_table, spread_plot, write_summary

    if args.baselines or args.subset != "all" or args.ke_cutoff is not None:
        raise SettingsError("--baselines, --subset and --ke-cutoff are for DeePKS-ES models, not surrogates")
    engine = SurrogateEngine.from_spec(EngineSpec(model=str(model_file.path)), model_file)
    summaries = [evaluate_surrogate(engine, data, progress=not args.quiet) for data in args.data]
    if args.output:
        for summary in summaries:
            suffix = "" if len(summaries) == 1 else f"_{Path(summary['data']).stem}"
            write_summary(summary, f"{args.output}{suffix}")
        spread_plot(summaries, Path(f"{args.output}_spread.png"))
    for summary in summaries:
        print(json.dumps({k: v for k, v in summary.items() if k != "per_frame"}) if args.json
              else markdown_table(summary))
    return 0


def _numbers(text: str, kind, flag: str) -> tuple:
    """``"4,8,16"`` -> (4, 8, 16); ``"none"`` or empty -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(kind(item) for item in text.split(","))
    except ValueError:
        raise SettingsError(f"{flag} wants a comma-separated list, e.g. 4,8,16, or none; got {text!r}") from None


def cmd_bench(args) -> int:
    from .bench.suite import BenchPlan, run_bench
    model = args.model or "default"
    surrogate = args.surrogate
    plan = BenchPlan(model=str(Path(model).resolve()) if Path(model).is_file() else model,
                     surrogate=str(Path(surrogate).resolve()) if Path(surrogate).is_file() else surrogate,
                     committee_every=args.committee_every,
                     clusters=_numbers(args.clusters, int, "--clusters"), boxes=_numbers(args.boxes, int, "--boxes"),
                     methods=_numbers(args.methods, str, "--methods"), md_molecules=args.md_molecules,
                     md_steps=args.md_steps, check_every=args.check_every, extrapolation=args.extrapolation,
                     tolerances=_numbers(args.tolerances, float, "--tolerances"), conv_tol=args.conv_tol,
                     conv_tol_grad=args.conv_tol_grad, ke_cutoff=args.ke_cutoff,
                     scaling=_numbers(args.scaling, int, "--scaling"), scaling_observables=args.scaling_observables)
    data = run_bench(plan, args.out, log=lambda message: print(f"deepks-es bench: {message}", file=sys.stderr,
                                                               flush=True))
    print((Path(args.out) / "bench.md").read_text())
    return 0 if all("error" not in r for r in data["results"]) else EXIT_ERROR


VERB_TEXTS = {  # verb: (one-line help, description)
    "compute": ("single point: energy, forces and orbitals of a structure",
                "Self-consistent single point of one structure (XYZ/extended "
                "XYZ, Angstrom) with DeePKS-ES or a plain functional."),
    "drive": ("serve DeePKS-ES forces to a running i-PI server (socket client)",
                "Connect to an i-PI server and answer its force requests with the "
                "engine; electronic observables travel as JSON extras. Under "
                "'mpiexec -n K' every rank is one client."),
    "run": ("run an i-PI simulation (server + DeePKS-ES clients), then analyse it",
                "Start the i-PI server on INPUT.xml as a subprocess, attach DeePKS-ES "
                "clients, and analyse the trajectory; returns i-PI's exit code. With no "
                f"INPUT: the main job in {MAIN_JOB_RUN_DIR}/, {SURROGATE_MAIN_JOB.summary}; with "
                f"--model default (or none, or a DeePKS-ES file): {SCF_MAIN_JOB.summary}. Options you "
                "give override the job's."),
    "sample": ("training configurations: water clusters from cheap MD, periodic boxes",
                "Seeded water configurations (extended XYZ): clusters of MIN-MAX "
                "molecules cut from a flexible-water (q-SPC/Fw) liquid MD and thermally "
                "distorted, plus small random periodic boxes."),
    "label": ("label configurations with the target (HSE06) and base (PBE) functionals",
                "Target and base Kohn-Sham calculations of every frame (energies, "
                "forces, Fock and overlap matrices, orbitals, density matrices) into "
                "one HDF5 file. Resumable; parallel over frames under 'mpiexec -n K'."),
    "train": ("train a DeePKS-ES model (iterative, self-consistent) or a surrogate committee from labelled data",
                "Energy, force, Hamiltonian, eigenvalue and density losses; phases "
                "separated by an SCF with the current model on every frame; "
                "checkpoints and resume; loss curves as PNG. Settings in a TOML file "
                "(see inputs/training/water.toml). A TOML with a [surrogate] table "
                "distils DeePKS-ES labels (label --distill) into a committee of "
                "E(3)-equivariant networks (inputs/training/surrogate.toml)."),
    "ensemble": ("one DeePKS-ES model whose correction is the mean of several trainings' (e.g. seeds)",
                 "Write the mean of MODELS' energy corrections exactly as one ordinary model file (their networks "
                 "side by side in one wider network), which every engine and front end serves: an ensemble of "
                 "trainings of one recipe with different seeds averages out their seed-to-seed scatter. The "
                 "models must share elements, projectors, inputs, base calculation and network depth."),
    "evaluate": ("errors of a model against the target labels, beside PBE and a scissor shift",
                "Self-consistent runs of MODEL on every frame of DATA; MAE/RMSE of "
                "energy, forces, gap, HOMO, LUMO, occupied levels and H against "
                "the target, with plain base and scissor baselines (fitted on the "
                "training set). Markdown table; --output writes .md and .json."),
    "bench": ("benchmarks: PBE, DeePKS-ES and HSE06 step times side by side, MD segment with density "
              "extrapolation, memory",
                "Single-point energy+forces of water clusters and periodic boxes with "
                "each method (time per part, SCF cycles, peak memory, each in a fresh "
                "process), an NVT MD segment with DeePKS-ES (SCF cycles and s/step, "
                "extrapolated vs cold, force error vs fully converged) and a force "
                "error vs SCF tolerance scan. Writes OUT/bench.json (resumable) and "
                "OUT/bench.md (ratios first)."),
    "lammps": ("run a LAMMPS input whose 'fix external pf/callback' the engine serves",
                "Run an ordinary LAMMPS input (units real or metal, one MPI rank) that declares 'fix ID all "
                "external pf/callback 1 1' (with 'fix_modify ID energy yes virial yes'): each step the engine gives "
                "the forces, energy and virial, and the electronic observables go to PREFIX.out and "
                "PREFIX.<key>_0 (i-PI formats), analysed at the end."),
    "analyze": ("electronic analysis of a run: gap statistics, averaged DOS, plots",
                "Gap/HOMO/LUMO time series and histogram, trajectory- and bead-averaged "
                "DOS with O/H projections, block-averaged error bars: PNG, CSV, JSON."),
}


def _verb(verbs, command) -> argparse.ArgumentParser:
    """The parser of the verb that ``command`` (``cmd_<verb>``) runs, with its texts from VERB_TEXTS."""
    name = command.__name__.removeprefix("cmd_")
    help, description = VERB_TEXTS[name]
    parser = verbs.add_parser(name, help=help, description=description)
    parser.set_defaults(func=command)
    return parser


def _add_compute(verbs) -> None:
    compute = _verb(verbs, cmd_compute)
    compute.add_argument("structure", help="structure file (extended XYZ; last frame unless --index)")
    compute.add_argument("--index", type=int, default=-1, help="frame of a multi-frame file (default: -1)")
    compute.add_argument("--json", action="store_true", help="print one JSON object (atomic units, eV)")
    add_engine_options(compute)


def _add_drive(verbs) -> None:
    drive = _verb(verbs, cmd_drive)
    where = drive.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix", metavar="NAME", help="unix socket NAME (path = socket prefix + NAME)")
    where.add_argument("--inet", metavar="HOST:PORT", help="inet socket")
    drive.add_argument("--socket-prefix", default=SOCKET_PREFIX,
                       help=f"prefix of unix socket paths, as i-PI's sockets_prefix (default: {SOCKET_PREFIX})")
    drive.add_argument("--structure", required=True,
                       help="structure file with the atoms in i-PI's order (its symbols are used)")
    drive.add_argument("--pbc", action="store_true",
                       help="periodic box: the cell comes from i-PI each step (default: cluster)")
    drive.add_argument("--wait", type=float, default=60.0,
                       help="seconds to keep trying to reach the server at start (default: 60)")
    drive.add_argument("--clients", type=int, default=1,
                       help="start this many client processes (PIMD beads in parallel; default: 1)")
    drive.add_argument("--idle-timeout", type=float, default=3600.0,
                       help="give up when i-PI sends nothing for this many seconds, 0 for never (default: 3600; "
                            "i-PI polls its clients every few ms, also while it waits for other beads)")
    drive.add_argument("--require-extras", default="", metavar="KEY,KEY",
                       help="extras keys the i-PI input logs: a step without one is an error here instead of a "
                            "KeyError in i-PI (deepks-es run passes them; default: none)")
    drive.add_argument("--dos-metadata", default=DOS_GRID_FILE,
                       help=f"where to write the DOS grid description (default: {DOS_GRID_FILE})")
    add_engine_options(drive)
    _add_dos_options(drive)
    _add_monitor_options(drive)


def _add_run(verbs) -> None:
    run = _verb(verbs, cmd_run)
    run.add_argument("input", nargs="?", default=None, help="i-PI input file (templates in inputs/ipi/)")
    run.add_argument("--run-dir", default=None,
                     help=f"where i-PI runs and writes its outputs (default: ., or {MAIN_JOB_RUN_DIR} for the "
                          "main job)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue a killed run from its newest i-PI checkpoint, with the plan recorded in "
                          "RUN_DIR/run.json (outputs are cut back to the checkpoint first)")
    run.add_argument("--clients", type=int, default=1, help="client processes (e.g. one per bead; default: 1)")
    run.add_argument("--timeout", type=float, default=3600.0,
                     help="i-PI's per-request timeout in s, raised to this if the input has less (default: 3600)")
    run.add_argument("--wait", type=float, default=60.0, help="seconds clients wait for i-PI to come up")
    add_engine_options(run)
    _add_dos_options(run)
    _add_monitor_options(run)


def _add_sample(verbs) -> None:
    sample = _verb(verbs, cmd_sample)
    sample.add_argument("-o", "--output", required=True, help="extended XYZ file to write")
    sample.add_argument("--sizes", default="1-8", help="molecules per cluster, MIN-MAX (default: 1-8)")
    sample.add_argument("--clusters", type=int, default=48, help="number of clusters (default: 48)")
    sample.add_argument("--boxes", type=int, default=0, help="number of periodic boxes (default: 0)")
    sample.add_argument("--liquid-boxes", type=int, default=0,
                        help="periodic snapshots of the MD box itself, --md-molecules waters each (default: 0)")
    sample.add_argument("--box-molecules", type=int, default=2, help="molecules per periodic box (default: 2)")
    sample.add_argument("--md-molecules", type=int, default=64, help="molecules in the q-SPC/Fw MD box (default: 64)")
    sample.add_argument("--temperature", type=float, default=300.0, help="MD temperature, K (default: 300)")
    sample.add_argument("--distortion", type=float, default=0.04,
                        help="per-atom Gaussian displacement, Angstrom (default: 0.04)")
    sample.add_argument("--size-bias", type=float, default=1.0,
                        help="cluster size n drawn with probability ∝ n^-BIAS; 0 = uniform (default: 1)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sample.add_argument("--from-run", metavar="RUN", default=None,
                        help="take the liquid boxes (--liquid-boxes, evenly spaced frames) and the clusters from the "
                             "positions of this MD run (a run directory or i-PI output prefix) instead of q-SPC/Fw MD: "
                             "e.g. the surrogate's own MD for an active-learning round (with --distortion 0)")
    sample.add_argument("--skip", type=int, default=0, help="with --from-run: MD steps to leave out (default: 0)")


def _add_label(verbs) -> None:
    label = _verb(verbs, cmd_label)
    label.add_argument("configs", help="configurations (extended XYZ, e.g. from deepks-es sample)")
    label.add_argument("-o", "--output", required=True, help="HDF5 file to write")
    label.add_argument("--target-xc", default="HSE06", help="target functional (default: HSE06)")
    label.add_argument("--base-xc", default="PBE", help="base functional (default: PBE)")
    label.add_argument("--basis", default="gth-dzvp", help="AO basis (default: gth-dzvp)")
    label.add_argument("--pseudo", default="gth-pbe", help="pseudopotential (default: gth-pbe)")
    label.add_argument("--conv-tol", type=float, default=1e-9, help="SCF energy tolerance, Hartree (default: 1e-9)")
    label.add_argument("--nvirt", type=int, default=4, help="virtual orbitals stored per frame (default: 4)")
    label.add_argument("--ke-cutoff", type=float, default=PERIODIC_KE_CUTOFF,
                       help="periodic multigrid cutoff, Hartree (default: %(default)s, as the main job)")
    label.add_argument("--distill", metavar="MODEL", default=None,
                       help="label with this DeePKS-ES model instead ('default': the shipped one): one "
                            "self-consistent record per frame, the data of a surrogate (deepks-es train [surrogate])")
    label.add_argument("--finished-only", action="store_true",
                       help="label nothing: gather the frames finished so far into the output (e.g. to train "
                            "on a labelling still under way)")
    label.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train(verbs) -> None:
    train = _verb(verbs, cmd_train)
    train.add_argument("config", help="training configuration (TOML)")
    train.add_argument("--member", type=int, default=None,
                       help="surrogate committee: train only member K (run K = 0..M-1 side by side, one per core; "
                            "the model file is written by the last to finish)")
    train.add_argument("--seed", type=int, default=None,
                       help="train the recipe with this seed instead of the config's (initial weights, validation "
                            "split, batches), in its workdir with _seedN appended")


def _add_ensemble(verbs) -> None:
    ensemble = _verb(verbs, cmd_ensemble)
    ensemble.add_argument("models", nargs="+", help="DeePKS-ES model files (or 'default'), at least two")
    ensemble.add_argument("-o", "--output", required=True, help="the ensemble's model file")


def _add_evaluate(verbs) -> None:
    evaluate = _verb(verbs, cmd_evaluate)
    evaluate.add_argument("model", help="model file, 'default' or 'surrogate'")
    evaluate.add_argument("data", nargs="+", help="labelled HDF5 files (deepks-es label); a DeePKS-ES model's are one "
                                                  "test set (one table; frames named FILE_STEM/NAME), a surrogate's "
                                                  "one table each and one spread plot")
    evaluate.add_argument("--subset", choices=("all", "train", "validation"), default="all",
                          help="frames of DATA to use, by the model's recorded training split (default: all)")
    evaluate.add_argument("--baselines", metavar="TRAIN.h5", default=None,
                          help="fit the energy offsets and scissor shifts on this dataset instead of using "
                               "those recorded in the model")
    evaluate.add_argument("--ke-cutoff", type=float, default=None,
                          help="run the model's SCF on periodic frames at this multigrid cutoff, Hartree (default: "
                               "the labels'; HSE06 targets do not depend on it)")
    evaluate.add_argument("-o", "--output", metavar="PREFIX", default=None, help="write PREFIX.md and PREFIX.json")
    evaluate.add_argument("--json", action="store_true", help="print the summary as JSON")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_bench(verbs) -> None:
    bench = _verb(verbs, cmd_bench)
    bench.add_argument("--model", default=None, help="DeePKS-ES model file (default: the shipped model)")
    bench.add_argument("--clusters", default="4,8,16,32", help="cluster sizes in molecules (default: %(default)s)")
    bench.add_argument("--boxes", default="32,64", help="periodic boxes, molecules: 8, 32, 64 or none "
                                                        "(default: %(default)s)")
    bench.add_argument("--methods", default="PBE,DeePKS-ES,HSE06",
                       help="of PBE, DeePKS-ES, HSE06, surrogate (default: %(default)s)")
    bench.add_argument("--surrogate", default="surrogate",
                       help="surrogate model of the surrogate method (default: the shipped one)")
    bench.add_argument("--committee-every", type=int, default=None,
                       help="time the surrogate as an MD with --committee-every runs between its committee "
                            "steps: member 0 alone (K > 12, the steps of one task; default: the whole committee)")
    bench.add_argument("--md-molecules", type=int, default=8, help="MD cluster size (default: %(default)s)")
    bench.add_argument("--md-steps", type=int, default=50, help="MD steps, 0 for none (default: %(default)s)")
    bench.add_argument("--check-every", type=int, default=10,
                       help="MD steps between cold and fully converged recomputations (default: %(default)s)")
    bench.add_argument("--extrapolation", default=DEFAULT_PREDICTOR,
                       help="density predictor of the MD segment (default: %(default)s)")
    bench.add_argument("--tolerances", default="1e-6,1e-7,1e-8,1e-9",
                       help="SCF tolerances (Ha) of the force-error scan, or none (default: %(default)s)")
    bench.add_argument("--conv-tol", type=float, default=1e-9, help="SCF tolerance, Ha (default: %(default)s)")
    bench.add_argument("--conv-tol-grad", type=float, default=None,
                       help="SCF orbital-gradient tolerance, Ha (default: sqrt of --conv-tol)")
    bench.add_argument("--ke-cutoff", type=float, default=PERIODIC_KE_CUTOFF,
                       help="periodic multigrid cutoff, Ha (default: %(default)s)")
    bench.add_argument("--scaling", default="none",
                       help="surrogate scaling scan over box sizes in waters, 32 or 64 x 2^k, e.g. "
                            "32,64,256,1024,4096 (default: none)")
    bench.add_argument("--scaling-observables", type=int, default=256,
                       help="largest box of the scan also timed with H, levels and DOS (default: %(default)s)")
    bench.add_argument("-o", "--out", default="runs/bench", help="output directory (default: %(default)s)")


def _add_lammps(verbs) -> None:
    lammps = _verb(verbs, cmd_lammps)
    lammps.add_argument("input", help="LAMMPS input file (run in the current directory; templates in inputs/lammps/)")
    lammps.add_argument("--type-map", default=None,
                        help="elements of LAMMPS types 1, 2, ..., e.g. O,H (default: from the masses)")
    lammps.add_argument("--fix", default=None, help="ID of the fix external to serve (default: the only one)")
    lammps.add_argument("--prefix", default="deepks",
                        help="observables go to PREFIX.out, PREFIX.<key>_0 and dos_grid.json beside them "
                             "(default: deepks)")
    lammps.add_argument("--log", default="log.lammps", help="LAMMPS's log file (default: log.lammps)")
    add_engine_options(lammps)
    _add_dos_options(lammps)
    _add_monitor_options(lammps)


def _add_analyze(verbs) -> None:
    from .analysis import ValidationLimits

    analyze = _verb(verbs, cmd_analyze)
    analyze.add_argument("run", help="run directory (with input.xml) or i-PI output prefix (e.g. runs/x/simulation)")
    analyze.add_argument("--out", default=None, help="output directory (default: RUN/analysis)")
    analyze.add_argument("--skip", type=int, default=0, help="leading steps to leave out (equilibration)")
    analyze.add_argument("--json", action="store_true", help="print the summary as JSON")
    limits = ValidationLimits()
    for flag, name, text in (("--limit-energy", "energy_mev_per_atom", "energy, meV/atom"),
                             ("--limit-forces", "force_rmse_ev_per_angstrom", "force RMSE, eV/A"),
                             ("--limit-gap", "gap_ev", "gap, eV")):
        analyze.add_argument(flag, type=float, default=getattr(limits, name),
                             help=f"warn above this |deviation| from the validation reference: {text} (default: "
                                  f"{getattr(limits, name)}: the shipped surrogate's largest error on its held-out "
                                  "5-water clusters)")


VERBS = (_add_compute, _add_drive, _add_run, _add_sample, _add_label, _add_train, _add_ensemble, _add_evaluate,
         _add_bench, _add_lammps, _add_analyze)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepks-es", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"deepks-es {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add_verb in VERBS:
        add_verb(verbs)
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
