"""The surrogate tier: an E(3)-equivariant network (e3nn) with an energy/force head and a Hamiltonian head,
distilled from DeePKS-ES; no SCF. :mod:`.basis` (AO blocks as irreps), :mod:`.graph` (neighbour lists),
:mod:`.network` (the model), :mod:`.committee` (members, model file), :mod:`.train` (distillation)."""
