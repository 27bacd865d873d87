"""Training configurations of water: clusters cut from liquid-water MD, and small periodic boxes.

The MD is a documented cheap model, not DFT: flexible q-SPC/Fw water
(:class:`FlexibleSPC`, intermolecular terms over every periodic image within 9
Angstrom: boxes of 8 or 16 waters get a first shell within 0.04 Angstrom of a
64-water box's) in a cubic box at 0.997 g/cm^3, Langevin thermostat at
``temperature``, 0.5 fs steps. Snapshots are taken every
``stride`` steps after ``equilibration`` steps; each cluster is the ``n`` molecules
nearest (minimum image, O-O) to a random molecule of a snapshot, made whole around
it. A classical model misses the zero-point spread of real water, so every atom
then gets a Gaussian displacement of ``distortion`` Angstrom ("thermal
distortion"). Periodic boxes are random rigid molecules at the same density with
an O-O distance floor, distorted the same way; liquid boxes are snapshots of the
periodic MD box itself (``md_molecules`` waters, distorted the same way), one MD
trajectory for clusters and liquid boxes alike. Everything is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..constants import AVOGADRO
from ..errors import SettingsError
from ..structure import Structure

WATER_DENSITY = 0.997  # g/cm^3
WATER_MASS_AMU = 18.015
R_OH, ANGLE_HOH = 0.9572, np.radians(104.52)  # gas-phase water geometry, Angstrom / rad


@dataclass(frozen=True)
class SamplingPlan:
    """What ``deepks-es sample`` draws (Angstrom, K, fs).

    Attributes:
        cluster_sizes: molecules per cluster, drawn from this range (inclusive) with the weights of ``size_bias``.
        clusters: number of clusters.
        boxes: number of periodic boxes of ``box_molecules`` random rigid molecules.
        liquid_boxes: number of periodic snapshots of the MD box itself (``md_molecules`` molecules each).
        md_molecules: molecules in the MD box the clusters are cut from.
        temperature: MD temperature.
        equilibration, stride: MD steps (0.5 fs) before the first snapshot and between snapshots.
        clusters_per_snapshot: clusters cut from one snapshot.
        distortion: standard deviation of the per-atom Gaussian displacement.
        size_bias: cluster sizes n are drawn with probability ∝ n^-size_bias (0: uniform); small
            clusters cost little to label, so the default 1 takes more of them.
        seed: random seed for everything.
        source: an MD run instead of the q-SPC/Fw MD (a ``deepks-es run`` directory or an i-PI output prefix
            whose positions trajectory holds O, H, H, ... molecules): liquid boxes are its logged frames,
            evenly spaced from MD step ``skip`` on, and clusters are cut from them; ``md_molecules``,
            ``temperature``, ``equilibration`` and ``stride`` are then the run's. The frames of a model's own
            MD are what an active-learning round labels (e.g. the surrogate's, with ``distortion`` 0).
        skip: the run's MD steps left out (equilibration) with ``source``.
    """

    cluster_sizes: tuple[int, int] = (1, 8)
    clusters: int = 100
    boxes: int = 0
    liquid_boxes: int = 0
    box_molecules: int = 2
    md_molecules: int = 64
    temperature: float = 300.0
    equilibration: int = 2000
    stride: int = 100
    clusters_per_snapshot: int = 4
    distortion: float = 0.04
    size_bias: float = 1.0
    seed: int = 0
    source: str | None = None
    skip: int = 0

    def __post_init__(self):
        lo, hi = self.cluster_sizes
        if self.clusters and (not 1 <= lo <= hi or (self.source is None and hi > self.md_molecules // 2)):
            raise SettingsError(f"cluster sizes {lo}-{hi} must satisfy 1 <= min <= max <= md_molecules/2 "
                                f"({self.md_molecules // 2})")
        counts = (self.clusters, self.boxes, self.liquid_boxes)
        if min(counts) < 0 or sum(counts) == 0 or self.box_molecules < 1 or self.md_molecules < 2:
            raise SettingsError("need clusters, boxes and liquid boxes >= 0, at least one of them, box molecules "
                                ">= 1 and MD molecules >= 2")
        if self.distortion < 0 or self.clusters_per_snapshot < 1 or self.stride < 1 or self.equilibration < 0:
            raise SettingsError("need distortion >= 0, clusters per snapshot >= 1, stride >= 1, equilibration >= 0")


def box_length(nmol: int, density: float = WATER_DENSITY) -> float:
    """Cubic box edge (Angstrom) holding ``nmol`` waters at ``density`` g/cm^3."""
    volume_cm3 = nmol * WATER_MASS_AMU / AVOGADRO / density
    return (volume_cm3 * 1e24) ** (1.0 / 3.0)


def _random_molecule(rng: np.random.Generator, oxygen: np.ndarray) -> np.ndarray:
    """(3, 3) O, H, H positions of a randomly oriented rigid water."""
    local = np.array([[0.0, 0.0, 0.0],
                      [R_OH * np.sin(ANGLE_HOH / 2), 0.0, R_OH * np.cos(ANGLE_HOH / 2)],
                      [-R_OH * np.sin(ANGLE_HOH / 2), 0.0, R_OH * np.cos(ANGLE_HOH / 2)]])
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation = q * np.sign(np.diag(r))
    return oxygen + local @ rotation.T


def random_water_box(nmol: int, rng: np.random.Generator, min_oo: float = 2.5,
                     min_atoms: float = 1.5) -> tuple[np.ndarray, float]:
    """(3 nmol, 3) positions (O H H per molecule) of random rigid waters in a periodic cube, and its edge.

    Molecules are placed one by one; a trial is kept when its O is ``min_oo`` and every atom ``min_atoms``
    Angstrom (minimum image) from the atoms already placed.
    """
    length = box_length(nmol)
    placed = np.zeros((0, 3))
    for _ in range(100000):
        if len(placed) == 3 * nmol:
            return placed, length
        trial = _random_molecule(rng, rng.uniform(0.0, length, 3))
        delta = placed[None, :, :] - trial[:, None, :]
        distance = np.linalg.norm(delta - length * np.round(delta / length), axis=-1)  # (3, natoms placed)
        if np.all(distance >= min_atoms) and np.all(distance[0, 0::3] >= min_oo):
            placed = np.concatenate([placed, trial])
    raise SettingsError(f"could not place {nmol} waters with O-O >= {min_oo} and atoms >= {min_atoms} Angstrom apart")


class FlexibleSPC(Calculator):
    """q-SPC/Fw flexible water (Paesani et al., J. Chem. Phys. 125, 184507, 2006) as an ASE calculator: the terms
    of :func:`deepks_es.surrogate.baseline.qspcfw_energy` (harmonic O-H bonds and H-O-H angle; intermolecular
    damped-shifted-force Coulomb and O-O Lennard-Jones, both shifted to zero energy and force at ``cutoff``,
    Angstrom) over every periodic image within the cutoff, so a box smaller than twice the cutoff has the
    liquid's interactions, not only those of its nearest images. Energies and forces by torch autograd, in eV
    and eV/Angstrom.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, cutoff: float = 9.0):
        super().__init__()
        self.cutoff = cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        energy, forces = self.energy_forces(Structure.from_ase(self.atoms), self.cutoff)
        self.results = {"energy": energy, "forces": forces}

    @staticmethod
    def energy_forces(structure: Structure, cutoff: float) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/Angstrom) of the waters of ``structure`` (Bohr), intermolecular terms within
        ``cutoff`` Angstrom."""
        import torch

        from ..constants import ANGSTROM_BOHR, HARTREE_EV
        from ..surrogate.baseline import qspcfw_energy
        from ..surrogate.graph import build_graph

        graph = build_graph(structure, cutoff * ANGSTROM_BOHR)
        x = torch.tensor(structure.positions, dtype=torch.float64, requires_grad=True)
        cell = None if structure.cell is None else torch.tensor(structure.cell, dtype=torch.float64)
        vectors = graph.vectors(x, cell)
        oxygen = torch.tensor([s == "O" for s in structure.symbols])
        energy = qspcfw_energy(oxygen, vectors, graph.src, graph.dst, graph.shifts, graph.cutoff) * HARTREE_EV
        (grad,) = torch.autograd.grad(energy, x)
        return float(energy.detach()), -grad.numpy() * ANGSTROM_BOHR


def run_snapshots(plan: SamplingPlan, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` frames (3 nmol, 3) of the MD run ``plan.source``, evenly spaced from step ``plan.skip`` on, and
    its cell (rows, Angstrom)."""
    from ..analysis import locate_run

    frames = locate_run(plan.source).position_frames(plan.skip)
    if len(frames) < count:
        raise SettingsError(f"{plan.source} logged {len(frames)} frame(s) from step {plan.skip} on; {count} wanted")
    symbols = frames[0].get_chemical_symbols()
    nmol = len(symbols) // 3
    if symbols != ["O", "H", "H"] * nmol or not frames[0].pbc.all():
        raise SettingsError(f"{plan.source}: sampling a run needs periodic frames of O, H, H, ... molecules")
    if plan.clusters and plan.cluster_sizes[1] > nmol // 2:
        raise SettingsError(f"cluster sizes up to {plan.cluster_sizes[1]} need at most {nmol // 2} (half the "
                            f"{nmol} waters of {plan.source})")
    chosen = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i].positions.copy() for i in chosen], np.asarray(frames[0].cell)


