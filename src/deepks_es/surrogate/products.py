"""The equivariant products of the message-passing layers, as a few dense matrix products: the channel-wise
product of node and edge irreps (:class:`DepthwiseTensorProduct`) and the channel-wise product of two node
features of the product basis (:class:`ChannelwiseProduct`).

e3nn's ``TensorProduct`` evaluates one einsum per path on slices of its inputs, and its backward pass fills
and adds a zero tensor per slice: on the CPU that is most of a surrogate step. The same product, with e3nn's
Wigner 3j symbols and normalisation, is here per input irrep one outer product with the edge irreps, one
matrix product with all its paths' Clebsch-Gordan couplings and one with the weights spread over each path's
components. The outputs come grouped by input irrep; :meth:`DepthwiseTensorProduct.to_irreps_out` puts them
in e3nn's layout, best after the sum over edges, on far fewer rows.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn


def coupling(l_1: int, l_2: int, l_out: int) -> torch.Tensor:
    """The (2 l_1 + 1, 2 l_2 + 1, 2 l_out + 1) Clebsch-Gordan coupling of e3nn's component normalisation
    (float64): e3nn's Wigner 3j symbols times sqrt(2 l_out + 1)."""
    return math.sqrt(2 * l_out + 1) * o3.wigner_3j(l_1, l_2, l_out, dtype=torch.float64)


def depthwise_paths(irreps_in: o3.Irreps, irreps_edge: o3.Irreps, wanted: o3.Irreps) -> list[tuple]:
    """The paths (input irrep index, edge irrep index, output irrep) of the channel-wise product, in e3nn's
    instruction order: every coupling of an input and an edge irrep to an irrep among ``wanted``'s."""
    kinds = {ir for _, ir in wanted}
    return [(i, j, ir_out) for i, (_, ir_in) in enumerate(irreps_in) for j, (_, ir_edge) in enumerate(irreps_edge)
            for ir_out in ir_in * ir_edge if ir_out in kinds]


def sorted_outputs(irreps_in: o3.Irreps, paths: list[tuple]) -> tuple[o3.Irreps, tuple[int, ...]]:
    """The output irreps of ``paths`` (one output per path, the input's channels) sorted by irrep, and each
    path's position in them."""
    irreps_out, slot_of_path, _ = o3.Irreps([(irreps_in[i].mul, ir) for i, _, ir in paths]).sort()
    return irreps_out, slot_of_path


def e3nn_tensor_product(irreps_in: o3.Irreps, irreps_edge: o3.Irreps, wanted: o3.Irreps) -> o3.TensorProduct:
    """The e3nn ``TensorProduct`` that :class:`DepthwiseTensorProduct` computes (made in the default dtype, like
    its Wigner 3j symbols), for tests and benchmarks: the surrogate used it before stop 35."""
    paths = depthwise_paths(irreps_in, irreps_edge, wanted)
    irreps_out, slot_of_path = sorted_outputs(irreps_in, paths)
    return o3.TensorProduct(irreps_in, irreps_edge, irreps_out,
                            [(i, j, slot_of_path[n], "uvu", True) for n, (i, j, _) in enumerate(paths)],
                            shared_weights=False, internal_weights=False)


