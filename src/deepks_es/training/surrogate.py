"""``deepks-es train`` with a ``[surrogate]`` table: distil DeePKS-ES labels (``deepks-es label --distill``)
into a committee of surrogate networks (:mod:`deepks_es.surrogate`).

Loss per frame (eV-based, like the DeePKS-ES training): energy per atom, force components, Kohn-Sham matrix
elements, the occupied levels + LUMO, the virtual levels above the LUMO within a window, and the gap. A periodic
box's levels are referenced to its mean potential and a cluster's to vacuum, which a local model cannot tell
apart: for boxes the Hamiltonian and level terms ignore a constant shift mu S (mu fitted per frame, the same mu
for both), for clusters they are absolute.
Each member has its own seed and validation split; checkpoints every epoch, so a rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ..constants import BOHR_ANGSTROM, HARTREE_EV
from ..engines.registry import SHIPPED_FILES, resolve_model
from ..errors import DeePKSError, ModelError, SettingsError
from ..fileio import atomic_path, write_json
from ..surrogate.committee import Committee
from ..surrogate.graph import Graph, build_graph
from ..surrogate.network import HAMILTONIAN_PARTS, SurrogateModel, SurrogateSettings
from .averaging import WeightAverage
from .checkpoint import load_checkpoint
from .config import check_terms, data_sources
from .dataset import read_dataset

FORCE_FIELD_TERMS = ("energy", "forces")
HAMILTONIAN_TERMS = ("hamiltonian", "eigenvalues", "virtuals", "gap")
LEVEL_TERMS = ("eigenvalues", "virtuals", "gap")
SURROGATE_TERMS = FORCE_FIELD_TERMS + HAMILTONIAN_TERMS
LATER_SETTINGS = {"data_weights": {}, "refit_reference": False, "hamiltonian_hidden": None}
"""Settings younger than checkpoints in use, with their defaults: a checkpoint that predates one resumes where the
training leaves it at its default."""
COMMITTEE_SETTINGS = ("members", "served_members")
"""Settings of the committee that do not shape any member's training (member k: seed + k, its own split)."""
CHECKPOINT = "checkpoint.pt"
MODEL = "surrogate.pt"


