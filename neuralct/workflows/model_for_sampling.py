"""Whether a model has what makes exact sampling through it pay, read from what the model and its training files record.

Benchmark B4 found two things a model needs for latent HMC and the flow's global (independence)
moves to pay on a molecule: training data without bond constraints (data with constrained X-H
bonds have rigid bonds that the unconstrained target of ``neuralct sample`` does not have), and
training until the validation loss stopped falling. :func:`check_model_for_sampling` says which
of these a model lacks and, where neither the model nor the files it names tell, that this is not
known. Which atoms a model covers is not among them: a model of the heavy atoms, its hydrogens
placed by internal coordinates, gave latent HMC more effective samples per evaluation than a model
of all atoms on a few nanoseconds of data (B4, "Defaults against tuned settings"); only a model of all
atoms allows global moves (``--method auto`` says so).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..model.transformation import NeuralCanonicalTransformation
from ..sampling.targets import SamplingTarget

__all__ = [
    "LINE_PREFIX",
    "UNCONSTRAINED_SIMULATION",
    "Finding",
    "check_model_for_sampling",
    "recorded_constraints",
    "split_by_constraints",
    "advice_lines",
]

#: Prefix of the lines that say what a model lacks.
LINE_PREFIX = "model: "

#: How to simulate training data for sampling: without bond constraints, at a step they allow.
UNCONSTRAINED_SIMULATION = "`neuralct simulate ... --constraints none --timestep-fs 1`"

NOTE = (
    "what makes latent HMC and the flow's global moves pay (benchmark B4): a model trained on data without bond "
    "constraints, until its validation loss stopped falling; lacks names those this model lacks; "
    "not known: neither the model nor the files it names record it (an older model, files moved, data from "
    "other engines)"
)


@dataclass(frozen=True)
class Finding:
    """One thing checked of a model: whether it has it, what was found, and what would give it.

    Attributes
    ----------
    status : {"has", "lacks", "not known", "not applicable"}
    detail : str
        What was found (or why it is not known).
    advice : str
        What would give the model what it lacks (empty unless ``status`` is ``"lacks"``).
    """

    status: str
    detail: str
    advice: str = ""

    def as_dict(self) -> dict[str, str]:
        """The finding for summary.json (``advice`` only where the model lacks it)."""
        return {key: value for key, value in asdict(self).items() if value}


def check_model_for_sampling(model: NeuralCanonicalTransformation, target: SamplingTarget) -> dict[str, Any]:
    """Which of the two things that make sampling through a model pay the model lacks.

    Checked, from the model's metadata, the target and the files the metadata names:

    - ``unconstrained_data``: its training trajectories were simulated without bond constraints,
      as recorded by ``neuralct simulate`` in the ``summary.json`` beside them
      (:func:`recorded_constraints`);
    - ``training_length``: its validation loss had stopped falling when training stopped (the
      lowest validation loss is not at the last record of ``metadata["history"]``).

    Toy models have no constraints (``not applicable``).

    Parameters
    ----------
    model : NeuralCanonicalTransformation
        The model to sample through.
    target : SamplingTarget
        What it samples (:mod:`neuralct.sampling.targets`): a molecule or a toy.

    Returns
    -------
    dict
        ``lacks``: the names of the findings above the model lacks; ``checked``: each finding's
        :meth:`Finding.as_dict`; ``note``: what the findings are. The record ``neuralct sample``
        writes to summary.json as ``model_for_sampling``.
    """
    checked = {
        "unconstrained_data": _unconstrained_data(model, target),
        "training_length": _training_length(model),
    }
    return {
        "lacks": [name for name, finding in checked.items() if finding.status == "lacks"],
        "checked": {name: finding.as_dict() for name, finding in checked.items()},
        "note": NOTE,
    }


def advice_lines(record: dict[str, Any]) -> list[str]:
    """One line per finding a model lacks, from the record of :func:`check_model_for_sampling`.

    Findings that are not known give no line (summary.json records them).
    """
    return [
        f"{LINE_PREFIX}{record['checked'][name]['detail']}: {record['checked'][name]['advice']}"
        for name in record["lacks"]
    ]


def recorded_constraints(trajectory: str | Path) -> tuple[str | None, str]:
    """The bond constraints a trajectory was simulated with, as ``neuralct simulate`` records them.

    ``system_settings.constraints`` of :func:`recorded_system_settings`: none, hbonds, allbonds or
    hangles (a system read from an OpenMM System XML by an older neuralct recorded none).

    Returns
    -------
    constraints, source
        The recorded constraints and the summary.json they were read from; or None and why they
        are not known.
    """
    settings, source = recorded_system_settings(trajectory)
    if settings is None:
        return None, source
    constraints = settings.get("constraints")
    if not isinstance(constraints, str):
        return None, f"{source} records no constraints (a system read from an OpenMM System XML)"
    return constraints.lower(), source


def recorded_system_settings(trajectory: str | Path) -> tuple[dict[str, Any] | None, str]:
    """The settings of the system a trajectory was simulated in, as ``neuralct simulate`` records them.

    ``neuralct simulate`` writes ``summary.json`` beside its trajectories, listing them by file
    name (``replicas[*].trajectory``) with the system's settings (``system_settings``: solvent,
    constraints, force field, ...).

    Parameters
    ----------
    trajectory : str or Path
        A trajectory file, e.g. one of a model's ``metadata["molecule"]["training_trajectories"]``.

    Returns
    -------
    settings, source
        The recorded settings and the summary.json they were read from; or None and why they are
        not known.
    """
    trajectory = Path(trajectory)
    summary_path = trajectory.parent / "summary.json"
    if not trajectory.is_file():
        return None, f"{trajectory} is not there any more"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"no summary.json of `neuralct simulate` beside {trajectory}"
    replicas = summary.get("replicas") if isinstance(summary, dict) else None
    if not isinstance(replicas, list) or not any(
        isinstance(replica, dict) and replica.get("trajectory") == trajectory.name for replica in replicas
    ):
        return None, f"{summary_path} is not of the `neuralct simulate` run that wrote {trajectory.name}"
    settings = summary.get("system_settings")
    if not isinstance(settings, dict):
        return None, f"{summary_path} records no system settings"
    return settings, str(summary_path)


def split_by_constraints(recorded: dict[str, tuple[str | None, str]]) -> tuple[dict[str, str], list[str]]:
    """The trajectories recorded with bond constraints, and where the constraints of the others are not known.

    Parameters
    ----------
    recorded : dict
        Trajectory -> ``(constraints, source)`` as :func:`recorded_constraints` gives them.

    Returns
    -------
    constrained : dict
        Trajectory -> its constraints (hbonds, allbonds, hangles), for those not simulated with none.
    unknown : list of str
        Why the constraints are not known, one entry per trajectory that has none recorded.
    """
    constrained = {path: kind for path, (kind, _) in recorded.items() if kind not in (None, "none")}
    unknown = [source for kind, source in recorded.values() if kind is None]
    return constrained, unknown


def _unconstrained_data(model: NeuralCanonicalTransformation, target: SamplingTarget) -> Finding:
    """Whether every training trajectory was simulated without bond constraints; known where all are recorded."""
    if target.kind != "molecule":
        return Finding("not applicable", "a toy system")
    molecule = model.metadata["molecule"]
    trajectories = molecule.get("training_trajectories")
    if not trajectories:
        return Finding("not known", "the model does not record its training trajectories")
    # The trajectories that chose the kept state are data the model was fitted to as well.
    trajectories = [*trajectories, *(molecule.get("validation_trajectories") or [])]
    stored = model.metadata["molecule"].get("training_constraints") or {}
    recorded = {
        path: (stored[path], "recorded in the model when it was trained")
        if stored.get(path)
        else recorded_constraints(path)
        for path in trajectories
    }
    constrained, unknown = split_by_constraints(recorded)
    if constrained:
        kinds = ", ".join(sorted(set(constrained.values())))
        return Finding(
            "lacks",
            f"trained on data with constrained X-H bonds ({kinds}: {len(constrained)} of {len(trajectories)} "
            "training and validation trajectories), sampled without constraints",
            "the flow learned rigid bonds that the sampled system lets vibrate; for sampling train on "
            f"{UNCONSTRAINED_SIMULATION}",
        )
    if unknown:
        return Finding(
            "not known",
            f"constraints of {len(unknown)} of {len(trajectories)} training and validation trajectories not recorded: "
            f"{unknown[0]}",
        )
    return Finding(
        "has",
        f"{len(trajectories)} of {len(trajectories)} training and validation trajectories simulated without "
        "constraints",
    )


def _training_length(model: NeuralCanonicalTransformation) -> Finding:
    """Whether the validation loss had stopped falling when training stopped: its lowest value is not the last."""
    history = model.metadata.get("history") or {}
    records = [
        (int(step), float(loss))
        for step, loss in zip(history.get("step", []), history.get("valid_loss", []))
        if math.isfinite(loss)
    ]
    if not records:
        return Finding("not known", "the model records no validation loss")
    last_step = records[-1][0]
    lowest_step = min(records, key=lambda record: record[1])[0]
    if lowest_step != last_step:
        return Finding("has", f"validation loss lowest at step {lowest_step} of {last_step}, then no longer falling")
    # Both ways of keeping a state (the lowest validation loss, or --keep-last) kept the last step here.
    trend = "was still falling when training stopped" if len(records) > 1 else "was recorded at the last step only"
    return Finding(
        "lacks",
        f"its validation loss {trend} (kept step {last_step} of {last_step})",
        "train longer, `neuralct train --steps`",
    )
