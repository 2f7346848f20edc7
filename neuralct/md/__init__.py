"""Molecular dynamics with OpenMM: systems, simulation with checkpoints, energies as torch functions.

Submodules import OpenMM only when used: ``systems`` (building OpenMM Systems), ``simulate``
(Langevin MD writing positions and on-step velocities), ``energy`` (OpenMM energies and forces
as a torch autograd Function), ``platform`` (choosing the fastest OpenMM platform), ``netcdf``
(the trajectory files).
"""

__all__: list[str] = []
