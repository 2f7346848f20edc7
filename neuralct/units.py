"""Physical constants and the reduced units used inside models (one source of truth)."""

__all__ = ["BOLTZMANN_KJ_PER_MOL_K", "kT_kj_per_mol", "TIME_UNIT_PS"]

#: Boltzmann constant in kJ/(mol K) (CODATA 2018, times Avogadro's number), as in OpenMM.
BOLTZMANN_KJ_PER_MOL_K = 0.00831446261815324

#: Time unit of the reduced units inside a model, in ps: learned frequencies are in rad/ps.
TIME_UNIT_PS = 1.0


def kT_kj_per_mol(temperature_kelvin: float) -> float:
    """Thermal energy kT in kJ/mol at ``temperature_kelvin``."""
    if not temperature_kelvin > 0:
        raise ValueError(f"temperature must be positive, got {temperature_kelvin} K")
    return BOLTZMANN_KJ_PER_MOL_K * temperature_kelvin
