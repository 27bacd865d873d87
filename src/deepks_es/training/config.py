"""``deepks-es train`` configuration (TOML); relative paths are relative to the config file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import SettingsError
from .frames import LOSS_TERMS


def read_toml(path: str | os.PathLike) -> dict:
    """The parsed TOML file at ``path``; a missing or malformed file is a one-line SettingsError."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"training config not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None


def check_terms(table: dict, known: tuple[str, ...], where: str) -> None:
    """A SettingsError naming the keys of ``table`` that are not loss terms in ``known``."""
    bad = sorted(set(table) - set(known))
    if bad:
        raise SettingsError(f"{where}: unknown loss term(s) {', '.join(bad)}; known: {', '.join(known)}")


def data_sources(entries: list, root: Path, where: str, terms: tuple[str, ...]) -> tuple[tuple[Path, ...], dict]:
    """Training-data entries, each a path or a table ``{path = "FILE.h5", weights = {TERM = FACTOR}}``, as paths
    resolved against ``root`` and the factors per resolved path (``str``): on that file's frames they multiply the
    loss weights of the terms named (as MACE's ``config_type_weights``). Factors of 1 are left out, so a file
    without others has no entry and a training's fingerprint does not depend on how its defaults are written."""
    paths, factors = [], {}
    for entry in entries:
        if isinstance(entry, str):
            paths.append((root / entry).resolve())
            continue
        if (not isinstance(entry, dict) or set(entry) - {"path", "weights"} or not isinstance(entry.get("path"), str)
                or not isinstance(entry.get("weights", {}), dict)):
            raise SettingsError(f"{where}: a data entry is a file or a table {{path = 'FILE.h5', weights = "
                                f"{{TERM = FACTOR}}}}, not {entry!r}")
        check_terms(entry.get("weights", {}), terms, where)
        paths.append((root / entry["path"]).resolve())
        try:
            given = {term: float(value) for term, value in entry.get("weights", {}).items()}
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: data weights of {entry['path']} must be numbers") from None
        if any(value != 1.0 for value in given.values()):
            factors[str(paths[-1])] = {term: value for term, value in given.items() if value != 1.0}
    return tuple(paths), factors


@dataclass(frozen=True)
class TrainConfig:
    """What to train on, the network, the loss weights and the schedule.

    Attributes:
        train: labelled HDF5 files (``deepks-es label``), one or more labelled alike: e.g. clusters and periodic
            boxes (``train = "a.h5"`` or ``train = ["clusters.h5", "boxes.h5"]`` in the TOML). An entry may be a
            table ``{path = "boxes.h5", weights = {eigenvalues = 4.0}}`` whose factors multiply the loss weights
            on that file's frames (e.g. a few large boxes among many small ones).
        train_weights: those factors, per resolved path (a term not named: 1). They scale the loss only: the
            file's frames still enter the input normalisation, the baselines, each phase's SCF and the loss curves.
        workdir: checkpoints, loss curves, per-iteration SCF results and the final ``model.pt``.
        validation_fraction: frames of ``train`` held out to monitor the loss (seeded split).
        hidden: hidden-layer widths of the per-element network.
        weights: loss weight of each term (energy, forces, hamiltonian, eigenvalues, frontier, density);
            a term left out of the TOML table gets weight 0.
        iterations: training phases; an SCF with the current model on every frame precedes each after the first.
        epochs: epochs of the first phase; ``refine_epochs`` of each later one.
        batch_frames: frames per optimiser step.
        learning_rate, final_learning_rate: exponential decay within each phase.
        checkpoint_every: epochs between checkpoints.
        scf_max_cycle: SCF iterations per solver stage (DIIS, level shift; no second-order stage) in the
            SCF with the model; frames still unconverged are left out of that phase, so one hard frame
            cannot stall it.
        periodic_ke_cutoff: multigrid cutoff (Hartree) of the SCF with the model on periodic frames in the
            phases after the first; None: the labels' (``label --ke-cutoff``). The HSE06 targets (Gaussian density
            fitting) do not depend on it, so labels made at a lower cutoff can train a model for the converged one.
        seed: split, initialisation and batch order.
    """

    train: tuple[Path, ...]
    workdir: Path
    train_weights: dict = field(default_factory=dict)
    validation_fraction: float = 0.15
    hidden: tuple[int, ...] = (64, 64, 64)
    weights: dict = field(default_factory=lambda: {"energy": 10.0, "forces": 4.0, "hamiltonian": 0.2,
                                                   "eigenvalues": 1.0, "frontier": 1.0, "density": 10.0})
    iterations: int = 2
    epochs: int = 400
    refine_epochs: int = 200
    batch_frames: int = 8
    learning_rate: float = 2e-3
    final_learning_rate: float = 5e-5
    checkpoint_every: int = 20
    scf_max_cycle: int = 30
    periodic_ke_cutoff: float | None = None
    seed: int = 0

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrainConfig:
        return cls.from_raw(read_toml(path), Path(path))

    @classmethod
    def from_raw(cls, raw: dict, path: Path) -> TrainConfig:
        """The config of a parsed TOML file at ``path`` (relative paths are relative to it)."""
        known = {f.name for f in fields(cls)} - {"train_weights"}  # given in the train entries
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for key in ("train", "workdir"):
            if key not in raw:
                raise SettingsError(f"{path}: '{key}' is required")
        train = raw["train"] if isinstance(raw["train"], list) else [raw["train"]]
        if not train or not all(isinstance(t, (str, dict)) for t in train):
            raise SettingsError(f"{path}: train must be a file or a list of files, e.g. train = [\"a.h5\", \"b.h5\"]")
        raw["train"], raw["train_weights"] = data_sources(train, path.parent, str(path), LOSS_TERMS)
        raw["workdir"] = (path.parent / raw["workdir"]).resolve()
        if "hidden" in raw:
            if not isinstance(raw["hidden"], list):
                raise SettingsError(f"{path}: hidden must be a list of layer widths, e.g. [64, 64, 64]")
            raw["hidden"] = tuple(int(h) for h in raw["hidden"])
        if "weights" in raw:
            if not isinstance(raw["weights"], dict):
                raise SettingsError(f"{path}: weights must be a table, e.g. [weights] energy = 10.0")
            check_terms(raw["weights"], LOSS_TERMS, str(path))
            raw["weights"] = {term: float(raw["weights"].get(term, 0.0)) for term in LOSS_TERMS}
        try:
            config = cls(**raw)
            checks = {"0 <= validation_fraction < 1": 0.0 <= config.validation_fraction < 1.0,
                      "iterations >= 1": config.iterations >= 1, "epochs >= 1": config.epochs >= 1,
                      "refine_epochs >= 1": config.refine_epochs >= 1 or config.iterations == 1,
                      "batch_frames >= 1": config.batch_frames >= 1,
                      "checkpoint_every >= 1": config.checkpoint_every >= 1,
                      "scf_max_cycle >= 1": config.scf_max_cycle >= 1,
                      "periodic_ke_cutoff > 0": config.periodic_ke_cutoff is None or config.periodic_ke_cutoff > 0,
                      "learning rates > 0": config.learning_rate > 0 and config.final_learning_rate > 0,
                      "hidden widths >= 1": all(h >= 1 for h in config.hidden),
                      "weights >= 0": all(w >= 0 for w in config.weights.values()),
                      "data weights >= 0": all(w >= 0 for f in config.train_weights.values() for w in f.values())}
        except (TypeError, ValueError, AttributeError) as exc:
            raise SettingsError(f"{path}: a setting has the wrong type ({exc})") from None
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise SettingsError(f"{path}: need {', '.join(failed)}")
        return config