@dataclass(frozen=True)
class SurrogateTrainConfig:
    """The ``[surrogate]`` table of a training TOML (paths relative to the file).

    Attributes:
        data: distillation datasets (``deepks-es label --distill``), one or more HDF5 files. In the TOML an entry
            is a path or a table ``{path = "...", weights = {energy = 0.0}}`` whose factors multiply the loss
            weights on that file's frames (as MACE's ``config_type_weights``): e.g. energies of cells too small
            for their Γ-point energy per atom to be that of the bulk, whose forces still count.
        data_weights: those factors, per resolved path (a term not named: 1). A term at factor 0 is neither
            trained nor reported on that file's frames, and the reference energies are fitted to the frames
            whose energy counts.
        workdir: member checkpoints, loss curves and the final ``surrogate.pt``.
        members: members trained (member k: seed + k, its own validation split).
        served_members: the committee serves this many of them, those with the lowest validation loss at their
            last epoch (the loss weights times the validated mean squares); None (the default): every member.
            For a training where a member's optimisation may stall (round 5's stage 2: one member in three
            stayed at 5x the others' eigenvalue loss): train more members than served. Neither setting changes
            a member's training, so raising ``members`` resumes the trained ones.
        validation_fraction: frames held out per member (a seeded split of its own).
        epochs: passes over the training frames per member.
        batch_frames: frames per optimiser step.
        learning_rate, final_learning_rate: exponential decay over the epochs.
        weights: loss weight of each term (energy, forces, hamiltonian, eigenvalues, virtuals, gap). With the
            last four at 0 a training pass does not build H (a force field alone), with the first two at 0 it does
            not differentiate the energy (the Hamiltonian alone: with a separate Hamiltonian network and
            ``init_model`` a force field trained before, a second stage); validation reports every term the
            training can change (with a separate Hamiltonian network, the weighted half's).
        virtual_window: the ``virtuals`` term compares the levels above the LUMO up to the label's LUMO + this
            (eV), index by index: the lower conduction band, which the LUMO alone does not pin down (an 8-water
            cell's LUMO is an isolated state 2-3 eV below the band that is the LUMO of larger cells). 0 (the
            default): no virtual level beyond the LUMO.
        level_warmup_epochs: first epochs without the level terms (eigenvalues, virtuals, gap): the levels of a
            random Hamiltonian in a near-singular overlap are huge, so H is first brought close.
        dtype: network precision, float32 or float64, in training and in the engine (energies always
            accumulate in float64).
        hamiltonian_trains_layers: whether the Hamiltonian and level terms train the shared interaction layers
            (True, as in rounds 0-4) or only the Hamiltonian head, which then reads the layers' features as the
            energy and force terms shape them (False). Moot with ``hamiltonian_network = "separate"``, where
            no layer is shared.
        weight_average: decay of the exponential moving average of the weights over the optimiser steps
            (:class:`~deepks_es.training.averaging.WeightAverage`); the averaged weights are validated and
            served. 0 (the default) serves the last step's weights.
        seed: member k uses seed + k.
        network: the :class:`SurrogateSettings` fields to change (the ``[surrogate.network]`` table).
        init_model: fine-tune instead of starting afresh: member k starts from member k (modulo its size) of
            this surrogate model file (``surrogate``: the shipped one), reference energies, energy scale and
            on-site means included (not refitted); its network settings must equal ``network``, except
            ``message_envelope``, which adds no parameter (a model trained without it warm-starts one with
            it, and the other way round), and ``product_channels`` where ``correlation`` is 1 (rounds 0-3
            have ``correlation = 1``; the shipped round 5 has 3). For an active-learning round: the old data
            plus frames from the model's own MD, a lower learning rate. A stage that weights no force-field term,
            with a separate Hamiltonian network, may also change the Hamiltonian's settings
            (:data:`~deepks_es.surrogate.network.HAMILTONIAN_SETTINGS`, e.g. ``hamiltonian_hidden``): it takes
            the force field (and the on-site means) from this file, and the Hamiltonian's network and head start
            afresh.
        refit_reference: fine-tuning re-fits the per-route reference energies to the start model's residuals
            on the training frames whose energy counts (least squares, as a fresh training fits them): for
            labels whose energy zero differs from the start model's (e.g. larger cells). Moot without
            ``init_model``.
    """

    data: tuple[Path, ...]
    workdir: Path
    members: int = 3
    served_members: int | None = None
    validation_fraction: float = 0.1
    epochs: int = 40
    batch_frames: int = 1
    learning_rate: float = 1e-2
    final_learning_rate: float = 1e-4
    weights: dict = field(default_factory=lambda: {"energy": 1000.0, "forces": 4.0, "hamiltonian": 20.0,
                                                   "eigenvalues": 1.0, "virtuals": 0.0, "gap": 1.0})
    virtual_window: float = 0.0
    level_warmup_epochs: int = 3
    dtype: str = "float32"
    hamiltonian_trains_layers: bool = True
    weight_average: float = 0.0
    seed: int = 0
    network: SurrogateSettings = SurrogateSettings()
    init_model: str | None = None
    data_weights: dict = field(default_factory=dict)
    refit_reference: bool = False

    @classmethod
    def from_table(cls, table: dict, root: Path, where: str) -> SurrogateTrainConfig:
        """The config of a parsed ``[surrogate]`` table; ``root`` resolves relative paths; errors name ``where``."""
        raw = dict(table)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SettingsError(f"{where}: unknown surrogate setting(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(known))}")
        for key in ("data", "workdir"):
            if key not in raw:
                raise SettingsError(f"{where}: surrogate '{key}' is required")
        entries = raw["data"] if isinstance(raw["data"], list) else [raw["data"]]
        raw["data"], raw["data_weights"] = data_sources(entries, root, where, SURROGATE_TERMS)
        raw["workdir"] = (root / raw["workdir"]).resolve()
        if raw.get("init_model") is not None and str(raw["init_model"]).lower() not in SHIPPED_FILES:
            raw["init_model"] = str((root / raw["init_model"]).resolve())
        if "weights" in raw:
            check_terms(raw["weights"], SURROGATE_TERMS, where)
            raw["weights"] = {term: float(raw["weights"].get(term, 0.0)) for term in SURROGATE_TERMS}
        try:
            network = dict(raw.pop("network", {}))
            defaults = SurrogateSettings()
            raw["network"] = SurrogateSettings.from_dict({**defaults.as_dict(), **network})
            config = cls(**raw)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{where}: a surrogate setting has the wrong type or name ({exc})") from None
        served = config.served_members
        checks = {"members >= 1": config.members >= 1, "epochs >= 1": config.epochs >= 1,
                  "1 <= served_members <= members": served is None or 1 <= served <= config.members,
                  "validation_fraction > 0 for served_members": served is None or config.validation_fraction > 0,
                  "0 <= validation_fraction < 1": 0 <= config.validation_fraction < 1,
                  "batch_frames >= 1": config.batch_frames >= 1,
                  "level_warmup_epochs >= 0": config.level_warmup_epochs >= 0,
                  "virtual_window >= 0": config.virtual_window >= 0,
                  "virtual_window > 0 for a virtuals weight": config.virtual_window > 0
                  or config.weights["virtuals"] == 0,
                  "learning rates > 0": config.learning_rate > 0 and config.final_learning_rate > 0,
                  "dtype float64 or float32": config.dtype in ("float64", "float32"),
                  "0 <= weight_average < 1": 0 <= config.weight_average < 1,
                  "weights >= 0": all(w >= 0 for w in config.weights.values()),
                  "data weights >= 0": all(w >= 0 for f in config.data_weights.values() for w in f.values())}
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise SettingsError(f"{where}: need {', '.join(failed)}")
        return config


