"""The surrogate network (e3nn): message passing on the atomic graph, an energy head (a sum of atomic
energies and pair energies; the explicit pair term gives the stiff O-H bond a direct route) and a Hamiltonian head (on-site and pair blocks of the AO Kohn-Sham matrix, folded over lattice
images into the Γ-point matrix). Forces and the virial come from autograd of the energy.

Everything is in atomic units; vectors enter e3nn in the (y, z, x) frame of :mod:`.basis`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace

import e3nn
import torch
from e3nn import o3
from e3nn.nn import Gate
from torch import nn

from .baseline import BASELINES, INTRAMOLECULAR_TERMS, WATER_BASELINES, qspcfw_energy
from .basis import E3NN_FROM_XYZ, ao_count, block_irreps, element_shells
from .graph import Graph
from .products import ChannelwiseProduct, DepthwiseTensorProduct


@contextmanager
def fx_codegen():
    """Build e3nn modules with plain torch.fx code (no TorchScript), restoring e3nn's defaults after: measured on
    round 3 of the surrogate (64-water box, 2 threads) a committee builds in 21 s instead of 31 s and a force step
    takes 0.76 s instead of 0.86 s."""
    saved = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(jit_script_fx=False)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(**saved)


HAMILTONIAN_NETWORKS = ("shared", "separate")
HAMILTONIAN_SETTINGS = ("hamiltonian_cutoff", "pair_features", "compact_features", "two_centre", "hamiltonian_hidden")
"""The settings that shape only the Hamiltonian's network and head (with ``hamiltonian_network = "separate"``)."""
HAMILTONIAN_PARTS = ("hamiltonian_embed.", "hamiltonian_layers.", "pair_radial.", "atom_linear.", "atom_compact.",
                     "atom_product.", "pair_scalars.", "pair_out.", "onsite_out.", "scalar_index", "channel_index",
                     "two_centre_index")
"""State-dict key prefixes of the Hamiltonian's own network and head (the on-site means and the AO transforms,
fixed by the basis, are not among them)."""

ROUTES = ("cluster", "periodic")
"""Energy routes: PySCF's molecular and periodic total energies differ by a constant per atom, so each route
has its own reference energies."""


