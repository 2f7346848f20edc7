"""Choosing the OpenMM platform: by name, or the fastest for a system by a short timed probe."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from ..errors import NeuralCTError, first_line

__all__ = ["available_platforms", "platform_properties", "make_context", "fastest_platform", "automatic_platform"]


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms this installation can use (e.g. Reference, CPU, CUDA)."""
    import openmm as mm

    return [mm.Platform.getPlatform(i).getName() for i in range(mm.Platform.getNumPlatforms())]


def platform_properties(name: str, threads: int | None) -> dict[str, str]:
    """Platform properties for ``threads`` CPU threads (only the CPU platform takes them)."""
    return {"Threads": str(threads)} if name == "CPU" and threads else {}


def make_context(system: Any, integrator: Any, platform: str, threads: int | None = None) -> Any:
    """An ``openmm.Context`` on the named platform.

    Raises
    ------
    NeuralCTError
        If the platform does not exist here or cannot run the system.
    """
    names = available_platforms()
    if platform not in names:
        raise NeuralCTError(
            f"OpenMM platform {platform!r} is not available here; use auto or one of {', '.join(names)}"
        )
    try:
        return _context(system, integrator, platform, threads)
    except Exception as exc:
        raise NeuralCTError(f"OpenMM platform {platform} cannot run this system: {first_line(exc)}") from None


def _context(system: Any, integrator: Any, platform: str, threads: int | None) -> Any:
    """``openmm.Context`` on an available platform; raises OpenMM's own error where it cannot run ``system``."""
    import openmm as mm

    properties = platform_properties(platform, threads)
    return mm.Context(system, integrator, mm.Platform.getPlatformByName(platform), properties)


def fastest_platform(
    system: Any,
    positions: Any,
    make_integrator: Callable[[], Any],
    *,
    threads: int | None = None,
    probe_seconds: float = 0.3,
    platforms: Sequence[str] | None = None,
) -> tuple[str, dict[str, float]]:
    """Time a few steps of ``system`` on every platform (or on ``platforms``) and return the fastest.

    Each probe starts from ``positions`` minimised for at most 50 iterations, so that a structure
    prepared elsewhere (a clash, a box fresh from the solvation) does not blow up in it.

    Parameters
    ----------
    system : openmm.System
        The system to run.
    positions : array, shape=(n_atoms, 3)
        Positions in nm to start the probe from.
    make_integrator : callable
        Returns a fresh integrator with the run's settings.
    threads : int, optional
        CPU threads for the CPU platform.
    probe_seconds : float
        Wall time spent stepping on each platform.
    platforms : sequence of str, optional
        The platforms to probe (default: every one this installation has).

    Returns
    -------
    name : str
        The fastest platform.
    steps_per_second : dict
        Measured steps per wall-clock second of every platform that ran.

    Raises
    ------
    NeuralCTError
        Where no platform ran the probe to finite positions, naming each platform's reason.
    """
    import numpy as np
    import openmm as mm

    rates: dict[str, float] = {}
    failures: dict[str, str] = {}
    for name in available_platforms() if platforms is None else platforms:
        try:
            context = _context(system, make_integrator(), name, threads)
        except Exception as exc:
            failures[name] = first_line(exc)
            continue
        context.setPositions(positions)
        integrator = context.getIntegrator()
        try:
            mm.LocalEnergyMinimizer.minimize(context, 10.0, 50)
            integrator.step(10)
            steps, start = 0, time.perf_counter()
            chunk = 10
            while (elapsed := time.perf_counter() - start) < probe_seconds:
                integrator.step(chunk)
                context.getState(getEnergy=True)  # forces a sync on asynchronous platforms
                steps += chunk
                chunk = min(chunk * 2, 5000)
            # A probe that blew up runs fast: a platform whose positions are not finite did not run the system.
            if not np.isfinite(context.getState(getPositions=True).getPositions(asNumpy=True)._value).all():
                failures[name] = "positions not finite after the probe's steps"
                continue
        except Exception as exc:  # OpenMM's error of a run blowing up
            failures[name] = first_line(exc)
            continue
        finally:
            del context
        rates[name] = steps / elapsed
    if not rates:
        reasons = "; ".join(f"{name}: {why}" for name, why in failures.items())
        raise NeuralCTError(f"no OpenMM platform could run this system ({reasons})")
    return max(rates, key=rates.get), rates


def automatic_platform(
    md_system: Any, temperature: float, friction_per_ps: float, timestep_fs: float, threads: int | None
) -> tuple[str, dict[str, float] | None, str]:
    """The platform ``auto`` picks for ``md_system``: the fastest of a probe (:func:`fastest_platform`) of every
    platform, but the Reference one for a periodic system (PME: it runs a box of water 15 times slower than the
    CPU platform), which takes the CPU platform unprobed where that is the only other.

    The probe's Langevin integrator (``temperature`` K, ``friction_per_ps``) steps at most 2 fs
    (``timestep_fs`` if shorter): the speed barely depends on the step. Where no platform runs the
    probe, the CPU platform for a periodic system and the Reference one otherwise are taken, and the
    run itself says what fails.

    Returns
    -------
    name : str
        The platform.
    steps_per_second : dict or None
        The probe's measured rates (None without a probe).
    choice : str
        Why, in words for the summary.
    """
    import openmm as mm

    available = available_platforms()
    candidates = [name for name in available if name != "Reference"] if md_system.periodic else available
    if md_system.periodic and candidates == ["CPU"]:
        return "CPU", None, "auto: the CPU platform for a periodic system (PME), the only one but Reference"

    def integrator() -> Any:
        return mm.LangevinMiddleIntegrator(temperature, friction_per_ps, min(timestep_fs, 2.0) / 1000.0)

    try:
        name, rates = fastest_platform(
            md_system.system, md_system.positions, integrator, threads=threads, platforms=candidates
        )
    except NeuralCTError as exc:
        fallback = "CPU" if md_system.periodic and "CPU" in available else "Reference"
        return fallback, None, f"auto: the {fallback} platform ({exc})"
    measured = ", ".join(f"{platform} {rate:.0f}" for platform, rate in sorted(rates.items()))
    return name, rates, f"auto: the fastest of a probe of the system (steps/s: {measured})"
