"""Molecular dynamics with OpenMM: systems, simulation with checkpoints, energies as torch functions.

Submodules import OpenMM only when used: ``systems`` (building OpenMM Systems), ``simulate``
(Langevin MD writing positions and on-step velocities), ``replicas`` (replicas as parallel worker
processes), ``energy`` (OpenMM energies and forces as a torch autograd Function), ``platform``
(choosing the fastest OpenMM platform). The trajectory files are :mod:`neuralct.data.netcdf`'s.
"""

__all__: list[str] = []