@dataclass(frozen=True)
class SurrogateSettings:
    """The network's shape (Bohr for lengths).

    Attributes:
        elements: chemical symbols the model knows.
        basis, pseudo: the AO basis and pseudopotential of the Hamiltonian it predicts.
        cutoff: message-passing cutoff.
        hamiltonian_cutoff: pair blocks beyond it are zero.
        hidden: node irreps of the interaction layers.
        pair_features: irreps per atom that enter the pair and on-site blocks (l <= 4, both parities).
        compact_features: the irreps whose products with themselves make the higher l of ``pair_features``.
        two_centre: radial channels of the two-centre (Slater-Koster-like) part of a pair block, per l.
        layers: interaction layers.
        radial: Bessel radial functions.
        num_neighbors: typical neighbour count within ``cutoff`` (message normalisation).
        baseline: the physical energy the network learns on top of (:data:`~.baseline.BASELINES`): ``"qspcfw"``,
            q-SPC/Fw water on the graph within ``cutoff`` (:mod:`.baseline`); ``"qspcfw-refit"``, the same with
            its intramolecular part refitted to the training forces (the ``intramolecular_refit`` buffer); or
            ``"none"``.
        message_envelope: the messages' radial weights carry :func:`envelope` of r / ``cutoff``, so the
            energy is smooth where a pair crosses the cutoff. Without it (model files written before this
            setting: surrogate rounds 0-2) the radial MLP's biases give each pair a finite message at the
            cutoff, and the energy jumps (~2 meV for one O-O pair of round 2) as pairs cross it: an MD's
            conserved energy drifts.
        correlation: body order of each layer's node update: 1 keeps the summed messages m_i (two-body in
            the neighbours), ν > 1 adds the products of m_i with itself up to ν factors (a MACE-like recursive
            product basis, :class:`ProductBasis`), so one layer sees (ν + 1)-body terms. Model files written
            before this setting (surrogate rounds 0-3) have 1.
        product_channels: channels of the product basis (unused with ``correlation`` 1).
        hamiltonian_network: ``"shared"``, the Hamiltonian head reads the node irreps of the energy's interaction
            layers (one network, as WANDER); ``"separate"``, it reads those of interaction layers of its own (the
            same shape), so the energy and force terms of the loss train one network and the Hamiltonian and
            level terms the other, and a force-only step runs only the first. Model files written before this
            setting (surrogate rounds 0-4) are shared.
        hamiltonian_hidden: node irreps of a separate Hamiltonian network's interaction layers (None: ``hidden``).
    """

    elements: tuple[str, ...] = ("H", "O")
    basis: str = "gth-dzvp"
    pseudo: str = "gth-pbe"
    cutoff: float = 8.0
    hamiltonian_cutoff: float = 11.0
    hidden: str = "32x0e+8x0o+16x1o+8x1e+8x2e+4x2o"
    pair_features: str = "16x0e+8x0o+8x1o+8x1e+8x2e+8x2o+4x3o+4x3e+4x4e+2x4o"
    compact_features: str = "8x0e+4x1o+4x1e+4x2e+4x2o"
    two_centre: int = 16
    layers: int = 2
    radial: int = 8
    num_neighbors: float = 40.0
    baseline: str = "none"
    message_envelope: bool = True
    correlation: int = 3
    product_channels: int = 8
    hamiltonian_network: str = "shared"
    hamiltonian_hidden: str | None = None

    def __post_init__(self):
        if self.correlation < 1 or self.product_channels < 1:
            raise ValueError(f"surrogate correlation and product_channels must be >= 1, not {self.correlation} "
                             f"and {self.product_channels}")
        if self.hamiltonian_network not in HAMILTONIAN_NETWORKS:
            raise ValueError(f"surrogate hamiltonian_network must be one of {', '.join(HAMILTONIAN_NETWORKS)}, "
                             f"not {self.hamiltonian_network!r}")
        if self.hamiltonian_hidden is not None and self.hamiltonian_network != "separate":
            raise ValueError("surrogate hamiltonian_hidden needs hamiltonian_network = \"separate\"")
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown surrogate baseline {self.baseline!r}; known: {', '.join(BASELINES)}")
        if self.baseline in WATER_BASELINES and set(self.elements) != {"H", "O"}:
            raise ValueError("the q-SPC/Fw baseline is for water: elements must be H and O")

    def holds_weights_of(self, other: SurrogateSettings) -> bool:
        """Whether a network of these settings has the parameters of one of ``other``'s (a warm start): the
        same settings but ``message_envelope`` (no parameter) and, without a product basis,
        ``product_channels``."""
        unused = {"message_envelope": self.message_envelope}
        if self.correlation == 1:
            unused["product_channels"] = self.product_channels
        return replace(other, **unused) == self

    def holds_force_field_of(self, other: SurrogateSettings) -> bool:
        """Whether a network of these settings has the force field of one of ``other``'s, both with a separate
        Hamiltonian network: the same settings but those of the Hamiltonian (:data:`HAMILTONIAN_SETTINGS`)."""
        hamiltonian = {name: getattr(self, name) for name in HAMILTONIAN_SETTINGS}
        return (self.hamiltonian_network == other.hamiltonian_network == "separate"
                and replace(other, **hamiltonian).holds_weights_of(self))

    def as_dict(self) -> dict:
        return {**asdict(self), "elements": list(self.elements)}

    @classmethod
    def from_dict(cls, raw: dict) -> SurrogateSettings:
        """From :meth:`as_dict`. A model file written before ``message_envelope`` existed has no envelope, one
        written before ``correlation`` existed has correlation 1, one before ``hamiltonian_network`` a shared one."""
        return cls(**{"message_envelope": False, "correlation": 1, "hamiltonian_network": "shared", **raw,
                      "elements": tuple(raw["elements"])})


