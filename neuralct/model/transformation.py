"""The neural canonical transformation: units, symplectic flow and harmonic prior in one model."""

from __future__ import annotations

import hashlib
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import NeuralCTError, first_line
from ..flows import ContinuousSymplectic, LinearSymplectic, PointTransformation, SymplecticSequential
from ..flows.base import join_phase_space, map_in_chunks, split_phase_space
from ..io import DamagedFile, atomic_torch_save, torch_load_verified
from .dynamics import LatentLangevin, relaxation_times
from .prior import HarmonicPrior

__all__ = [
    "NeuralCanonicalTransformation",
    "ModeRanking",
    "build_flow",
    "load",
    "content_digest",
    "DEFAULT_ARCHITECTURE",
    "MODEL_FORMAT",
]

MODEL_FORMAT = "neuralct.model"
#: Version 2 records the SHA-256 of the contents (:func:`content_digest`); version 1 files,
#: written before it was, are still read, with the archive's checksums as their only check.
#: Version 3 holds the model's :class:`ModeRanking` as its own ``mode_ranking`` entry (version 2
#: kept it in ``metadata``). A model without a ranking is written as version 2, which holds all
#: of it, so that a neuralct that reads versions 1 and 2 still reads its files.
MODEL_FORMAT_VERSION = 3
_UNRANKED_FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2, 3)

#: Linear point transformation (normal modes of the data) followed by nonlinear couplings.
DEFAULT_ARCHITECTURE: tuple[dict[str, Any], ...] = (
    {"type": "linear", "point": True},
    {"type": "point", "n_layers": 4, "hidden": 64, "depth": 2},
)

_LAYER_TYPES = {"linear": LinearSymplectic, "point": PointTransformation, "continuous": ContinuousSymplectic}


