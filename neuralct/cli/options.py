"""Options every subcommand shares: --config (YAML), --device, --seed, --output."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import yaml

from ..errors import NeuralCTError, first_line
from ..io import atomic_write_text

__all__ = ["add_common_options", "apply_config", "save_resolved_config"]

_NOT_CONFIGURABLE = {"config", "command", "run", "help"}


def add_common_options(parser: argparse.ArgumentParser, *, output_default: str) -> None:
    """Add ``--config``, ``--device``, ``--seed`` and ``--output`` to a subcommand parser."""
    group = parser.add_argument_group("common options")
    group.add_argument("--config", metavar="YAML", help="YAML file of option values (keys as the long option names with '_'); command-line options win; unknown keys are an error")
    group.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    group.add_argument("--output", "-o", default=output_default, help="output folder (default: %(default)s)")


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise KeyError(command)


def apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> argparse.Namespace:
    """Merge a ``--config`` YAML file under the command-line options.

    Keys must name options of the subcommand; values given on the command line win.

    Raises
    ------
    NeuralCTError
        If the file is missing, is not a YAML mapping, or has unknown keys.
    """
    if not getattr(args, "config", None):
        return args
    path = Path(args.config)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NeuralCTError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise NeuralCTError(f"config file {path} is not valid YAML: {first_line(exc)}") from None
    if values is None:
        return args
    if not isinstance(values, dict):
        raise NeuralCTError(f"config file {path} must hold a mapping of option: value")
    sub = _subparser(parser, args.command)
    known = {action.dest for action in sub._actions} - _NOT_CONFIGURABLE
    unknown = sorted(set(map(str, values)) - known)
    if unknown:
        raise NeuralCTError(f"config file {path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    sub.set_defaults(**values)
    return parser.parse_args(list(argv))


def save_resolved_config(args: argparse.Namespace, folder: Path) -> None:
    """Write every option value of this run to ``folder/config.yaml`` (reusable as ``--config``)."""
    resolved = {key: value for key, value in vars(args).items() if key not in _NOT_CONFIGURABLE}
    resolved = {key: (str(value) if isinstance(value, Path) else value) for key, value in resolved.items()}
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(resolved, sort_keys=True))