def envelope(x: torch.Tensor, p: int = 6) -> torch.Tensor:
    """Smooth cutoff of reduced distance x: 1 at 0, zero with its first two derivatives at 1."""
    value = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x**(p + 1) - p * (p + 1) / 2 * x**(p + 2)
    return torch.where(x < 1, value, torch.zeros_like(x))


class RadialBasis(nn.Module):
    """Bessel functions sin(n pi r / rc) / r times :func:`envelope`: (E,) -> (E, n)."""

    def __init__(self, cutoff: float, n: int):
        super().__init__()
        self.cutoff = cutoff
        self.register_buffer("frequencies", math.pi * torch.arange(1, n + 1) / cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r[:, None]
        return math.sqrt(2 / self.cutoff) * torch.sin(self.frequencies * r) / r * envelope(r / self.cutoff)


def radial_mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, 32), nn.SiLU(), nn.Linear(32, n_out))


def scatter_sum(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    return values.new_zeros((size, values.shape[1])).index_add_(0, index, values)


PRODUCT_IRREPS = o3.Irreps("0e+0o+1o+1e+2e+2o")
"""The irreps of each channel of the product basis."""


class ProductBasis(nn.Module):
    """Powers of node irreps, a MACE-like recursive product basis: m -> W sum_{k=2..ν} A_k with c = W' m in
    ``channels`` channels of :data:`PRODUCT_IRREPS`, A_1 = c and A_k = :class:`ChannelwiseProduct` (A_{k-1}, c),
    each A_k cut to :data:`PRODUCT_IRREPS` (l <= 2)."""

    def __init__(self, irreps: o3.Irreps, channels: int, correlation: int):
        super().__init__()
        self.channels = channels
        compact = o3.Irreps([(channels, ir) for _, ir in PRODUCT_IRREPS])
        self.down = o3.Linear(irreps, compact)
        self.products = nn.ModuleList(ChannelwiseProduct(PRODUCT_IRREPS, channels) for _ in range(correlation - 1))
        self.up = o3.Linear(compact, irreps)
        # e3nn's layout of ``compact`` (irrep by irrep, channel by channel) -> (channel, irrep component)
        starts = [channels * sl.start for sl in PRODUCT_IRREPS.slices()]
        order = [start + u * ir.dim + k for u in range(channels)
                 for start, (_, ir) in zip(starts, PRODUCT_IRREPS) for k in range(ir.dim)]
        self.register_buffer("to_channels", torch.tensor(order), persistent=False)
        self.register_buffer("from_channels", torch.argsort(self.to_channels), persistent=False)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        n = m.shape[0]
        c = self.down(m).index_select(1, self.to_channels).view(n, self.channels, PRODUCT_IRREPS.dim)
        power, total = c, torch.zeros_like(c)
        for product in self.products:
            power = product(power, c)
            total = total + power
        return self.up(total.reshape(n, -1).index_select(1, self.from_channels))


class Interaction(nn.Module):
    """One message-passing layer: m_i = W sum_j TP(h_j, Y(r_ij); R(r_ij)) / sqrt(n), then
    h_i <- gate(m_i + P(m_i) + W' h_i) with P the :class:`ProductBasis` of ``correlation`` > 1."""

    def __init__(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps, irreps_sh: o3.Irreps, n_radial: int,
                 num_neighbors: float, product_channels: int, correlation: int):
        super().__init__()
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
        self.gate = Gate(scalars, [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
                         o3.Irreps(f"{gated.num_irreps}x0e"), [torch.sigmoid], gated)
        self.product = DepthwiseTensorProduct(irreps_in, irreps_sh, self.gate.irreps_in)
        self.radial = radial_mlp(n_radial, self.product.weight_numel)
        self.linear = o3.Linear(self.product.irreps_out, self.gate.irreps_in)
        self.skip = o3.Linear(irreps_in, self.gate.irreps_in)
        self.basis = ProductBasis(self.gate.irreps_in, product_channels, correlation) if correlation > 1 else None
        self.norm = 1.0 / math.sqrt(num_neighbors)

    def forward(self, h, sh, radial, src, dst, smooth=None):
        """``smooth`` (E,): a factor of each pair's radial weights (the cutoff envelope), or None."""
        weights = self.radial(radial)
        if smooth is not None:
            weights = weights * smooth[:, None]
        messages = self.product.to_irreps_out(scatter_sum(self.product(h[dst], sh, weights), src, h.shape[0]))
        m = self.norm * self.linear(messages)
        if self.basis is not None:
            m = m + self.basis(m)
        return self.gate(m + self.skip(h))


class SurrogateModel(nn.Module):
    """Energy (Hartree) and Γ-point Kohn-Sham matrix (Hartree, PySCF AO order) of a structure of known
    elements, from its positions (Bohr), cell (rows, Bohr) and :class:`Graph` within the Hamiltonian cutoff.

    Buffers ``reference_energy`` (route, element), ``energy_scale`` and ``onsite_mean_<element>`` (the mean on-site
    block as irreps) are set from the training data.
    """

    def __init__(self, settings: SurrogateSettings = SurrogateSettings()):
        super().__init__()
        with fx_codegen():
            self._build(settings)

    def _build(self, settings: SurrogateSettings) -> None:
        self.settings = settings
        s = settings
        n_el = len(s.elements)
        self.shells = [element_shells(el, s.basis, s.pseudo) for el in s.elements]
        self.register_buffer("ao_counts", torch.tensor([ao_count(sh) for sh in self.shells]))
        self.register_buffer("reference_energy", torch.zeros(len(ROUTES), n_el, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.tensor(0.01, dtype=torch.float64))
        if s.baseline == "qspcfw-refit":  # eV per unit term, fitted with the reference energies
            self.register_buffer("intramolecular_refit", torch.zeros(INTRAMOLECULAR_TERMS, dtype=torch.float64))
        hidden = o3.Irreps(s.hidden)
        self.sh_nodes = o3.Irreps.spherical_harmonics(2)
        self.sh_pairs = o3.Irreps.spherical_harmonics(4)
        self.radial = RadialBasis(s.cutoff, s.radial)
        self.embed, self.layers = self._interaction_layers(hidden)
        read = hidden  # the node irreps the Hamiltonian head reads
        if s.hamiltonian_network == "separate":
            read = o3.Irreps(s.hamiltonian_hidden or s.hidden)
            self.hamiltonian_embed, self.hamiltonian_layers = self._interaction_layers(read)
        self.energy_head = nn.Sequential(o3.Linear(hidden, o3.Irreps("16x0e")), nn.SiLU(), nn.Linear(16, 1))
        self.pair_energy = nn.Sequential(nn.Linear(s.radial + 2 * n_el, 32), nn.SiLU(), nn.Linear(32, 1))
        # Hamiltonian head: per-atom irreps up to l = 4 of both parities, per-pair scalars from the radial
        # basis and both atoms' scalars; a pair block mixes (scalars x Y(r_ij)) with both atoms' irreps scaled
        # by pair scalars, on-site blocks come from the atom's irreps
        pair = o3.Irreps(s.pair_features)
        self.pair_radial = RadialBasis(s.hamiltonian_cutoff, s.radial)
        self.atom_linear = o3.Linear(read, pair)
        compact = o3.Irreps(s.compact_features)
        self.atom_compact = o3.Linear(read, compact)
        self.atom_product = o3.FullyConnectedTensorProduct(compact, compact, pair)
        n_scalars = read.count("0e")
        self.register_buffer("scalar_index", torch.cat([torch.arange(sl.start, sl.stop) for (mul, ir), sl in
                                                        zip(read, read.slices()) if ir == o3.Irrep("0e")]))
        self.register_buffer("channel_index", torch.repeat_interleave(
            torch.arange(pair.num_irreps), torch.tensor([ir.dim for mul, ir in pair for _ in range(mul)])))
        n_two_centre = s.two_centre
        self.pair_scalars = nn.Sequential(nn.Linear(s.radial + 2 * n_scalars, 64), nn.SiLU(),
                                          nn.Linear(64, n_two_centre + 2 * pair.num_irreps))
        self.n_two_centre = n_two_centre
        two_centre = o3.Irreps("+".join(f"{n_two_centre}x{ir}" for _, ir in self.sh_pairs))
        self.register_buffer("two_centre_index", torch.repeat_interleave(torch.arange(self.sh_pairs.lmax + 1),
                                                                         torch.tensor([2 * l + 1 for l in range(5)])))
        edge_irreps = two_centre + pair + pair
        blocks = {(a, b): block_irreps(self.shells[a], self.shells[b]) for a in range(n_el) for b in range(n_el)}
        self.pair_out = nn.ModuleDict({f"{a}_{b}": o3.Linear(edge_irreps, o3.Irreps(blocks[a, b].irreps))
                                       for a, b in blocks})
        self.onsite_out = nn.ModuleDict({str(a): o3.Linear(pair, o3.Irreps(blocks[a, a].irreps)) for a in range(n_el)})
        for (a, b), block in blocks.items():
            self.register_buffer(f"transform_{a}_{b}", torch.as_tensor(block.transform))
        for a in range(n_el):  # the mean on-site block of each element (set from the training data)
            self.register_buffer(f"onsite_mean_{a}", torch.zeros(len(blocks[a, a].transform)))

    def _interaction_layers(self, hidden: o3.Irreps) -> tuple[o3.Linear, nn.ModuleList]:
        """A network's species embedding and its interaction layers."""
        s = self.settings
        embed = o3.Linear(o3.Irreps(f"{len(s.elements)}x0e"), hidden)
        layers = nn.ModuleList(Interaction(hidden, hidden, self.sh_nodes, s.radial, s.num_neighbors,
                                           s.product_channels, s.correlation) for _ in range(s.layers))
        return embed, layers

    def to_precision(self, dtype: torch.dtype) -> SurrogateModel:
        """The network in ``dtype``, its energy buffers kept in float64 (energies accumulate in float64)."""
        self.to(dtype)
        for name in ("reference_energy", "energy_scale", "intramolecular_refit"):
            if hasattr(self, name):
                getattr(self, name).data = getattr(self, name).double()
        return self

    def species(self, symbols) -> torch.Tensor:
        """Element indices of ``symbols``; an element the model does not know is a ValueError."""
        index = {el: i for i, el in enumerate(self.settings.elements)}
        unknown = sorted(set(symbols) - set(index))
        if unknown:
            raise ValueError(f"the surrogate knows {', '.join(self.settings.elements)}, not {', '.join(unknown)}")
        return torch.tensor([index[s] for s in symbols])

    def _neighbours(self, species, vectors, graph: Graph) -> dict[str, torch.Tensor]:
        """What the interaction layers take from pair ``vectors`` (E, 3) in the (y, z, x) frame: the species'
        one-hot rows, and of the pairs within the cutoff their atoms, spherical harmonics, radial basis and
        envelope."""
        lengths = vectors.norm(dim=1)
        near = lengths < self.settings.cutoff
        r = lengths[near]
        return {"onehot": nn.functional.one_hot(species, len(self.settings.elements)).to(vectors.dtype),
                "src": graph.src[near], "dst": graph.dst[near],
                "sh": o3.spherical_harmonics(self.sh_nodes, vectors[near], normalize=True, normalization="component"),
                "radial": self.radial(r), "smooth": envelope(r / self.settings.cutoff)}

    def _propagate(self, embed: o3.Linear, layers: nn.ModuleList, pairs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Node irreps after a network's interaction layers, from :meth:`_neighbours`."""
        smooth = pairs["smooth"] if self.settings.message_envelope else None
        h = embed(pairs["onehot"])
        for layer in layers:
            h = layer(h, pairs["sh"], pairs["radial"], pairs["src"], pairs["dst"], smooth)
        return h

    def node_features(self, species, vectors, graph: Graph):
        """Node irreps after the (energy's) interaction layers, and the pair energies (Hartree / energy scale) of
        the pairs within the cutoff, from pair ``vectors`` (E, 3) in the (y, z, x) frame."""
        pairs = self._neighbours(species, vectors, graph)
        onehot, src, dst = pairs["onehot"], pairs["src"], pairs["dst"]
        pair = self.pair_energy(torch.cat([pairs["radial"], onehot[src], onehot[dst]], dim=1)).squeeze(-1)
        return self._propagate(self.embed, self.layers, pairs), 0.5 * pair * pairs["smooth"]

    def hamiltonian_features(self, species, h, vectors, graph: Graph) -> torch.Tensor:
        """The node irreps the Hamiltonian head reads: ``h`` (the energy's) with a shared network, else those of
        the Hamiltonian's own interaction layers."""
        if self.settings.hamiltonian_network == "shared":
            return h
        return self._propagate(self.hamiltonian_embed, self.hamiltonian_layers,
                               self._neighbours(species, vectors, graph))

    def energy(self, species, h, pair, periodic: bool) -> torch.Tensor:
        """Total energy (Hartree): atomic and pair energies plus the route's reference energies."""
        body = self.energy_head(h).squeeze(-1).double().sum() + pair.double().sum()
        return body * self.energy_scale + self.reference_energy[int(periodic), species].sum()

    @staticmethod
    def pair_vectors(positions, cell, graph: Graph) -> torch.Tensor:
        """(E, 3) the vectors of the pairs of ``graph`` (Bohr) in e3nn's (y, z, x) frame."""
        return graph.vectors(positions, cell)[:, E3NN_FROM_XYZ]

    def energy_and_features(self, species, positions, cell, graph: Graph):
        """(energy, node irreps, pair vectors in the (y, z, x) frame) for ``positions`` (N, 3) and ``cell``
        (3, 3 or None), both differentiable: what :meth:`hamiltonian` takes."""
        vectors = self.pair_vectors(positions, cell, graph)
        h, pair = self.node_features(species, vectors, graph)
        energy = self.energy(species, h, pair, cell is not None) + self.baseline_energy(species, vectors, graph)
        return energy, h, vectors

    def baseline_energy(self, species, vectors, graph: Graph, refit: torch.Tensor | None = None) -> torch.Tensor:
        """The physical baseline's energy (Hartree, float64) from the pair ``vectors`` (E, 3) of ``graph``;
        ``refit`` stands in for the ``qspcfw-refit`` coefficients (e.g. to fit them)."""
        if self.settings.baseline == "none":
            return torch.zeros((), dtype=torch.float64)
        oxygen = species == self.settings.elements.index("O")
        if refit is None:
            refit = getattr(self, "intramolecular_refit", None)
        return qspcfw_energy(oxygen, vectors, graph.src, graph.dst, graph.shifts, self.settings.cutoff, refit)

    def forward(self, species, positions, cell, graph: Graph, hamiltonian: bool = True):
        """(energy, H or None) for ``positions`` (N, 3) and ``cell`` (3, 3 or None), both differentiable."""
        energy, h, vectors = self.energy_and_features(species, positions, cell, graph)
        return energy, (self.hamiltonian(species, h, vectors, graph) if hamiltonian else None)

    def ao_offsets(self, species) -> torch.Tensor:
        counts = self.ao_counts[species]
        return torch.cumsum(counts, 0) - counts

    def hamiltonian(self, species, h, vectors, graph: Graph) -> torch.Tensor:
        """The Γ-point Kohn-Sham matrix (nao, nao): on-site blocks plus pair blocks summed over images, from the
        energy's node irreps ``h`` and the pair ``vectors`` of :meth:`energy_and_features` (with a separate
        Hamiltonian network ``h`` is not read: None will do, with :meth:`pair_vectors`)."""
        h = self.hamiltonian_features(species, h, vectors, graph)
        offsets, counts = self.ao_offsets(species), self.ao_counts[species]
        nao = int(counts.sum())
        matrix = h.new_zeros(nao * nao)
        compact = self.atom_compact(h)
        atom = self.atom_linear(h) + self.atom_product(compact, compact)
        lengths = vectors.norm(dim=1)
        sh = o3.spherical_harmonics(self.sh_pairs, vectors, normalize=True, normalization="component")
        scalars = h[:, self.scalar_index]
        pair_scalars = self.pair_scalars(torch.cat([self.pair_radial(lengths), scalars[graph.src],
                                                    scalars[graph.dst]], dim=1))
        pair_scalars = pair_scalars * envelope(lengths / graph.cutoff)[:, None]
        k = self.n_two_centre
        two_centre = pair_scalars[:, :k, None] * sh[:, None, :]  # (E, k, 25), to (E, sum_l k (2l+1)) by l
        two_centre = torch.cat([two_centre[:, :, self.two_centre_index == l].reshape(len(sh), -1)
                                for l in range(self.sh_pairs.lmax + 1)], dim=1)
        n_irreps = int(self.channel_index.max()) + 1
        scale_i = pair_scalars[:, k:k + n_irreps][:, self.channel_index]
        scale_j = pair_scalars[:, k + n_irreps:][:, self.channel_index]
        edge = torch.cat([two_centre, atom[graph.src] * scale_i, atom[graph.dst] * scale_j], dim=1)
        n_el = len(self.settings.elements)
        for a in range(n_el):
            atoms = torch.nonzero(species == a).squeeze(1)
            onsite = self.onsite_out[str(a)](atom[atoms]) + getattr(self, f"onsite_mean_{a}")
            self._add_blocks(matrix, nao, onsite, a, a, atoms, atoms, offsets)
            for b in range(n_el):
                edges = torch.nonzero((species[graph.src] == a) & (species[graph.dst] == b)).squeeze(1)
                blocks = self.pair_out[f"{a}_{b}"](edge[edges])
                self._add_blocks(matrix, nao, blocks, a, b, graph.src[edges], graph.dst[edges], offsets)
        matrix = matrix.view(nao, nao)
        return 0.5 * (matrix + matrix.T)

    def onsite_irreps(self, species, matrix: torch.Tensor) -> dict[int, torch.Tensor]:
        """{element: (n_atoms, dim)} the on-site blocks of an AO ``matrix`` as irreps (the inverse of the head)."""
        offsets, out = self.ao_offsets(species), {}
        for a in range(len(self.settings.elements)):
            n = int(self.ao_counts[a])
            blocks = [matrix[o:o + n, o:o + n].reshape(-1) for o in offsets[species == a].tolist()]
            if blocks:
                out[a] = torch.stack(blocks) @ getattr(self, f"transform_{a}_{a}").to(matrix.dtype).T
        return out

    def _add_blocks(self, matrix, nao, irreps, a, b, rows, cols, offsets):
        """Add the (a, b) blocks given as ``irreps`` (n, dim) at atoms ``rows`` x ``cols`` into ``matrix``."""
        transform = getattr(self, f"transform_{a}_{b}").to(irreps.dtype)
        na, nb = int(self.ao_counts[a]), int(self.ao_counts[b])
        blocks = irreps @ transform
        row = offsets[rows][:, None] + torch.arange(na)
        col = offsets[cols][:, None] + torch.arange(nb)
        index = (row[:, :, None] * nao + col[:, None, :]).reshape(-1)
        matrix.index_add_(0, index, blocks.reshape(-1).to(matrix.dtype))
