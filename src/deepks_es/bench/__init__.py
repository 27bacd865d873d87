"""``deepks-es bench``: side-by-side timings of PBE, DeePKS-ES and HSE06 steps, MD segments, memory."""