def md_snapshots(plan: SamplingPlan, count: int, rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` snapshots (3 nmol, 3) of a q-SPC/Fw liquid-water Langevin MD (0.5 fs steps), and the cubic cell
    (rows, Angstrom)."""
    from ase import Atoms, units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    nmol = plan.md_molecules
    positions, length = random_water_box(nmol, rng, min_oo=2.6)
    atoms = Atoms("OH2" * nmol, positions=positions, cell=[length] * 3, pbc=True)
    atoms.calc = FlexibleSPC()
    thermalize_momenta(atoms, plan.temperature, rng=rng)
    md = Langevin(atoms, 0.5 * units.fs, temperature_K=plan.temperature, friction=0.01 / units.fs, fixcm=False,
                  rng=rng)  # 100 fs thermostat time
    md.run(plan.equilibration)
    snapshots = []
    for _ in range(count):
        md.run(plan.stride)
        snapshots.append(atoms.positions.copy())
    return snapshots, np.eye(3) * length


def sample(plan: SamplingPlan) -> list[Structure]:
    """Clusters, then random boxes, then liquid boxes, as :class:`Structure` (Bohr), per the plan."""
    from ..constants import ANGSTROM_BOHR

    rng = np.random.default_rng(plan.seed)
    symbols = ("O", "H", "H")
    frames: list[Structure] = []

    def distorted(xyz: np.ndarray) -> np.ndarray:
        return (xyz + rng.normal(scale=plan.distortion, size=xyz.shape)) * ANGSTROM_BOHR

    nsnap = -(-plan.clusters // plan.clusters_per_snapshot)
    count, snapshots, cell = nsnap + plan.liquid_boxes, [], None
    if count:
        snapshots, cell = md_snapshots(plan, count, rng) if plan.source is None else run_snapshots(plan, count)
    md_molecules = len(snapshots[0]) // 3 if snapshots else plan.md_molecules
    if plan.clusters:
        sizes = np.arange(plan.cluster_sizes[0], plan.cluster_sizes[1] + 1)
        weight = sizes.astype(float) ** -plan.size_bias
        probability = weight / weight.sum()
        for i in range(plan.clusters):
            nmol = int(rng.choice(sizes, p=probability))
            centre = int(rng.integers(md_molecules))
            snapshot = Structure(symbols * md_molecules, snapshots[i // plan.clusters_per_snapshot], cell)  # Å
            frames.append(Structure(symbols * nmol, distorted(snapshot.water_cluster(centre, nmol).positions)))
    for _ in range(plan.boxes):
        xyz, box = random_water_box(plan.box_molecules, rng)
        frames.append(Structure(symbols * plan.box_molecules, distorted(xyz), np.eye(3) * box * ANGSTROM_BOHR))
    for xyz in snapshots[nsnap:]:
        frames.append(Structure(symbols * md_molecules, distorted(xyz), cell * ANGSTROM_BOHR))
    return frames
