"""Wall time of the shipped surrogate on the shipped 64-water box: building the engine, an MD force step
(member 0: energy, forces, virial) and a step with levels and DOS (the Hamiltonian head and its eigensolve).

    python examples/surrogate_step_timing.py [--threads N] [--steps N]
"""

import argparse
import time
from importlib import resources

from deepks_es.engines import EngineSpec, make_engine
from deepks_es.structure import read_structure

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--steps", type=int, default=6, help="timed force steps after one warm-up step")
args = parser.parse_args()

box = read_structure(str(resources.files("deepks_es") / "data" / "water_liquid_64.xyz"))
start = time.perf_counter()
engine = make_engine(EngineSpec(model="surrogate", threads=args.threads, committee_every=10**6))
print(f"engine built: {time.perf_counter() - start:.1f} s")
engine.compute(box, observables=False)
start = time.perf_counter()
for _ in range(args.steps):
    engine.compute(box, observables=False)
print(f"force step: {(time.perf_counter() - start) / args.steps:.3f} s ({args.threads} threads)")
start = time.perf_counter()
engine.compute(box, observables=True)
print(f"step with levels and DOS: {time.perf_counter() - start:.2f} s")