class DepthwiseTensorProduct(nn.Module):
    """Channel-wise ('uvu') tensor product of node irreps ``irreps_in`` with single-channel edge irreps
    ``irreps_edge`` (spherical harmonics) and per-edge weights, keeping the outputs whose irrep is among
    ``wanted``'s: e3nn's ``TensorProduct(irreps_in, irreps_edge, out, instructions, shared_weights=False,
    internal_weights=False)`` with component normalisation, one path per output, outputs sorted by irrep
    (``irreps_out``) and ``weight_numel`` weights per edge (path by path, channel by channel).

    ``forward(x (E, irreps_in.dim), y (E, irreps_edge.dim), weight (E, weight_numel))`` gives (E, irreps_out.dim)
    grouped by input irrep; ``to_irreps_out`` of it (or of a sum of its rows) is e3nn's output. The couplings are
    kept in float64 and used in the inputs' type.
    """

    def __init__(self, irreps_in: o3.Irreps, irreps_edge: o3.Irreps, wanted: o3.Irreps):
        super().__init__()
        if any(mul != 1 for mul, _ in irreps_edge):
            raise ValueError(f"edge irreps must have one channel each, not {irreps_edge}")
        paths = depthwise_paths(irreps_in, irreps_edge, wanted)
        self.irreps_in, self.irreps_edge = o3.Irreps(irreps_in), o3.Irreps(irreps_edge)
        self.irreps_out, slot_of_path = sorted_outputs(irreps_in, paths)
        self.weight_numel = sum(irreps_in[i].mul for i, _, _ in paths)
        first_weight = torch.cumsum(torch.tensor([0] + [irreps_in[i].mul for i, _, _ in paths]), 0).tolist()

        self.groups = []  # (input irrep, its channels, its dimension)
        self.weight_dims = []  # per group: its weights per edge, channels x paths
        weight_order, column_of = [], {}  # column_of: (output slot, index in it) -> column of forward's output
        first_column = 0
        for i, (mul, ir_in) in enumerate(irreps_in):
            mine = [n for n, path in enumerate(paths) if path[0] == i]
            if not mine:
                continue
            width = sum(paths[n][2].dim for n in mine)  # outputs per channel: (path, component)
            couplings = torch.zeros(ir_in.dim, irreps_edge.dim, width, dtype=torch.float64)
            spread = torch.zeros(len(mine), width, dtype=torch.float64)  # (channel, path) weight -> its components
            column = 0
            for p, n in enumerate(mine):
                _, j, ir_out = paths[n]
                couplings[:, irreps_edge.slices()[j], column:column + ir_out.dim] = coupling(
                    ir_in.l, irreps_edge[j].ir.l, ir_out.l)
                spread[p, column:column + ir_out.dim] = 1
                for u in range(mul):
                    for m in range(ir_out.dim):
                        column_of[slot_of_path[n], u * ir_out.dim + m] = first_column + u * width + column + m
                column += ir_out.dim
            g = len(self.groups)
            self.register_buffer(f"coupling_{g}", couplings.reshape(-1, width), persistent=False)
            self.register_buffer(f"spread_{g}", spread, persistent=False)
            self.groups.append((i, mul, ir_in.dim))
            self.weight_dims.append(mul * len(mine))
            weight_order += [first_weight[n] + u for u in range(mul) for n in mine]
            first_column += mul * width
        self.input_dims = [mul * ir.dim for mul, ir in irreps_in]
        self.register_buffer("weight_order", torch.tensor(weight_order), persistent=False)
        self.register_buffer("output_order", torch.tensor(
            [column_of[slot, k] for slot, (mul, ir) in enumerate(self.irreps_out) for k in range(mul * ir.dim)]),
            persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args):
        """Model files written with e3nn's ``TensorProduct`` here (before stop 35) hold its constants: an empty
        weight, an output mask and the Wigner 3j symbols, all of which this product makes itself."""
        for key in [key for key in state_dict if key.startswith(prefix)]:
            name = key[len(prefix):]
            if name in ("weight", "output_mask") or name.startswith("_compiled_main_left_right."):
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        edges = x.shape[0]
        inputs = torch.split(x, self.input_dims, dim=1)
        weights = torch.split(weight.index_select(1, self.weight_order), self.weight_dims, dim=1)
        out = []
        for g, (i, mul, dim) in enumerate(self.groups):
            pairs = inputs[i].reshape(edges, mul, dim, 1) * y.reshape(edges, 1, 1, -1)
            product = pairs.reshape(edges * mul, -1) @ getattr(self, f"coupling_{g}").to(x.dtype)
            spread = weights[g].reshape(edges * mul, -1) @ getattr(self, f"spread_{g}").to(x.dtype)
            out.append((product * spread).view(edges, -1))
        return torch.cat(out, dim=1)

    def to_irreps_out(self, out: torch.Tensor) -> torch.Tensor:
        """:meth:`forward`'s columns (..., irreps_out.dim) in e3nn's ``irreps_out`` layout."""
        return out.index_select(-1, self.output_order)


class ChannelwiseProduct(nn.Module):
    """The channel-wise ('uuu') product of two sets of node features that hold every irrep of ``irreps`` (one
    copy each) in each of ``channels`` channels: (N, channels, irreps.dim) x (N, channels, irreps.dim) ->
    (N, channels, irreps.dim), channel u of the output the sum over Clebsch-Gordan paths p (ir_1 x ir_2 -> ir_3,
    all three in ``irreps``; component normalisation) of w[u, p] CG_p(x_u, y_u), with learned weights w
    initialised as N(0, 1) / sqrt(paths into ir_3). The step of a MACE-like product basis (no element
    dependence). The weights are folded into one (irreps.dim^2, irreps.dim) matrix per channel, so the data
    see one outer product and one batched matrix product, whatever the number of paths.
    """

    def __init__(self, irreps: o3.Irreps, channels: int):
        super().__init__()
        self.irreps = o3.Irreps(irreps)
        if any(mul != 1 for mul, _ in self.irreps):
            raise ValueError(f"channel-wise product irreps must have one copy each, not {irreps}")
        slices, dim = self.irreps.slices(), self.irreps.dim
        paths = [(i, j, k) for i, (_, a) in enumerate(self.irreps) for j, (_, b) in enumerate(self.irreps)
                 for k, (_, c) in enumerate(self.irreps) if c in a * b]
        width = sum(self.irreps[k].ir.dim for _, _, k in paths)
        couplings = torch.zeros(dim, dim, width, dtype=torch.float64)
        spread = torch.zeros(len(paths), width, dtype=torch.float64)  # a path's weight -> its components
        gather = torch.zeros(width, dim, dtype=torch.float64)  # the components -> their output irrep
        column = 0
        for p, (i, j, k) in enumerate(paths):
            a, b, c = (self.irreps[n].ir for n in (i, j, k))
            couplings[slices[i], slices[j], column:column + c.dim] = coupling(a.l, b.l, c.l)
            spread[p, column:column + c.dim] = 1
            gather[column:column + c.dim, slices[k]] = torch.eye(c.dim, dtype=torch.float64)
            column += c.dim
        self.register_buffer("couplings", couplings.reshape(dim * dim, width), persistent=False)
        self.register_buffer("spread", spread, persistent=False)
        self.register_buffer("gather", gather, persistent=False)
        outputs = torch.tensor([k for _, _, k in paths])
        paths_into = torch.bincount(outputs, minlength=len(self.irreps))[outputs]
        self.weight = nn.Parameter(torch.randn(channels, len(paths)) / paths_into.sqrt())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n, channels, dim = x.shape
        scales = self.weight.to(x.dtype) @ self.spread.to(x.dtype)  # (channels, width)
        folded = torch.einsum("pw,uw,wq->upq", self.couplings.to(x.dtype), scales, self.gather.to(x.dtype))
        pairs = (x[..., :, None] * y[..., None, :]).reshape(n, channels, dim * dim)
        return torch.einsum("nup,upq->nuq", pairs, folded)