@dataclass
class DistilledFrame:
    """One labelled frame as tensors (atomic units): structure, graph and the DeePKS-ES labels."""

    name: str
    natoms: int
    species: torch.Tensor
    positions: torch.Tensor
    cell: torch.Tensor | None
    graph: Graph
    energy: float
    forces: torch.Tensor
    hamiltonian: torch.Tensor
    overlap: torch.Tensor
    inverse_factor: torch.Tensor  # L^-1 of S = L L^T
    levels: torch.Tensor  # occupied levels + LUMO, then the virtual levels in the window (Hartree)
    nocc: int
    factors: dict = field(default_factory=dict)  # loss factor per term of its file (data_weights)

    def factor(self, term: str) -> float:
        """The loss factor of ``term`` on this frame (1 where its file names none)."""
        return self.factors.get(term, 1.0)

    def counts(self, term: str) -> bool:
        """Whether ``term`` enters this frame's loss at all."""
        return self.factor(term) > 0

    @property
    def periodic(self) -> bool:
        return self.cell is not None


def load_frames(paths, model: SurrogateModel, dtype: torch.dtype, virtual_window: float = 0.0,
                data_weights: dict | None = None) -> list[DistilledFrame]:
    """Every converged frame of the distillation datasets at ``paths`` as :class:`DistilledFrame`, with the
    label levels up to the LUMO + ``virtual_window`` (eV) and its file's loss factors (``data_weights``: per
    path string)."""
    frames = []
    for path in paths:
        factors = (data_weights or {}).get(str(path), {})
        raw, attrs = read_dataset(path)
        if json.loads(attrs["settings"]).get("distill") is None:
            raise DeePKSError(f"{path} holds HSE06/PBE labels, not DeePKS-ES ones: make the data with "
                              "deepks-es label --distill MODEL")
        for frame in raw:
            record = frame.target
            if not record["converged"]:
                continue
            nocc = int(record["nocc"])
            levels = np.asarray(record["mo_energy"])[:window_end(record["mo_energy"], nocc, virtual_window)]
            overlap = torch.as_tensor(record["overlap"], dtype=dtype)
            factor = torch.linalg.cholesky(overlap.double())
            s = frame.structure
            frames.append(DistilledFrame(
                name=f"{Path(path).stem}/{frame.name}", natoms=s.natoms, species=model.species(s.symbols),
                positions=torch.tensor(np.array(s.positions), dtype=dtype),
                cell=None if s.cell is None else torch.tensor(np.array(s.cell), dtype=dtype),
                graph=build_graph(s, model.settings.hamiltonian_cutoff), energy=float(record["energy"]),
                forces=torch.as_tensor(record["forces"], dtype=dtype),
                hamiltonian=torch.as_tensor(record["fock"], dtype=dtype), overlap=overlap,
                inverse_factor=torch.linalg.inv(factor).to(dtype),
                levels=torch.as_tensor(levels, dtype=dtype), nocc=nocc, factors=factors))
    if not frames:
        raise DeePKSError("no converged frames in the surrogate data")
    return frames


