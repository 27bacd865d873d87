"""``deepks-es train``: the iterative DeePKS-ES training scheme.

Phase 0 trains on the base functional's densities stored by ``deepks-es label``.
Each later phase first runs the SCF with the current model on every frame (so the
densities, H_base[rho] and descriptors are the model's own, which makes it
self-consistent), leaves out frames whose SCF did not converge, and retrains from
the current weights. Checkpoints (model, optimiser, history) are written every
``checkpoint_every`` epochs and at the end of each phase; a rerun resumes from the
last one, and finished SCF frames are kept as ``phase<N>/scf/<frame>.npz``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..analysis import figure, save_figure, write_csv
from ..errors import DeePKSError, SettingsError
from ..fileio import atomic_path, write_json
from ..model.network import CorrectionModel
from .checkpoint import load_checkpoint
from .config import TrainConfig, read_toml
from .dataset import Frame, read_datasets
from .frames import LOSS_TERMS, TrainingFrame, frame_losses, prepare_frame, weighted_loss
from .label import LabelSettings, energies_comparable
from .records import base_part, record_levels_ev, scf_record

CHECKPOINT = "checkpoint.pt"
SCALE_FLOOR = 0.1  # input scales >= this fraction of the element's largest descriptor spread


def fit_baselines(frames: list[Frame], elements: tuple[str, ...]) -> dict:
    """Baselines fitted on training frames: per-element energy offsets (target - base, Hartree; frames with
    comparable energies only, see :func:`.label.energies_comparable`) and the constant level shifts of a
    scissor correction (eV). With a single composition (water) only the per-molecule sum of the offsets is
    determined."""
    frames = [f for f in frames if f.target["converged"] and f.base["converged"]]
    clusters = [f for f in frames if energies_comparable(f.structure)] or frames
    counts = np.array([[f.structure.symbols.count(el) for el in elements] for f in clusters], dtype=float)
    delta = np.array([float(f.target["energy"] - f.base["energy"]) for f in clusters])
    offsets = np.linalg.lstsq(counts, delta, rcond=None)[0]

    levels = [(record_levels_ev(f.target), record_levels_ev(f.base)) for f in frames]
    shifts = {key: float(np.mean(np.concatenate([np.atleast_1d(t[key] - b[key]) for t, b in levels])))
              for key in ("homo", "lumo", "gap", "occupied")}
    return {"atom_energy_ha": dict(zip(elements, offsets.tolist())), "shift_ev": shifts, "frames": len(frames)}


class LossTotals:
    """Running means of the loss terms over frames (a term counts only the frames that have it)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value.detach())
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {key: self.sums[key] / self.counts[key] for key in LOSS_TERMS if key in self.sums}


