"""deepks-es: HSE06-quality electronic structure of water at PBE cost.

A neural correction (DeePKS-ES) to a PBE Kohn-Sham Hamiltonian, evaluated
self-consistently with PySCF and served to MD engines.
"""

__version__ = "0.1.0"