def build_flow(dim: int, architecture: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> SymplecticSequential:
    """Build the composition described by ``architecture``.

    Parameters
    ----------
    dim : int
        Configuration dimension n.
    architecture : sequence of dict
        One dict per layer, from the data side to the prior: ``type`` is ``linear``
        (:class:`LinearSymplectic`), ``point`` (:class:`PointTransformation`) or
        ``continuous`` (:class:`ContinuousSymplectic`); the other keys are passed on.
    """
    layers = []
    for spec in architecture:
        spec = dict(spec)
        kind = spec.pop("type", None)
        if kind not in _LAYER_TYPES:
            raise NeuralCTError(f"unknown layer type {kind!r}; use one of {', '.join(_LAYER_TYPES)}")
        try:
            layers.append(_LAYER_TYPES[kind](dim, **spec))
        except TypeError as exc:
            raise NeuralCTError(f"layer {kind!r}: {exc}") from None
    return SymplecticSequential(layers)


@dataclass(frozen=True)
class ModeRanking:
    """An order of the latent modes measured on data, which a model keeps instead of ranking them itself.

    A maximum-likelihood model ranks its modes by frequency, which says how soft a mode is, not
    how slowly it relaxes; ranked by their autocorrelation at a lag on the training
    trajectories, its CVs are the slowest motions of the data.

    Attributes
    ----------
    by : str
        What measured the order: ``"autocorrelation"``.
    lag_ps : float
        The lag of the autocorrelation in ps.
    order : tuple of int
        The flow's latent mode indices, slowest (most autocorrelated) first: CV k is mode ``order[k]``.
    autocorrelation : tuple of float
        The autocorrelation of each mode at ``lag_ps``, in ``order``.
    """

    by: str
    lag_ps: float
    order: tuple[int, ...]
    autocorrelation: tuple[float, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain data as the model file and summary.json hold it: ``by``, ``lag_ps``, ``order``, ``autocorrelation``."""
        return {
            "by": self.by,
            "lag_ps": self.lag_ps,
            "order": list(self.order),
            "autocorrelation": list(self.autocorrelation),
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "ModeRanking":
        """The ranking :meth:`as_dict` wrote."""
        return cls(
            str(record["by"]),
            float(record["lag_ps"]),
            tuple(int(i) for i in record["order"]),
            tuple(float(a) for a in record["autocorrelation"]),
        )


class NeuralCanonicalTransformation(nn.Module):
    """Canonical map ``T: (q, p) -> (Q, P)`` whose latent Hamiltonian is harmonic.

    Physical coordinates are converted to reduced ones by the fixed map
    ``q_r = (q - q0) sqrt(m / kT) / tau``, ``p_r = p / sqrt(m kT)`` (a canonical map up to
    the constant factor ``1 / (kT tau)`` of the symplectic form): energies in kT,
    times in ``tau`` (1 ps for molecules), so frequencies are in rad per ``tau``.
    Then a symplectic flow maps to latent ``(Q, P)``, distributed as independent
    harmonic oscillators ``K = sum (P^2 + w^2 Q^2) / 2`` at kT = 1.

    Latent modes are reported sorted by frequency, slowest first: a permutation of
    modes, applied to ``Q`` and ``P`` alike, is itself canonical. A model with latent
    dynamics (trained with a lag, see :mod:`neuralct.model.dynamics`) gives each oscillator a
    learned friction and sorts its modes by relaxation time instead, the longest first.

    Parameters
    ----------
    dim : int
        Configuration dimension n.
    masses : torch.Tensor, shape=(n,)
        Mass of each coordinate (amu for molecules; 1 for mass-weighted coordinates).
    kT : float
        Thermal energy in the energy unit of the physical coordinates (kJ/mol for molecules).
    architecture : sequence of dict
        Layers of the flow, see :func:`build_flow`.
    time_unit : float
        ``tau`` in the physical time unit (ps for molecules).
    metadata : dict, optional
        Plain data stored with the model (system, atom selection, training summary).
    latent_dynamics : bool
        Give every latent oscillator a learned Langevin friction (:class:`LatentLangevin`).
    mode_ranking : ModeRanking, optional
        An order of the modes measured on data (:attr:`mode_ranking`).

    Attributes
    ----------
    mode_ranking : ModeRanking or None
        The order of the modes measured on data (e.g. by their autocorrelation), which replaces
        the model's own; None when the modes are ranked by frequency or relaxation time.
    """

    def __init__(
        self,
        dim: int,
        masses: torch.Tensor | None = None,
        kT: float = 1.0,
        architecture=DEFAULT_ARCHITECTURE,
        time_unit: float = 1.0,
        metadata: dict[str, Any] | None = None,
        latent_dynamics: bool = False,
        mode_ranking: ModeRanking | None = None,
    ):
        super().__init__()
        if not kT > 0 or not time_unit > 0:
            raise ValueError("kT and time_unit must be positive")
        self.dim = int(dim)
        self.kT = float(kT)
        self.time_unit = float(time_unit)
        self.architecture = [dict(spec) for spec in architecture]
        self.metadata = dict(metadata or {})
        masses = torch.ones(dim) if masses is None else torch.as_tensor(masses, dtype=torch.get_default_dtype())
        if masses.shape != (dim,) or not bool((masses > 0).all()):
            raise ValueError(f"masses must be {dim} positive numbers")
        self.register_buffer("masses", masses.clone())
        self.register_buffer("position_offset", torch.zeros(dim))
        self.flow = build_flow(dim, self.architecture)
        self.prior = HarmonicPrior(dim)
        self.dynamics = LatentLangevin(dim) if latent_dynamics else None
        self.mode_ranking = mode_ranking

    # -- units ---------------------------------------------------------------------------
    def position_scale(self) -> torch.Tensor:
        """``sqrt(m / kT) / tau``, shape (dim,): reduced positions are ``(q - position_offset)`` times this."""
        return torch.sqrt(self.masses / self.kT) / self.time_unit

    def _momentum_scale(self) -> torch.Tensor:
        return 1.0 / torch.sqrt(self.masses * self.kT)

    def to_reduced(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Physical ``(q, p)``, shapes (batch, n), to reduced phase-space points (batch, 2n)."""
        return join_phase_space((q - self.position_offset) * self.position_scale(), p * self._momentum_scale())

    def from_reduced(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reduced points (batch, 2n) back to physical ``(q, p)``, each (batch, n)."""
        q_r, p_r = split_phase_space(x)
        return q_r / self.position_scale() + self.position_offset, p_r / self._momentum_scale()

    def reduction_log_det(self) -> torch.Tensor:
        """``ln|det|`` of :meth:`to_reduced`: ``-n ln(kT tau)``, a constant."""
        return (
            -self.dim
            * math.log(self.kT * self.time_unit)
            * torch.ones((), dtype=self.masses.dtype, device=self.masses.device)
        )

    # -- the map --------------------------------------------------------------------------
    @property
    def ranked_by(self) -> str:
        """What orders the latent modes, slowest first: ``"autocorrelation"`` at a lag (the highest first,
        :attr:`mode_ranking`), ``"relaxation time"`` (the longest first, latent dynamics) or ``"frequency"``
        (the lowest first)."""
        if self.mode_ranking is not None:
            return self.mode_ranking.by
        return "frequency" if self.dynamics is None else "relaxation time"

    def mode_order(self) -> torch.Tensor:
        """The flow's latent mode indices, shape (dim,), slowest first by :attr:`ranked_by`.

        CV k is mode ``mode_order()[k]``.
        """
        if self.mode_ranking is not None:
            return torch.tensor(self.mode_ranking.order, device=self.prior.frequencies.device)
        if self.dynamics is not None:
            return torch.argsort(self._unsorted_relaxation_times().detach(), descending=True)
        return torch.argsort(self.prior.frequencies.detach())

    def _unsorted_relaxation_times(self) -> torch.Tensor:
        return relaxation_times(self.prior.frequencies, self.dynamics.frictions)

    @property
    def frequencies(self) -> torch.Tensor:
        """Latent frequencies ``w``, shape (n,), in mode order (rad per ``time_unit``).

        Ascending; for a model with latent dynamics, in order of decreasing relaxation time;
        for a model with a :attr:`mode_ranking`, in its order.
        """
        return self.prior.frequencies[self.mode_order()]

    @property
    def frictions(self) -> torch.Tensor | None:
        """Latent frictions ``gamma``, shape (n,), in mode order (1 per ``time_unit``); None without dynamics."""
        return None if self.dynamics is None else self.dynamics.frictions[self.mode_order()]

    @property
    def relaxation_times(self) -> torch.Tensor | None:
        """Relaxation times of the latent modes, shape (n,), longest first (``time_unit``); None without dynamics."""
        return None if self.dynamics is None else self._unsorted_relaxation_times()[self.mode_order()]

    def _points(self, name: str, value: Any) -> tuple[torch.Tensor, bool]:
        """``value`` (a tensor, array or list of shape (batch, n) or (n,)) as a (batch, n) tensor of the
        model's dtype and device, and whether it was one point (n,).

        Raises
        ------
        NeuralCTError
            If its last axis is not the model's ``dim`` or it has more than two axes.
        """
        tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value, dtype=float))
        if tensor.ndim not in (1, 2) or tensor.shape[-1] != self.dim:
            raise NeuralCTError(
                f"`{name}` has shape {tuple(tensor.shape)}; this model takes ({self.dim},) or (batch, {self.dim})"
            )
        tensor = tensor.to(dtype=self.masses.dtype, device=self.masses.device)
        return (tensor.unsqueeze(0), True) if tensor.ndim == 1 else (tensor, False)

    def encode(self, q: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical latent variables ``(Q, P)``, each (batch, n), slowest mode first.

        ``q`` and ``p`` (physical units), each (batch, n) or (n,) (then ``Q`` and ``P`` are (n,)),
        are taken in the model's dtype and device. The map is exactly symplectic in reduced units:
        its Jacobian ``M`` obeys ``M^T J M = J / (kT tau)`` in physical ones (see the class).
        """
        (q, single), (p, _) = self._points("q", q), self._points("p", p)
        z, _ = self.flow(self.to_reduced(*torch.broadcast_tensors(q, p)))
        Q, P = split_phase_space(z)
        order = self.mode_order()
        Q, P = Q[..., order], P[..., order]
        return (Q[0], P[0]) if single else (Q, P)

    def decode(self, Q: torch.Tensor, P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of :meth:`encode`: latent ``(Q, P)`` (slowest first) to physical ``(q, p)``, same shapes."""
        (Q, single), (P, _) = self._points("Q", Q), self._points("P", P)
        Q, P = torch.broadcast_tensors(Q, P)
        inverse_order = torch.argsort(self.mode_order())
        x, _ = self.flow.inverse(join_phase_space(Q[..., inverse_order], P[..., inverse_order]))
        q, p = self.from_reduced(x)
        return (q[0], p[0]) if single else (q, p)

    def cv(self, q: torch.Tensor, k: int | None = None, p: torch.Tensor | None = None) -> torch.Tensor:
        """Collective variables: the ``k`` slowest latent positions ``Q``, shape (batch, k) ((k,) for one point).

        For a flow made of point transformations ``Q`` depends on ``q`` alone and ``p`` is
        not needed; a flow with momentum-mixing layers needs ``p`` too. ``k`` is 1 to ``dim``
        (default: all).
        """
        if k is not None:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.dim:
                raise NeuralCTError(f"`k` is {k!r}; give a whole number from 1 to {self.dim}, the model's dimension")
            k = int(k)
        q, single = self._points("q", q)
        if self.flow.acts_on_configuration:
            Q, _ = self.flow.configuration_forward((q - self.position_offset) * self.position_scale())
            Q = Q[..., self.mode_order()]
        elif p is None:
            raise NeuralCTError("this model mixes positions and momenta (linear or continuous layers): pass p to cv()")
        else:
            Q, _ = self.encode(q, p)
        Q = Q if k is None else Q[..., :k]
        return Q[0] if single else Q

    def require_configuration_flow(self) -> None:
        """Raise a one-line error unless the flow maps configurations to latent positions (point transformations)."""
        if not self.flow.acts_on_configuration:
            raise NeuralCTError(
                "this model mixes positions and momenta (general linear or continuous layers), so it has no map of "
                "configurations; train one with `neuralct train --layers linear-point,point`"
            )

    def configuration_to_latent(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard-normal latent positions ``u = w Q(q)`` of configurations and ``ln|det du/dq|``.

        The configuration marginal of the prior is ``N(0, I)`` in ``u``: the frequency layer
        scales ``Q`` by ``w``. Point-transformation flows only.

        Parameters
        ----------
        q : torch.Tensor, shape=(batch, n)
            Physical configurations.

        Returns
        -------
        u : torch.Tensor, shape=(batch, n)
            Latent positions in latent-mode order (not sorted by frequency).
        logdet : torch.Tensor, shape=(batch,)
            ``ln|det du/dq|``: units, flow and frequency layer added up.
        """
        self.require_configuration_flow()
        scale = self.position_scale()
        Q, logdet = self.flow.configuration_forward((q - self.position_offset) * scale)
        u, frequency_logdet = self.prior.frequency_layer(join_phase_space(Q, torch.zeros_like(Q)))
        return split_phase_space(u)[0], logdet + frequency_logdet + scale.log().sum()

    def configuration_from_latent(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of :meth:`configuration_to_latent`: ``q = g(u)`` (batch, n) and ``ln|det dg/du|`` (batch,)."""
        self.require_configuration_flow()
        scale = self.position_scale()
        Q, frequency_logdet = self.prior.frequency_layer.inverse(join_phase_space(u, torch.zeros_like(u)))
        q_r, logdet = self.flow.configuration_inverse(split_phase_space(Q)[0])
        return q_r / scale + self.position_offset, logdet + frequency_logdet - scale.log().sum()

    def log_prob(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``ln rho(q, p)`` in physical units, shape (batch,) (a scalar for one point (n,))."""
        (q, single), (p, _) = self._points("q", q), self._points("p", p)
        log_prob = self.log_prob_reduced(self.to_reduced(*torch.broadcast_tensors(q, p))) + self.reduction_log_det()
        return log_prob[0] if single else log_prob

    def log_prob_reduced(self, x: torch.Tensor) -> torch.Tensor:
        """``ln rho`` of reduced phase-space points (batch, 2n): no Jacobian, T is canonical."""
        z, logdet = self.flow(x)
        return self.prior.log_prob(z) + logdet

    def sample_reduced(
        self, n_samples: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised samples in reduced units and their ``ln rho``; shapes (batch, 2n), (batch,)."""
        z = self.prior.sample(n_samples, generator)
        log_prob = self.prior.log_prob(z)
        x, logdet = self.flow.inverse(z)
        return x, log_prob - logdet

    def sample(self, n_samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Physical samples ``(q, p)``, each (n_samples, n)."""
        x, _ = self.sample_reduced(n_samples, generator)
        return self.from_reduced(x)

    @torch.no_grad()
    def initialize(self, q: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Data-dependent start from configurations ``q`` (batch, n), momenta Maxwell-Boltzmann.

        Centres the positions, lets each layer initialise on the data reaching it (the
        linear layer rotates onto the normal modes of the mass-weighted positions) and
        sets the frequencies to their maximum-likelihood values.
        """
        self.position_offset.copy_(q.mean(0))
        p_r = torch.randn(q.shape, generator=generator, dtype=q.dtype, device=q.device)
        x = join_phase_space((q - self.position_offset) * self.position_scale(), p_r)
        self.flow.initialize(x)
        self.prior.initialize(map_in_chunks(self.flow, x))

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the model atomically to ``path`` (a torch file of tensors and plain data).

        The file records the SHA-256 of everything else in it (:func:`content_digest`): the
        weights and what was derived from them (stored CV ranges, training summary, the mode
        ranking), so that :func:`load` refuses a file whose parts no longer belong together.
        """
        contents = {
            "format": MODEL_FORMAT,
            "version": _UNRANKED_FORMAT_VERSION if self.mode_ranking is None else MODEL_FORMAT_VERSION,
            "dim": self.dim,
            "kT": self.kT,
            "time_unit": self.time_unit,
            "architecture": self.architecture,
            "latent_dynamics": self.dynamics is not None,
            "metadata": self.metadata,
            "state_dict": {key: value.detach().cpu() for key, value in self.state_dict().items()},
        }
        if self.mode_ranking is not None:
            contents["mode_ranking"] = self.mode_ranking.as_dict()
        contents["sha256"] = content_digest(contents)
        atomic_torch_save(contents, path)

    @classmethod
    def from_file_contents(cls, contents: Any, source: str = "model file") -> "NeuralCanonicalTransformation":
        """Rebuild a model from the dict written by :meth:`save`, checking its structure and, from
        format version 2 on, its recorded digest."""
        if not isinstance(contents, dict) or contents.get("format") != MODEL_FORMAT:
            raise NeuralCTError(f"{source} is not a neuralct model file; train one with `neuralct train`")
        version = contents.get("version")
        if version not in _READABLE_VERSIONS:
            raise NeuralCTError(
                f"{source} has model format version {version!r}, this neuralct reads versions "
                f"{', '.join(map(str, _READABLE_VERSIONS))}"
            )
        try:
            _check_contents(contents)
        except _Damaged as exc:
            raise _damaged(source, str(exc)) from None
        metadata, ranking = _metadata_and_ranking(contents)
        state = contents["state_dict"]
        dtype = state["masses"].dtype
        try:
            model = cls(
                contents["dim"],
                masses=state["masses"],
                kT=contents["kT"],
                architecture=contents["architecture"],
                time_unit=contents["time_unit"],
                metadata=metadata,
                latent_dynamics=contents.get("latent_dynamics", False) is True,
                mode_ranking=None if ranking is None else ModeRanking.from_dict(ranking),
            ).to(dtype)
            model.load_state_dict(state)
        except (NeuralCTError, RuntimeError, TypeError, ValueError) as exc:
            raise NeuralCTError(f"{source} does not match its own architecture: {first_line(exc)}") from None
        # Checked last, so that a malformed entry is named above; this catches values that are
        # well-formed but changed since the file was written (weights edited, ranges of other weights).
        if version >= 2:
            try:
                matches = contents.get("sha256") == content_digest(contents)
            except TypeError as exc:
                raise _damaged(source, str(exc)) from None
            if not matches:
                raise _damaged(
                    source,
                    "its weights or the metadata derived from them (CV ranges, training summary) differ from what "
                    "was saved (SHA-256 mismatch)",
                )
        return model


def _metadata_and_ranking(contents: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A model file's metadata and its mode ranking (None when it has none), wherever its version keeps it."""
    metadata = dict(contents["metadata"])
    if contents["version"] >= 3:
        return metadata, contents.get("mode_ranking")
    return metadata, metadata.pop("mode_ranking", None)


def _damaged(source: str, what: str) -> NeuralCTError:
    return NeuralCTError(f"{source} is damaged or was altered: {what}; train the model again or use an intact copy")


def content_digest(contents: Mapping[str, Any]) -> str:
    """SHA-256 of a model file's contents, its own ``sha256`` entry left out.

    Every value is encoded with its type and length (tensors by dtype, shape and bytes; floats
    exactly, by ``float.hex``; mappings in an order independent of insertion), so that two
    different contents never share an encoding.

    Parameters
    ----------
    contents : mapping
        The dict :meth:`NeuralCanonicalTransformation.save` writes: plain data and tensors.

    Raises
    ------
    TypeError
        For a value of another type (a model file holds none).
    """
    digest = hashlib.sha256()
    digest.update(_encode({key: value for key, value in contents.items() if key != "sha256"}))
    return digest.hexdigest()


def _encode(value: Any) -> bytes:
    """Typed, length-prefixed bytes of ``value`` (see :func:`content_digest`)."""

    def tagged(tag: bytes, payload: bytes) -> bytes:
        return tag + struct.pack("<Q", len(payload)) + payload

    if value is None:
        return tagged(b"N", b"")
    if isinstance(value, bool):
        return tagged(b"B", b"1" if value else b"0")
    if isinstance(value, int):
        return tagged(b"I", str(int(value)).encode())
    if isinstance(value, float):
        return tagged(b"F", float(value).hex().encode())
    if isinstance(value, str):
        return tagged(b"S", value.encode("utf-8", "surrogatepass"))
    if isinstance(value, torch.Tensor):
        header = f"{value.dtype}{tuple(value.shape)}".encode()
        data = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return tagged(b"T", tagged(b"H", header) + data)
    if isinstance(value, Mapping):
        return tagged(b"D", b"".join(sorted(_encode(key) + _encode(item) for key, item in value.items())))
    if isinstance(value, (list, tuple)):
        return tagged(b"L" if isinstance(value, list) else b"U", b"".join(_encode(item) for item in value))
    raise TypeError(f"it holds a value of type {type(value).__name__}, which neuralct does not write")


class _Damaged(Exception):
    """A model file's contents do not have the structure :meth:`NeuralCanonicalTransformation.save` writes."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise _Damaged(what)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _is_finite_tensor(value: Any, shape: tuple[int, ...] | None = None) -> bool:
    return (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and (shape is None or tuple(value.shape) == shape)
        and bool(torch.isfinite(value).all())
    )


def _check_contents(contents: dict[str, Any]) -> None:
    """Check keys, types, shapes and finiteness of a model file's contents before anything is built.

    Raises
    ------
    _Damaged
        Naming the first entry that is missing or malformed.
    """
    missing = [
        key for key in ("dim", "kT", "time_unit", "architecture", "metadata", "state_dict") if key not in contents
    ]
    _require(not missing, f"missing {', '.join(missing)}")
    dim = contents["dim"]
    _require(_is_count(dim), f"dim must be a positive integer, not {dim!r}")
    for key in ("kT", "time_unit"):
        _require(_is_positive_number(contents[key]), f"{key} must be a finite positive number, not {contents[key]!r}")
    architecture = contents["architecture"]
    _require(
        isinstance(architecture, list) and len(architecture) > 0, "architecture must be a non-empty list of layers"
    )
    for index, spec in enumerate(architecture):
        _require(
            isinstance(spec, dict) and spec.get("type") in _LAYER_TYPES,
            f"architecture layer {index} must be a dict with a type in {', '.join(_LAYER_TYPES)}",
        )
        for key, value in spec.items():
            if key != "type":
                _require(
                    isinstance(value, bool) or _is_count(value),
                    f"architecture layer {index}: {key} must be true, false or a positive integer, not {value!r}",
                )
    _require(isinstance(contents["metadata"], dict), "metadata must be a mapping")
    state = contents["state_dict"]
    _require(
        isinstance(state, dict) and all(isinstance(key, str) for key in state), "state_dict must map names to tensors"
    )
    for key, value in state.items():
        _require(isinstance(value, torch.Tensor), f"state_dict entry {key} must be a tensor")
        _require(
            not value.is_floating_point() or _is_finite_tensor(value),
            f"state_dict entry {key} holds NaN or infinite values",
        )
    _require(
        len({value.dtype for value in state.values() if value.is_floating_point()}) == 1,
        "floating-point state_dict tensors must share one dtype",
    )
    for key in ("masses", "position_offset"):
        _require(
            key in state and state[key].is_floating_point() and tuple(state[key].shape) == (dim,),
            f"state_dict entry {key} must be floating-point of shape ({dim},)",
        )
    _require(bool((state["masses"] > 0).all()), "masses must be positive")
    if "molecule" in contents["metadata"]:
        _check_molecule(contents["metadata"]["molecule"], dim)
    if contents["version"] >= 3:
        if "mode_ranking" in contents:
            _check_mode_ranking(contents["mode_ranking"], dim, "mode_ranking")
    elif "mode_ranking" in contents["metadata"]:
        _check_mode_ranking(contents["metadata"]["mode_ranking"], dim, "metadata.mode_ranking")


def _check_mode_ranking(ranking: Any, dim: int, entry: str) -> None:
    """Check a stored :class:`ModeRanking` (:meth:`ModeRanking.as_dict`) of ``dim`` modes; ``entry`` names it."""
    order = ranking.get("order") if isinstance(ranking, dict) else None
    _require(
        isinstance(order, list) and sorted(order) == list(range(dim)),
        f"{entry}.order must be a permutation of 0..{dim - 1}",
    )
    values = ranking.get("autocorrelation")
    _require(
        isinstance(values, list)
        and len(values) == dim
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values),
        f"{entry}.autocorrelation must list {dim} finite numbers",
    )
    _require(_is_positive_number(ranking.get("lag_ps")), f"{entry}.lag_ps must be a finite positive number")
    _require(ranking.get("by") == "autocorrelation", f"{entry}.by must be 'autocorrelation'")


def _check_molecule(molecule: Any, dim: int) -> None:
    """Check what analysis reads of the molecule a model was trained on (see ``molecular.molecule_metadata``)."""
    _require(
        isinstance(molecule, dict) and molecule.get("kind") == "molecule", "metadata.molecule must be a molecule record"
    )
    n_atoms, indices, names = molecule.get("n_atoms"), molecule.get("atom_indices"), molecule.get("atom_names")
    _require(_is_count(n_atoms), "metadata.molecule.n_atoms must be a positive integer")
    _require(
        isinstance(indices, list)
        and len(indices) >= 3
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n_atoms for i in indices),
        "metadata.molecule.atom_indices must list at least 3 atom indices below n_atoms",
    )
    _require(
        isinstance(names, list) and len(names) == len(indices) and all(isinstance(name, str) for name in names),
        "metadata.molecule.atom_names must name each selected atom",
    )
    _require(
        _is_positive_number(molecule.get("temperature_K")),
        "metadata.molecule.temperature_K must be a finite positive number",
    )
    frame, k = molecule.get("frame"), len(indices)
    _require(isinstance(frame, dict), "metadata.molecule.frame must be a mapping of tensors")
    for key, shape in (("reference", (k, 3)), ("masses", (k,)), ("basis", (3 * k, dim))):
        _require(
            _is_finite_tensor(frame.get(key), shape),
            f"metadata.molecule.frame.{key} must be a finite tensor of shape {shape}",
        )
    _require(bool((frame["masses"] > 0).all()), "metadata.molecule.frame.masses must be positive")


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> NeuralCanonicalTransformation:
    """Load a trained model written by ``neuralct train`` (safe: tensors and plain data only).

    The file is verified before it is used: the CRC-32 of every entry of its zip archive (torch
    itself reads a damaged entry without noticing) and, for files that record one, the digest of
    the weights and the metadata derived from them (:func:`content_digest`).

    Raises
    ------
    NeuralCTError
        If the file is missing, unreadable, damaged, altered or not a neuralct model.
    """
    path = Path(path)
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise NeuralCTError(f"device {device!r} is not a torch device; give 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuralCTError(f"device {str(device)!r}: this torch sees no CUDA GPU; load the model on 'cpu'")
    if not path.is_file():
        raise NeuralCTError(f"model file {path} does not exist")
    try:
        contents = torch_load_verified(path)
    except DamagedFile as exc:
        if exc.failed_entry is not None:
            raise _damaged(str(path), str(exc)) from None
        raise NeuralCTError(
            f"{path} cannot be read as a neuralct model ({exc.cause}); is it a model written by `neuralct train`?"
        ) from None
    return NeuralCanonicalTransformation.from_file_contents(contents, str(path)).to(device)