def window_end(levels, nocc: int, window: float) -> int:
    """How many of the ascending ``levels`` (Hartree) reach up to the LUMO + ``window`` (eV), the LUMO at least."""
    return max(nocc + 1, int(np.sum(np.asarray(levels) <= levels[nocc] + window / HARTREE_EV)))


def overlap_shift(delta, overlap):
    """The mu that minimises |delta - mu S|_F (numpy or torch): a box's constant level offset."""
    return (delta * overlap).sum() / (overlap ** 2).sum()


def frame_errors(model: SurrogateModel, frame: DistilledFrame, create_graph: bool,
                 hamiltonian_trains_layers: bool = True, force_field: bool = True,
                 hamiltonian: bool = True) -> dict[str, torch.Tensor]:
    """Per-frame errors in eV, eV/atom and eV/Angstrom: with ``force_field`` ``energy`` (per atom) and ``forces``
    (N, 3); with ``hamiltonian`` ``hamiltonian`` (nao, nao, after the mu S shift of boxes), ``eigenvalues``
    (occupied + LUMO, shifted alike), ``virtuals`` (the frame's window above the LUMO, if it holds any), ``gap``
    and ``shift`` (mu, eV). Without ``hamiltonian_trains_layers`` these reach only the Hamiltonian head's
    parameters (and its own layers', with a separate Hamiltonian network); with a separate one and without
    ``force_field``, the force field's network is not run."""
    x = frame.positions.clone().requires_grad_(force_field)
    errors = {}
    if force_field or model.settings.hamiltonian_network == "shared":
        energy, h, vectors = model.energy_and_features(frame.species, x, frame.cell, frame.graph)
    else:  # the Hamiltonian's own network alone: the force field's is not run
        h, vectors = None, model.pair_vectors(x, frame.cell, frame.graph)
    if force_field:
        (grad,) = torch.autograd.grad(energy, x, create_graph=create_graph)
        errors.update(energy=(energy - frame.energy) * HARTREE_EV / frame.natoms,
                      forces=(-grad - frame.forces) * (HARTREE_EV / BOHR_ANGSTROM))
    if not hamiltonian:
        return errors
    if not hamiltonian_trains_layers and h is not None:
        h, vectors = h.detach(), vectors.detach()
    matrix = model.hamiltonian(frame.species, h, vectors, frame.graph)
    delta = matrix - frame.hamiltonian
    shift = overlap_shift(delta, frame.overlap) if frame.periodic else delta.new_zeros(())
    delta = delta - shift * frame.overlap
    orthogonal = frame.inverse_factor @ matrix @ frame.inverse_factor.T
    levels = torch.linalg.eigvalsh(orthogonal)[:len(frame.levels)]
    level_error = (levels - frame.levels - shift) * HARTREE_EV
    errors.update(hamiltonian=delta * HARTREE_EV, eigenvalues=level_error[:frame.nocc + 1],
                  gap=level_error[frame.nocc] - level_error[frame.nocc - 1], shift=shift * HARTREE_EV)
    if len(levels) > frame.nocc + 1:
        errors["virtuals"] = level_error[frame.nocc + 1:]
    return errors


LEVEL_HUBER_EV = 0.5
"""Level errors beyond this (eV) enter the loss linearly (Huber): early in training a Hamiltonian far from the
target has wild levels in a near-singular overlap, whose squares would swamp every other term."""


