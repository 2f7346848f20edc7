"""The ``neuralct`` command line: one entry point, one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import NeuralCTError

__all__ = ["main", "build_parser"]

#: Subcommand modules, each with ``add_parser(subparsers)`` and ``run(args) -> int``.
SUBCOMMANDS = ("simulate", "train", "analyze", "quickstart")


def _available_subcommands():
    for name in SUBCOMMANDS:
        try:
            yield name, importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="neuralct",
        description="Slow collective variables from neural canonical transformations (symplectic flows on phase space).",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"neuralct {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for _, module in _available_subcommands():
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 only on success)."""
    from .options import apply_config

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        args = apply_config(parser, args, argv)
        return int(args.run(args) or 0)
    except NeuralCTError as exc:
        print(f"neuralct {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neuralct {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
