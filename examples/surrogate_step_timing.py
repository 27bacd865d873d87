"""Wall time of the shipped surrogate (or of each of ``--models``, in one run) on the shipped 64-water box: building
the engine, an MD force step (member 0: energy, forces, virial), a step with levels and DOS (the Hamiltonian head
and its eigensolve), and, side by side, the message-passing product of one interaction layer of the first model
(forward and backward on the box's edges) as e3nn's TensorProduct computes it and as the surrogate does
(``surrogate.products``).

    python examples/surrogate_step_timing.py [--threads N] [--steps N] [--models surrogate,OTHER.pt]
"""

import argparse
import time
from importlib import resources

import numpy as np
import torch
from e3nn import o3

from deepks_es.engines import EngineSpec, make_engine
from deepks_es.structure import read_structure
from deepks_es.surrogate.graph import build_graph
from deepks_es.surrogate.products import e3nn_tensor_product


def seconds_per_call(function, calls: int) -> float:
    """Mean wall time of ``calls`` calls of ``function`` after one warm-up call."""
    function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--steps", type=int, default=6, help="timed force steps (and products) after one warm-up")
parser.add_argument("--models", default="surrogate", help="comma-separated surrogate models (default: the shipped)")
args = parser.parse_args()

box = read_structure(str(resources.files("deepks_es") / "data" / "water_liquid_64.xyz"))
models, engines = args.models.split(","), []
for model in models:
    start = time.perf_counter()
    engines.append(make_engine(EngineSpec(model=model, threads=args.threads, committee_every=10**6)))
    print(f"{model}: engine built: {time.perf_counter() - start:.1f} s")
for model, engine in zip(models, engines):
    force_step = seconds_per_call(lambda: engine.compute(box, observables=False), args.steps)
    start = time.perf_counter()
    engine.compute(box, observables=True)
    print(f"{model}: force step {force_step:.3f} s, step with levels and DOS {time.perf_counter() - start:.2f} s "
          f"({args.threads} threads)")

layer = engines[0].committee.members[0].layers[0]
product = layer.product
reference = e3nn_tensor_product(product.irreps_in, product.irreps_edge, layer.gate.irreps_in)
graph = build_graph(box, engines[0].committee.settings.cutoff)
vectors = graph.vectors(torch.tensor(np.array(box.positions)), torch.tensor(np.array(box.cell))).float()
edges = o3.spherical_harmonics(product.irreps_edge, vectors, normalize=True, normalization="component")
generator = torch.Generator().manual_seed(0)
nodes = torch.randn(box.natoms, product.irreps_in.dim, generator=generator, requires_grad=True)
weights = torch.randn(len(graph.src), product.weight_numel, generator=generator, requires_grad=True)


def messages(tensor_product, to_irreps_out=lambda summed: summed):
    """Forward and backward of one layer's summed messages (the product, then the sum over each atom's edges)."""
    out = tensor_product(nodes[graph.dst], edges, weights)
    summed = to_irreps_out(out.new_zeros(box.natoms, out.shape[1]).index_add_(0, graph.src, out))
    torch.autograd.grad(summed.square().sum(), (nodes, weights))


e3nn_time = seconds_per_call(lambda: messages(reference), args.steps)
ours = seconds_per_call(lambda: messages(product, product.to_irreps_out), args.steps)
print(f"layer-0 messages, forward + backward, {len(graph.src)} edges: e3nn TensorProduct {e3nn_time * 1e3:.0f} ms, "
      f"surrogate.products {ours * 1e3:.0f} ms ({e3nn_time / ours:.1f}x)")