class Trainer:
    """Runs (or resumes) the training described by a :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig, log=print):
        self.config = config
        self.log = log
        self.workdir = Path(config.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.frames, attrs = read_datasets(config.train)
        self.settings = LabelSettings.from_attrs(attrs).at_periodic_cutoff(config.periodic_ke_cutoff)
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(self.frames))
        nval = int(round(config.validation_fraction * len(self.frames)))
        if len(self.frames) - nval < 1:
            raise DeePKSError(f"{', '.join(map(str, config.train))}: no frames left to train on")
        self.validation_names = {self.frames[i].name for i in order[:nval]}
        elements = sorted({s for f in self.frames for s in f.structure.symbols})
        torch.manual_seed(config.seed)  # the initial weights
        self.model = CorrectionModel(elements, hidden=config.hidden, base_xc=self.settings.base.xc,
                                     basis=self.settings.base.basis, pseudo=self.settings.base.pseudo)
        self.history: list[dict] = []
        single = len(config.train) == 1  # a one-file training keeps the fingerprint it always had
        self.fingerprint = {"train": str(config.train[0]) if single else [str(p) for p in config.train],
                            "train_bytes": (Path(config.train[0]).stat().st_size if single
                                            else [Path(p).stat().st_size for p in config.train]),
                            "hidden": list(config.hidden), "inputs": self.model.inputs, "seed": config.seed,
                            "validation_fraction": config.validation_fraction}
        if config.periodic_ke_cutoff is not None:  # the SCF phases' cutoff (absent: the labels', as before)
            self.fingerprint["periodic_ke_cutoff"] = self.settings.periodic_ke_cutoff
        if config.train_weights:  # absent without per-file factors, as before
            self.fingerprint["train_weights"] = config.train_weights

    # -- the scheme -------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train all phases; returns the path of the final model (``workdir/model.pt``)."""
        state = self._load_checkpoint()
        for phase in range(state["phase"], self.config.iterations):
            epochs = self.config.epochs if phase == 0 else self.config.refine_epochs
            resumed = phase == state["phase"] and state["epoch"] > 0
            first_epoch = state["epoch"] if resumed else 0
            if first_epoch < epochs:
                base = self._phase_records(phase)
                train, validation = self._prepare(base)
                if not train:
                    raise DeePKSError(f"phase {phase}: no training frame has a converged SCF; the model of phase "
                                      f"{phase - 1} is in {self.workdir / f'phase{phase - 1}'}")
                if phase == 0 and first_epoch == 0:
                    self._initialise(train)
                self._train(phase, first_epoch, epochs, train, validation,
                            state.get("optimizer") if resumed else None)
            phase_model = self.workdir / f"phase{phase}" / "model.pt"
            if first_epoch < epochs or not phase_model.is_file():
                phase_model.parent.mkdir(exist_ok=True)
                self.model.save(phase_model)
        final = self.workdir / "model.pt"
        self.model.save(final)
        return final

    def _phase_records(self, phase: int) -> dict[str, dict]:
        """Base-functional records at the densities this phase trains on: labels, or an SCF with the model."""
        if phase == 0:
            return {f.name: f.base for f in self.frames}
        scf_dir = self.workdir / f"phase{phase}" / "scf"
        scf_dir.mkdir(parents=True, exist_ok=True)
        previous = self._phase_dms(phase - 1)
        from ..engines import DeePKSEngine

        records, failed = {}, []
        for frame in self.frames:
            if not frame.target["converged"]:
                continue
            path = scf_dir / f"{frame.name}.npz"
            if not path.is_file():
                _, settings = self.settings.for_structure(frame.structure)
                settings = replace(settings, max_cycle=self.config.scf_max_cycle, second_order=False)
                record = base_part(scf_record(DeePKSEngine(self.model, settings), frame.structure,
                                              dm0=previous.get(frame.name), nvirt=self.settings.nvirt))
                with atomic_path(path) as tmp, open(tmp, "wb") as handle:
                    np.savez(handle, **record)
            with np.load(path) as data:
                records[frame.name] = {k: data[k] for k in data.files}
            if not records[frame.name]["converged"]:
                failed.append(frame.name)
        self.log(f"phase {phase}: SCF with the model on {len(self.frames)} frames, "
                 f"{len(failed)} unconverged{': ' + ', '.join(failed) if failed else ''}")
        return records

    def _phase_dms(self, phase: int) -> dict[str, np.ndarray]:
        if phase == 0:
            return {f.name: f.base["dm"] for f in self.frames}
        scf_dir = self.workdir / f"phase{phase}" / "scf"
        dms = {}
        for f in self.frames:
            if (scf_dir / f"{f.name}.npz").is_file():
                with np.load(scf_dir / f"{f.name}.npz") as data:
                    dms[f.name] = data["dm"]
        return dms

    def _prepare(self, base: dict[str, dict]) -> tuple[list[TrainingFrame], list[TrainingFrame]]:
        train, validation, skipped = [], [], []
        for frame in self.frames:
            record = base.get(frame.name)
            if record is None or not (record["converged"] and frame.target["converged"]):
                skipped.append(frame.name)
                continue
            _, settings = self.settings.for_structure(frame.structure)
            prepared = prepare_frame(frame.name, frame.structure, record, frame.target, self.model, settings,
                                     self.config.train_weights.get(str(frame.source)))
            (validation if frame.name in self.validation_names else train).append(prepared)
        if skipped:
            self.log(f"left out (SCF not converged): {', '.join(skipped)}")
        return train, validation

    def _initialise(self, train: list[TrainingFrame]) -> None:
        """Input normalisation from the training descriptors (with a floor, see SCALE_FLOOR); per-element offsets
        from the energy baseline."""
        baselines = fit_baselines([f for f in self.frames if f.name not in self.validation_names],
                                  self.model.elements)
        with torch.no_grad():
            for i, _ in enumerate(self.model.elements):
                rows = self.model.features(torch.cat([f.descriptors[f.element_index == i] for f in train]))
                if len(rows) == 0:
                    raise DeePKSError(f"no {self.model.elements[i]} atom in the training frames")
                spread = rows.std(0, unbiased=False)
                self.model.input_shift[i] = rows.mean(0)
                # floor: descriptors that barely vary (near-empty blocks) must not be blown up, or the
                # density changes of the model's own SCF become huge input changes
                self.model.input_scale[i] = spread.clamp_min(SCALE_FLOOR * float(spread.max()))
                self.model.atom_energy[i] = baselines["atom_energy_ha"][self.model.elements[i]]
            for net in self.model.nets.values():  # start from E_delta = offsets only
                net[-1].weight.mul_(0.01)
                net[-1].bias.zero_()
        self.model.provenance = {"kind": "deepks-es train", "baselines": baselines,
                                 "train_data": [str(p) for p in self.config.train],
                                 "validation_frames": sorted(self.validation_names),
                                 "weights": self.config.weights, "train_weights": self.config.train_weights,
                                 "iterations": self.config.iterations,
                                 "periodic_ke_cutoff": self.settings.periodic_ke_cutoff, "seed": self.config.seed}

    def _train(self, phase, first_epoch, epochs, train, validation, optimizer_state) -> None:
        config = self.config
        optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        gamma = (config.final_learning_rate / config.learning_rate) ** (1.0 / epochs)
        for epoch in range(first_epoch, epochs):
            rng = np.random.default_rng([config.seed, phase, epoch])  # same batches whether resumed or not
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * gamma**epoch
            totals = LossTotals()
            order = rng.permutation(len(train))
            for start in range(0, len(order), config.batch_frames):
                batch = [train[i] for i in order[start:start + config.batch_frames]]
                optimizer.zero_grad()
                for frame in batch:
                    total, losses = weighted_loss(self.model, frame, config.weights)
                    (total / len(batch)).backward()
                    totals.add(losses)
                optimizer.step()
            row = {"phase": phase, "epoch": epoch + 1, "step": len(self.history) + 1,
                   **{f"train_{k}": v for k, v in totals.means().items()}}
            last = epoch + 1 == epochs
            if validation and ((epoch + 1) % config.checkpoint_every == 0 or last):
                row.update({f"validation_{k}": v for k, v in self.mean_losses(validation).items()})
            self.history.append(row)
            if (epoch + 1) % config.checkpoint_every == 0 or last:
                self._save_checkpoint(phase, epoch + 1, optimizer)
                self.log(f"phase {phase} epoch {epoch + 1}/{epochs} (train/validation): " + ", ".join(
                    f"{k} {row.get(f'train_{k}', np.nan):.3g}/{row.get(f'validation_{k}', np.nan):.3g}"
                    for k in LOSS_TERMS))

    def mean_losses(self, frames: list[TrainingFrame]) -> dict[str, float]:
        """Mean of each loss term over ``frames`` (no parameter update)."""
        totals = LossTotals()
        for frame in frames:
            totals.add(frame_losses(self.model, frame))
        return totals.means()

    # -- checkpoints and loss curves ------------------------------------------------------------------
    def _save_checkpoint(self, phase: int, epoch: int, optimizer) -> None:
        payload = {"phase": phase, "epoch": epoch, "fingerprint": json.dumps(self.fingerprint),
                   "model": self.model.state_dict(),
                   "optimizer": optimizer.state_dict(), "history": json.dumps(self.history),
                   "provenance": json.dumps(self.model.provenance)}
        with atomic_path(self.workdir / CHECKPOINT) as tmp:
            torch.save(payload, tmp)
        self._write_curves()

    def _load_checkpoint(self) -> dict:
        path = self.workdir / CHECKPOINT
        payload = load_checkpoint(path, self.fingerprint)
        if payload is None:
            return {"phase": 0, "epoch": 0}
        self.model.load_state_dict(payload["model"])
        self.model.provenance = json.loads(payload["provenance"])
        self.history = json.loads(payload["history"])
        self.log(f"resuming from {path}: phase {payload['phase']}, epoch {payload['epoch']}")
        return {"phase": payload["phase"], "epoch": payload["epoch"], "optimizer": payload["optimizer"]}

    def _write_curves(self) -> None:
        keys = sorted({k for row in self.history for k in row})
        columns = [np.array([row.get(k, np.nan) for row in self.history], dtype=float) for k in keys]
        write_csv(self.workdir / "loss.csv", keys, columns)
        write_json(self.workdir / "loss.json", self.history)
        fig, ax = figure()
        step = np.array([row["step"] for row in self.history])
        for i, term in enumerate(LOSS_TERMS):
            train = np.array([row.get(f"train_{term}", np.nan) for row in self.history])
            ax.semilogy(step, np.maximum(train, 1e-12), color=f"C{i}", label=term)
            val = [(row["step"], row[f"validation_{term}"]) for row in self.history if f"validation_{term}" in row]
            if val:
                ax.semilogy(*zip(*val), "o", color=f"C{i}", markersize=3)
        for row, nxt in zip(self.history, self.history[1:]):
            if nxt["phase"] != row["phase"]:
                ax.axvline(row["step"] + 0.5, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel("epoch (all phases; dashed: SCF with the model)")
        ax.set_ylabel("loss: (eV/atom)², (eV/Å)², eV²; density 0–1")
        ax.legend(fontsize=7, ncols=3)
        ax.set_title("training (lines) and validation (dots)", fontsize=9)
        save_figure(fig, self.workdir / "loss.png")


def read_train_config(config_path: str | os.PathLike):
    """The config of a training TOML: a :class:`~.surrogate.SurrogateTrainConfig` for one with a ``[surrogate]``
    table (which must be its only table), else a :class:`TrainConfig`."""
    path = Path(config_path)
    raw = read_toml(path)
    if "surrogate" not in raw:
        return TrainConfig.from_raw(raw, path)
    from .surrogate import SurrogateTrainConfig

    others = sorted(set(raw) - {"surrogate"})
    if others:
        raise SettingsError(f"{path}: a surrogate config holds only the [surrogate] table; found also "
                            f"{', '.join(others)}")
    return SurrogateTrainConfig.from_table(raw["surrogate"], path.parent, str(path))


def train(config_path: str, log=None, member: int | None = None, seed: int | None = None) -> Path:
    """Train from a TOML config; returns the final model path. A config with a ``[surrogate]`` table trains a
    surrogate committee (:mod:`.surrogate`; ``member`` trains only that member), any other a DeePKS-ES model.
    ``seed`` trains the same recipe with another seed (initial weights, validation split, batches) in the config's
    working directory with ``_seed<seed>`` appended, so trainings of several seeds sit side by side."""
    log = log or (lambda msg: print(f"deepks-es train: {msg}", file=sys.stderr, flush=True))
    config = read_train_config(config_path)
    if seed is not None:
        config = replace(config, seed=seed, workdir=config.workdir.with_name(f"{config.workdir.name}_seed{seed}"))
    if isinstance(config, TrainConfig):
        if member is not None:
            raise SettingsError("--member is for surrogate committees (a config with a [surrogate] table)")
        return Trainer(config, log=log).run()
    from .surrogate import train_surrogate

    return train_surrogate(config, log, member)