def frame_loss(errors: dict[str, torch.Tensor], weights: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of the terms in ``errors`` (mean squares; Huber for the levels), and each one's mean square."""
    terms = {term: (errors[term] ** 2).mean() for term in SURROGATE_TERMS if term in errors}
    optimised = dict(terms)
    for term in LEVEL_TERMS:
        if term in errors:
            error = errors[term].reshape(-1)
            optimised[term] = 2 * torch.nn.functional.huber_loss(error, torch.zeros_like(error),
                                                                 delta=LEVEL_HUBER_EV)
    total = sum(weights[term] * optimised[term] for term in terms if weights.get(term, 0.0) > 0)
    return total, {term: float(value.detach()) for term, value in terms.items()}


def baseline_labels(model: SurrogateModel, frame: DistilledFrame) -> tuple[float, torch.Tensor]:
    """The model's physical baseline energy (Hartree) and forces (N, 3, Hartree/Bohr) on ``frame``."""
    x = frame.positions.clone().double().requires_grad_(True)
    if model.settings.baseline == "none":
        return 0.0, torch.zeros_like(x)
    cell = None if frame.cell is None else frame.cell.double()
    energy = model.baseline_energy(frame.species, frame.graph.vectors(x, cell), frame.graph)
    (grad,) = torch.autograd.grad(energy, x)
    return float(energy.detach()), -grad


def fit_intramolecular(model: SurrogateModel, frames: list[DistilledFrame]) -> None:
    """The ``qspcfw-refit`` baseline's coefficients: least squares of the labels' forces minus q-SPC/Fw's against
    the forces of each intramolecular term (the baseline is linear in its coefficients)."""
    columns, targets = [], []
    for frame in frames:
        x = frame.positions.clone().double().requires_grad_(True)
        cell = None if frame.cell is None else frame.cell.double()
        probe = torch.zeros_like(model.intramolecular_refit, requires_grad=True)
        energy = model.baseline_energy(frame.species, frame.graph.vectors(x, cell), frame.graph, refit=probe)
        plain, terms = torch.autograd.grad(energy, (x, probe), create_graph=True)
        columns.append(torch.stack([-torch.autograd.grad(t, x, retain_graph=True)[0].reshape(-1) for t in terms], 1))
        targets.append((frame.forces.double() + plain).reshape(-1).detach())
    solution = torch.linalg.lstsq(torch.cat(columns).detach(), torch.cat(targets).unsqueeze(1)).solution
    model.intramolecular_refit.copy_(solution.squeeze(1))


def fit_route_references(model: SurrogateModel, frames: list[DistilledFrame], energies) -> list[float]:
    """Add to each route's (periodic or not) reference energies the per-element least-squares fit of ``energies``
    (Hartree, one per frame) over the route's frames whose energy counts (all its frames, if none does); the
    per-atom residuals of the fitted frames."""
    n_el = len(model.settings.elements)
    residuals = []
    for route in (False, True):
        chosen = [(f, e) for f, e in zip(frames, energies) if f.periodic == route]
        chosen = [(f, e) for f, e in chosen if f.counts("energy")] or chosen
        if not chosen:
            continue
        counts = np.array([np.bincount(f.species.numpy(), minlength=n_el) for f, _ in chosen], dtype=float)
        targets = np.array([e for _, e in chosen])
        reference, *_ = np.linalg.lstsq(counts, targets, rcond=None)
        model.reference_energy[int(route)] += torch.as_tensor(reference, dtype=model.reference_energy.dtype)
        residuals += list((targets - counts @ reference) / counts.sum(1))
    return residuals


def fit_reference(model: SurrogateModel, frames: list[DistilledFrame]) -> None:
    """Per-route least-squares reference energies per element (:func:`fit_route_references`); the energy scale
    (Hartree: the larger of the per-atom residual's spread and the force RMS times one Bohr, so that forces start
    at the right size); the mean on-site block of each element. Energies and forces are those the network learns:
    the labels minus the model's physical baseline (with the ``qspcfw-refit`` baseline, first fitted:
    :func:`fit_intramolecular`)."""
    if model.settings.baseline == "qspcfw-refit":
        fit_intramolecular(model, frames)
    baselines = [baseline_labels(model, f) for f in frames]
    model.reference_energy.zero_()
    residuals = fit_route_references(model, frames, [f.energy - energy for f, (energy, _) in zip(frames, baselines)])
    learned = torch.cat([(f.forces.double() - forces).reshape(-1) for f, (_, forces) in zip(frames, baselines)])
    force_rms = float(torch.sqrt(learned.pow(2).mean()))
    model.energy_scale.fill_(max(float(np.std(residuals)), force_rms, 1e-4))
    sums: dict[int, list] = {}
    for frame in frames:
        for a, irreps in model.onsite_irreps(frame.species, frame.hamiltonian).items():
            sums.setdefault(a, []).append(irreps)
    for a, parts in sums.items():
        getattr(model, f"onsite_mean_{a}").copy_(torch.cat(parts).mean(0))


def refit_reference(model: SurrogateModel, frames: list[DistilledFrame]) -> None:
    """Shift the per-route reference energies by the least-squares fit of the labels' residuals against
    ``model``'s energies (a fine-tuning's start on labels with another energy zero)."""
    with torch.no_grad():
        residuals = [f.energy - float(model.energy_and_features(f.species, f.positions, f.cell, f.graph)[0])
                     for f in frames]
    fit_route_references(model, frames, residuals)


class MemberTrainer:
    """Trains member ``index`` of a committee in ``workdir/member<index>``, resumably; from ``start`` (a member's
    state dict) when fine-tuning, else from a random network with fitted reference energies."""

    def __init__(self, config: SurrogateTrainConfig, index: int, frames: list[DistilledFrame], log,
                 start: dict | None = None):
        self.config, self.index, self.log = config, index, log
        self.workdir = member_workdir(config, index)
        seed = config.seed + index
        order = np.random.default_rng(seed).permutation(len(frames))
        nval = int(round(config.validation_fraction * len(frames)))
        self.validation = [frames[i] for i in order[:nval]]
        self.train = [frames[i] for i in order[nval:]]
        torch.manual_seed(seed)
        self.dtype = getattr(torch, config.dtype)
        self.model = SurrogateModel(config.network).to_precision(self.dtype)
        if start is None:
            fit_reference(self.model, self.train)
        else:  # fine-tuning: the weights and fitted buffers of a trained member (its force field alone: the
            self.model.load_state_dict({**self.model.state_dict(), **start})  # Hamiltonian's start afresh)
            self.model.to_precision(self.dtype)
            if config.refit_reference:
                refit_reference(self.model, self.train)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.average = WeightAverage(self.model, config.weight_average) if config.weight_average else None
        steps = config.epochs
        gamma = (config.final_learning_rate / config.learning_rate) ** (1.0 / max(steps - 1, 1))
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma)
        self.history: list[dict] = []
        self.seed = seed
        settings = {k: v for k, v in asdict(config).items() if k not in COMMITTEE_SETTINGS}
        self.fingerprint = {"config": json.loads(json.dumps(settings, default=str)), "member": index,
                            "frames": [f.name for f in frames]}
        if start is not None:  # the start's content, not just init_model's path: a retrained start is another training
            self.fingerprint["start_sha256"] = state_digest(start)

    def run(self) -> SurrogateModel:
        epoch = self._resume()
        while epoch < self.config.epochs:
            start = time.perf_counter()
            weights = dict(self.config.weights)
            if epoch < self.config.level_warmup_epochs:
                weights.update(dict.fromkeys(LEVEL_TERMS, 0.0))
            train = self._epoch(self.train, weights, epoch)
            row = {"epoch": epoch + 1, "seconds": time.perf_counter() - start,
                   **{f"train_{k}": v for k, v in train.items()}}
            if self.validation:
                row.update({f"validation_{k}": v for k, v in self._validate().items()})
            self.scheduler.step()
            self.history.append(row)
            epoch += 1
            self._save(epoch)
            self.log(f"member {self.index} epoch {epoch}/{self.config.epochs}: " + ", ".join(
                f"{k} {v:.3g}" for k, v in row.items() if k.startswith(("train_", "validation_"))))
        return self.model

    def _epoch(self, frames: list[DistilledFrame], weights: dict | None, epoch: int = 0) -> dict[str, float]:
        """Mean squares of each term over ``frames``; with loss ``weights``, an optimisation pass in an order
        drawn from the member's seed and ``epoch`` (so a resumed training takes the steps an uninterrupted one
        would), which skips the force field's terms or the Hamiltonian's where none of them is weighted; without,
        the terms this training can change (with a separate Hamiltonian network, those of the weighted halves)."""
        learn = weights is not None
        weighted = [any((weights or self.config.weights).get(term, 0.0) > 0 for term in terms)
                    for terms in (FORCE_FIELD_TERMS, HAMILTONIAN_TERMS)]
        shared = self.config.network.hamiltonian_network == "shared"
        force_field, hamiltonian = weighted if learn or not shared else (True, True)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        order = np.random.default_rng((self.seed, epoch)).permutation(len(frames)) if learn else range(len(frames))
        self.model.train(learn)
        for count, i in enumerate(order):
            frame = frames[i]
            errors = frame_errors(self.model, frame, learn, self.config.hamiltonian_trains_layers, force_field,
                                  hamiltonian)
            errors = {term: error for term, error in errors.items() if frame.counts(term)}
            loss, terms = frame_loss(errors, {term: weight * frame.factor(term)
                                              for term, weight in (weights or self.config.weights).items()})
            if learn:
                (loss / self.config.batch_frames).backward()
                if (count + 1) % self.config.batch_frames == 0 or count + 1 == len(frames):
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                    if self.average is not None:
                        self.average.update(self.model)
            for term, value in terms.items():
                sums[term] = sums.get(term, 0.0) + value
                counts[term] = counts.get(term, 0) + 1
        return {term: value / counts[term] for term, value in sums.items()}  # mean squares over the frames with it

    def _validate(self) -> dict[str, float]:
        """The mean squares on the validation frames of the weights this member serves."""
        if self.average is None:
            return self._epoch(self.validation, None)
        with self.average.applied(self.model):
            return self._epoch(self.validation, None)

    def _save(self, epoch: int) -> None:
        """The checkpoint: ``model`` holds the weights served (averaged, with ``weight_average``), and then
        ``training_model`` and ``average`` what resuming needs."""
        payload = {"epoch": epoch, "fingerprint": json.dumps(self.fingerprint), "model": self.model.state_dict(),
                   "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                   "history": json.dumps(self.history)}
        if self.average is not None:
            payload.update(model=self.average.averaged_state(self.model), training_model=payload["model"],
                           average=self.average.state_dict())
        with atomic_path(self.workdir / CHECKPOINT) as tmp:
            torch.save(payload, tmp)
        write_json(self.workdir / "loss.json", self.history)

    def _resume(self) -> int:
        path = self.workdir / CHECKPOINT
        # a checkpoint from before starts were fingerprinted resumes on init_model's path alone
        unrecorded = {"start_sha256": self.fingerprint.get("start_sha256")}
        payload = load_checkpoint(path, self.fingerprint, {**LATER_SETTINGS, **unrecorded}, COMMITTEE_SETTINGS)
        if payload is None:
            return 0
        self.model.load_state_dict(payload.get("training_model", payload["model"]))
        if self.average is not None:
            self.average.load_state_dict(payload["average"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.history = json.loads(payload["history"])
        self.log(f"member {self.index}: resuming from {path} at epoch {payload['epoch']}")
        return int(payload["epoch"])


def write_curves(workdir: Path, histories: list[list[dict]]) -> Path:
    """loss.png: every member's training (lines) and validation (dots) mean squares per term."""
    from ..analysis import figure, save_figure

    fig, ax = figure()
    for i, term in enumerate(SURROGATE_TERMS):
        for member, history in enumerate(histories):
            epochs = [row["epoch"] for row in history]
            if history and f"train_{term}" in history[0]:  # a term of a skipped half has no training value
                ax.semilogy(epochs, [max(row[f"train_{term}"], 1e-14) for row in history], color=f"C{i}",
                            alpha=1.0 - 0.25 * member, label=term if member == 0 else None)
            if history and f"validation_{term}" in history[0]:
                ax.semilogy(epochs, [max(row[f"validation_{term}"], 1e-14) for row in history], "o",
                            color=f"C{i}", markersize=2, alpha=1.0 - 0.25 * member)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean square: (eV/atom)², (eV/Å)², eV²")
    ax.legend(fontsize=7, ncols=3)
    ax.set_title("surrogate committee: training (lines), validation (dots)", fontsize=9)
    return save_figure(fig, workdir / "loss.png")


def validation_loss(row: dict, weights: dict) -> float:
    """The loss ``weights`` times the validated mean squares of a training history ``row``."""
    return sum(weight * row[f"validation_{term}"] for term, weight in weights.items() if f"validation_{term}" in row)


def state_digest(state: dict) -> str:
    """SHA-256 of a state dict's names and tensor contents."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def member_workdir(config: SurrogateTrainConfig, k: int) -> Path:
    """Member ``k``'s folder: its :data:`CHECKPOINT` and ``loss.json``."""
    return config.workdir / f"member{k}"


def served_committee(config: SurrogateTrainConfig, payloads: list[dict]) -> Committee:
    """A committee of ``config``'s network whose members hold the weights that member checkpoints ``payloads``
    serve."""
    committee = Committee(config.network, len(payloads), getattr(torch, config.dtype))
    for member, payload in zip(committee.members, payloads):
        member.load_state_dict(payload["model"])
    return committee


def _finished_member(config: SurrogateTrainConfig, k: int) -> dict | None:
    """Member ``k``'s checkpoint if it has all its epochs, else None."""
    path = member_workdir(config, k) / CHECKPOINT
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload if payload["epoch"] >= config.epochs else None


def initial_members(config: SurrogateTrainConfig) -> list[dict]:
    """The member state dicts that fine-tuning starts from ([] without ``init_model``)."""
    if config.init_model is None:
        return []
    model_file = resolve_model(config.init_model)
    if model_file is None:
        raise SettingsError("init_model must be a surrogate model file or 'surrogate', not 'none'")
    committee = Committee.from_file(model_file)
    if config.network.holds_weights_of(committee.settings):
        return [member.state_dict() for member in committee.members]
    hamiltonian_only = not any(config.weights[term] > 0 for term in FORCE_FIELD_TERMS)
    if hamiltonian_only and config.network.holds_force_field_of(committee.settings):
        return [{key: value for key, value in member.state_dict().items() if not key.startswith(HAMILTONIAN_PARTS)}
                for member in committee.members]
    raise ModelError(f"init_model {model_file.path} has other network settings than [surrogate.network]: "
                     f"{committee.settings} (copy them into the config to fine-tune it; a stage that trains only "
                     "a separate Hamiltonian network may change only the Hamiltonian's settings)")


def train_surrogate(config: SurrogateTrainConfig, log=None, member: int | None = None) -> Path:
    """Train every committee member (or only ``member``) and, when all are done, write ``workdir/surrogate.pt``
    (the ``served_members`` of lowest validation loss, or all)."""
    log = log or (lambda msg: print(f"deepks-es train: {msg}", file=sys.stderr, flush=True))
    if member is not None and not 0 <= member < config.members:
        raise SettingsError(f"--member {member}: the committee trains members 0 to {config.members - 1}")
    torch.set_default_dtype(getattr(torch, config.dtype))
    try:
        probe = SurrogateModel(config.network)
        frames = load_frames(config.data, probe, getattr(torch, config.dtype), config.virtual_window,
                             config.data_weights)
        log(f"{len(frames)} frames ({sum(f.periodic for f in frames)} periodic) from "
            f"{', '.join(str(p) for p in config.data)}")
        chosen = range(config.members) if member is None else [member]
        starts = initial_members(config)
        trained = {k: MemberTrainer(config, k, frames, log, starts[k % len(starts)] if starts else None)
                   for k in chosen}
        for trainer in trained.values():
            trainer.run()
    finally:
        torch.set_default_dtype(torch.float64)
    payloads = [_finished_member(config, k) for k in range(config.members)]
    if member is not None and None in payloads:  # others still training: the last one writes the model
        return member_workdir(config, member) / CHECKPOINT
    histories = [json.loads(payload["history"]) for payload in payloads]
    losses = [validation_loss(history[-1], config.weights) for history in histories]
    served = sorted(np.argsort(losses, kind="stable")[:config.served_members or config.members].tolist())
    if len(served) < config.members:
        log(f"serving members {', '.join(map(str, served))} of {config.members} (validation losses "
            f"{', '.join(f'{loss:.3g}' for loss in losses)})")
    committee = served_committee(config, [payloads[k] for k in served])
    committee.provenance = {"data": [str(p) for p in config.data], "frames": len(frames),
                            "config": json.loads(json.dumps(asdict(config), default=str)),
                            "served_members": served, "final_validation": [histories[k][-1] for k in served]}
    write_curves(config.workdir, histories)
    path = config.workdir / MODEL
    committee.save(path)
    return path
